/*
 * interp_state.h -- the one place that decides which interpreter state a fiber owns.
 *
 * CPython keeps the state of "the code that is running now" in PyThreadState. When a fiber is
 * switched out, the fields below belong to it and must leave the thread state; when it comes back
 * they are put back. Which fields exist, and what they are called, changes with every minor
 * version: 3.11 and 3.12 hang the frame chain off a _PyCFrame on the C stack, 3.13 keeps the
 * current frame on the thread state itself; the recursion counters split in 3.12; the trashcan
 * state moved twice (state_31x.h each say what their version has). A switch that misses one of
 * them works until the one program that needs it. So each supported version gets one small
 * header with the same functions, and this file picks exactly one of them, once, by
 * PY_VERSION_HEX.
 *
 * Nothing else in the extension names a PyThreadState field: this file and the state_31x.h it
 * includes are the only ones; _switch.c reaches the thread state through the functions below
 * (and CPython's public API), and fiber_stack.c never sees it. Of InterpState, _switch.c uses one
 * field by name: `context`, the strong reference to the context of a fiber that is not running,
 * which doubles as the context a fiber that has not started will start in.
 *
 * The contract every state_31x.h implements:
 *
 *   typedef struct InterpState;          fields saved while a fiber is not running
 *   interp_state_save(s, tstate)         running fiber -> s (moves the context reference into s)
 *   interp_state_restore(s, tstate)      s -> thread state (moves the context reference back)
 *   interp_state_start(s, tstate, chunk, chunk_size, c_budget)
 *                                        thread state for a fiber that has never run: empty frame
 *                                        chain, `chunk` (chunk_size bytes of the fiber's stack
 *                                        mapping) as its root data-stack chunk, depth 0, clean
 *                                        exception state, s->context as its context; c_budget:
 *                                        the recursion units the fiber's stack holds
 *                                        (_switch.c, fiber_recursion_budget)
 *   INTERP_BASE_CFRAME_DECL / interp_state_enter_base(tstate, base)
 *                                        3.11/3.12 only: install the fiber's bottom _PyCFrame,
 *                                        which must live on the fiber's own C stack
 *   interp_state_top_frame_swap(tstate, s, save)
 *                                        expose a suspended fiber's frame chain for introspection
 *   interp_trash_delete_nesting(tstate)  the trashcan's nesting depth, -1 where there is none
 *   INTERP_DEFAULT_C_BUDGET              CPython's per-thread C recursion budget (0 where C and
 *                                        Python calls share one counter)
 *   INTERP_STACK_BYTES_PER_UNIT          C stack one recursion unit may use: the worst pattern
 *                                        measured (sorted() whose key function sorts again, ~5 KB
 *                                        of C stack per level) plus a quarter for what was not
 *
 * and this file adds, for all versions:
 *
 *   interp_state_finish(s, tstate)       a finished fiber leaves the thread state (see below)
 *   interp_state_data_stack_bytes(s, chunk)
 *                                        frame data a suspended fiber keeps in its root chunk
 *   interp_current_context(tstate), interp_context_replace(tstate, ctx)
 *                                        the running code's contextvars context
 *
 * None of the switch functions (save, restore, start, enter_base, top_frame_swap, finish) may
 * call into Python, allocate, or DECREF: they run between "save" and "jump", where a garbage
 * collection or a finalizer would see a thread state that belongs half to one fiber and half to
 * the other, and run its code on the wrong frames.
 *
 * Also here, shared by all three versions: the interp_context_* accessors of a Context's
 * variables (see "contextvars" below). They are not part of a switch and may DECREF.
 */
#ifndef LOOP_INTERP_STATE_H
#define LOOP_INTERP_STATE_H

#include <Python.h>

/* Fields every supported version stores the same way: the frame data stack, the handled-exception
 * stack and the contextvars context. The version headers call these for their shared part. */
/* recursion_headroom and tracing are depths of the running call stack -- "inside exception
 * normalization", "inside a trace function" -- so they belong to the fiber whose code raised
 * them; left per thread, a fiber that switches away inside an exception's __init__ or inside a
 * trace function would leave every other fiber without RecursionError or without tracing. */
#define INTERP_COMMON_FIELDS \
    int recursion_headroom; \
    int tracing; \
    _PyStackChunk *datastack_chunk; \
    PyObject **datastack_top; \
    PyObject **datastack_limit; \
    _PyErr_StackItem *exc_info; \
    _PyErr_StackItem exc_state; \
    PyObject *context;              /* strong reference while the fiber is not running */

#define INTERP_COMMON_SAVE(s, ts) do { \
    (s)->recursion_headroom = (ts)->recursion_headroom; \
    (s)->tracing = (ts)->tracing; \
    (s)->datastack_chunk = (ts)->datastack_chunk; \
    (s)->datastack_top = (ts)->datastack_top; \
    (s)->datastack_limit = (ts)->datastack_limit; \
    (s)->exc_info = (ts)->exc_info; \
    (s)->exc_state = (ts)->exc_state; \
    (s)->context = (ts)->context; \
    (ts)->context = NULL; \
} while (0)

#define INTERP_COMMON_RESTORE(s, ts) do { \
    (ts)->recursion_headroom = (s)->recursion_headroom; \
    (ts)->tracing = (s)->tracing; \
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
#define INTERP_COMMON_START(s, ts, chunk_memory, chunk_size) do { \
    _PyStackChunk *root_chunk_ = (_PyStackChunk *)(chunk_memory); \
    (ts)->recursion_headroom = 0; \
    (ts)->tracing = 0; \
    root_chunk_->previous = NULL; \
    root_chunk_->size = (chunk_size); \
    root_chunk_->top = 0; \
    (ts)->datastack_chunk = root_chunk_; \
    (ts)->datastack_top = &root_chunk_->data[1]; \
    (ts)->datastack_limit = (PyObject **)((char *)root_chunk_ + (chunk_size)); \
    (ts)->exc_state.exc_value = NULL; \
    (ts)->exc_state.previous_item = NULL; \
    (ts)->exc_info = &(ts)->exc_state; \
    (ts)->context = (s)->context; \
    (s)->context = NULL; \
    (ts)->context_ver++; \
} while (0)


/* contextvars. A green thread runs in a copy of its spawner's context as of spawn time. Making
 * that copy (a Context object, GC-tracked) at spawn time is a third of the garbage collector's
 * work when 100,000 green threads are spawned, so the fiber keeps only the spawner's *variables*
 * -- the immutable HAMT a Context points to; ContextVar.set replaces it, never changes it -- and
 * makes the Context when the fiber starts or when .context is read first. There is no public
 * API to read a Context's variables or to make a Context from them, so this mirrors the struct
 * of Include/internal/pycore_context.h, identical in 3.11, 3.12 and 3.13;
 * interp_context_layout_ok() checks the mirror against the running interpreter at import. */
typedef struct {
    PyObject_HEAD
    PyObject *ctx_prev;
    PyObject *ctx_vars;             /* PyHamtObject *, never NULL */
    PyObject *ctx_weakreflist;
    int ctx_entered;
} InterpContext;

/* The running code's context, borrowed; NULL means empty (CPython makes one on first use). */
static inline PyObject *
interp_current_context(PyThreadState *ts)
{
    return ts->context;
}

/* The variables of a Context, borrowed. */
static inline PyObject *
interp_context_vars(PyObject *ctx)
{
    return ((InterpContext *)ctx)->ctx_vars;
}

/* Give a new, never entered Context the variables `vars` (a reference is stolen). */
static inline void
interp_context_set_vars(PyObject *ctx, PyObject *vars)
{
    InterpContext *c = (InterpContext *)ctx;
    PyObject *old = c->ctx_vars;
    c->ctx_vars = vars;
    Py_DECREF(old);
}

/* True if nothing but its single owner can see the Context: no other reference, no weak
 * reference, not entered. Such a Context can be replaced by a new one with the same variables
 * without anybody noticing. */
static inline int
interp_context_is_private(PyObject *ctx)
{
    InterpContext *c = (InterpContext *)ctx;
    return Py_REFCNT(ctx) == 1 && c->ctx_weakreflist == NULL && !c->ctx_entered &&
           c->ctx_prev == NULL;
}

static inline int
interp_context_layout_ok(void)
{
    if (PyContext_Type.tp_basicsize != (Py_ssize_t)sizeof(InterpContext) ||
        PyContext_Type.tp_weaklistoffset != (Py_ssize_t)offsetof(InterpContext, ctx_weakreflist)) {
        return 0;
    }
    PyObject *a = PyContext_New();
    PyObject *b = a ? PyContext_Copy(a) : NULL;
    int ok = b != NULL && interp_context_vars(a) != NULL &&
             interp_context_vars(a) == interp_context_vars(b) &&
             ((InterpContext *)a)->ctx_prev == NULL && ((InterpContext *)a)->ctx_entered == 0;
    Py_XDECREF(a);
    Py_XDECREF(b);
    PyErr_Clear();
    return ok;
}

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

#ifndef LOOP_UNSUPPORTED_REASON
/* The end of a fiber, after its last frame has returned: CPython's extra data-stack chunks are
 * given back (the root chunk is part of the fiber's stack mapping), and the context and the
 * handled-exception state move into s, so nothing of the finished fiber is left on the thread
 * state when the next fiber is restored over it. The context reference is dropped later, with
 * the fiber: this runs no Python code, because the finished fiber leaves its stack right after
 * and must not leave frames of any code run here behind on it. It frees memory (to CPython's
 * arena allocator, which runs no code) but drops no reference. */
static inline void
interp_state_finish(InterpState *s, PyThreadState *ts)
{
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    _PyStackChunk *chunk = ts->datastack_chunk;
    while (chunk != NULL && chunk->previous != NULL) {
        _PyStackChunk *prev = chunk->previous;
        arena.free(arena.ctx, chunk, chunk->size);
        chunk = prev;
    }
    s->context = ts->context;
    ts->context = NULL;
    s->exc_state = ts->exc_state;
    ts->exc_state.exc_value = NULL;
}

/* Bytes of frame data a suspended fiber keeps in its root data-stack chunk `root_chunk`, or -1
 * when its frames have spilled into chunks CPython allocated. */
static inline Py_ssize_t
interp_state_data_stack_bytes(const InterpState *s, const char *root_chunk)
{
    if ((const char *)s->datastack_chunk != root_chunk) {
        return -1;
    }
    return (const char *)s->datastack_top - root_chunk;
}

/* Make `ctx` (a reference is stolen; NULL for none yet) the running code's context. Returns the
 * context it replaces, a reference the caller drops. */
static inline PyObject *
interp_context_replace(PyThreadState *ts, PyObject *ctx)
{
    PyObject *old = ts->context;
    ts->context = ctx;
    ts->context_ver++;
    return old;
}
#endif

#endif
