/*
 * interp_state.h -- the one place that decides which interpreter state a fiber owns.
 *
 * CPython keeps the state of "the code that is running now" in PyThreadState. When a fiber is
 * switched out, the fields below belong to it and must leave the thread state; when it comes back
 * they are put back. Which fields exist, and what they are called, changes with every minor
 * version (see ../../shared/research/switching-internals.md, trap T1). So each supported version
 * gets one small header with the same four functions, and this file picks exactly one of them,
 * once, by PY_VERSION_HEX. Nothing else in the extension names a PyThreadState field.
 *
 * The contract every state_3xx.h implements:
 *
 *   typedef struct InterpState;          fields saved while a fiber is not running
 *   interp_state_save(s, tstate)         running fiber -> s (moves the context reference into s)
 *   interp_state_restore(s, tstate)      s -> thread state (moves the context reference back)
 *   interp_state_start(s, tstate, chunk, chunk_size, c_budget)
 *                                        thread state for a fiber that has never run: empty frame
 *                                        chain, our own root data-stack chunk, depth 0, clean
 *                                        exception state, s->context as its context
 *   INTERP_BASE_CFRAME_DECL / interp_state_enter_base(tstate, base)
 *                                        3.11/3.12 only: install the fiber's bottom _PyCFrame,
 *                                        which must live on the fiber's own C stack
 *   interp_state_top_frame_swap(tstate, s, save)
 *                                        expose a suspended fiber's frame chain for introspection
 *   INTERP_DEFAULT_C_BUDGET              the per-thread C recursion budget CPython assumes for
 *                                        an 8 MiB stack (0 where C and Python share one counter)
 *
 * None of these functions may call into Python, allocate, or DECREF: they run between "save" and
 * "jump", where a garbage collection or a finalizer would see a half-switched thread (trap T5).
 */
#ifndef LOOP_INTERP_STATE_H
#define LOOP_INTERP_STATE_H

#include <Python.h>

/* Fields every supported version stores the same way: the frame data stack, the handled-exception
 * stack and the contextvars context. The version headers call these for their shared part. */
#define INTERP_COMMON_FIELDS \
    _PyStackChunk *datastack_chunk; \
    PyObject **datastack_top; \
    PyObject **datastack_limit; \
    _PyErr_StackItem *exc_info; \
    _PyErr_StackItem exc_state; \
    PyObject *context;              /* strong reference while the fiber is not running */

#define INTERP_COMMON_SAVE(s, ts) do { \
    (s)->datastack_chunk = (ts)->datastack_chunk; \
    (s)->datastack_top = (ts)->datastack_top; \
    (s)->datastack_limit = (ts)->datastack_limit; \
    (s)->exc_info = (ts)->exc_info; \
    (s)->exc_state = (ts)->exc_state; \
    (s)->context = (ts)->context; \
    (ts)->context = NULL; \
} while (0)

#define INTERP_COMMON_RESTORE(s, ts) do { \
    (ts)->datastack_chunk = (s)->datastack_chunk; \
    (ts)->datastack_top = (s)->datastack_top; \
    (ts)->datastack_limit = (s)->datastack_limit; \
    (ts)->exc_state = (s)->exc_state; \
    (ts)->exc_info = (s)->exc_info ? (s)->exc_info : &(ts)->exc_state; \
    (ts)->context = (s)->context; \
    (s)->context = NULL; \
    (ts)->context_ver++; \
} while (0)

/* A never-run fiber: our own root data-stack chunk, set up exactly as CPython's push_chunk()
 * leaves a root chunk (data[0] reserved, so CPython never pops it); clean exception state. */
#define INTERP_COMMON_START(s, ts, chunk, chunk_size) do { \
    (chunk)->previous = NULL; \
    (chunk)->size = (chunk_size); \
    (chunk)->top = 0; \
    (ts)->datastack_chunk = (chunk); \
    (ts)->datastack_top = &(chunk)->data[1]; \
    (ts)->datastack_limit = (PyObject **)((char *)(chunk) + (chunk_size)); \
    (ts)->exc_state.exc_value = NULL; \
    (ts)->exc_state.previous_item = NULL; \
    (ts)->exc_info = &(ts)->exc_state; \
    (ts)->context = (s)->context; \
    (s)->context = NULL; \
    (ts)->context_ver++; \
} while (0)


#if defined(Py_GIL_DISABLED)
#  define LOOP_UNSUPPORTED_REASON "loop._switch does not support free-threaded (no-GIL) CPython builds yet"
#elif PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#  include "state_311.h"
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
#  include "state_312.h"
#elif PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
#  include "state_313.h"
#else
#  define LOOP_UNSUPPORTED_REASON "loop._switch supports CPython 3.11, 3.12 and 3.13 only"
#endif

#endif
