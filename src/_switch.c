/*
 * loop._switch -- green threads ("fibers") for CPython 3.11-3.13, on their own C stacks.
 *
 * Design (the long version, with numbers, is docs/design.md):
 *
 * Each fiber gets its own C stack (fiber_stack.c: mapped lazily, 8 MiB by default, a guard page
 * at the bottom, pooled for reuse). Switching is a 20-instruction register swap (stack_switch.h)
 * plus moving a dozen PyThreadState fields (interp_state.h), so its cost does not depend on how
 * deep either stack is, and pointers into a suspended stack stay valid: 3.11/3.12 cframes and
 * 3.12 entry frames need no fixing up, and frame.f_back walks just work. greenlet instead copies
 * stack slices to the heap on every switch, which costs O(depth).
 *
 * The files of the core, one concern each:
 *   _switch.c          this file: the Fiber type, the per-thread state, the switch itself, killing
 *                      and abandoning fibers, and the module (its functions and its init)
 *   fiber_stack.[ch]   the stack allocator; it knows nothing of fibers or thread states
 *   stack_switch.h     the machine code of the switch and its ABI
 *   interp_state.h     which interpreter state a fiber owns (picks state_311/312/313.h); the
 *                      only place that names PyThreadState fields
 *   memory_checkers.h  what valgrind and AddressSanitizer need to know, in their builds only
 *
 * Why the Fiber type, the switch and the module stay in this one translation unit: a switch runs
 * fiber_switch_with -> prepare_target -> switch_to -> loop_stack_switch -> after_switch, and the
 * steps around the assembly are static functions here, which the compiler can inline, or call
 * with its own conventions, only when it sees them together; a switch costs tens of nanoseconds
 * (bench/switch.py), so calls into other files on that path would show. The allocator is called
 * only when a fiber gets or gives back a stack, so it can live apart (the size of a switch's
 * frame is not free either: see fiber_give_stack). The module functions (getcurrent, settrace,
 * gettrace, _set_main_fiber_type) read the per-thread FiberThread, which is private to this
 * file; moving them out would put FiberThread and Fiber into a header for ~150 lines of simple
 * getters, a wider interface than it is worth. The greenlet-rule helpers
 * (fiber_has_greenlet_rules, resolve_dead_target) decide where a switch goes, so they are part
 * of the switch.
 *
 * Invariants:
 *  - Between interp_state_save() and the jump no Python code runs and nothing is DECREF'd or
 *    allocated: a garbage collection or a finalizer started there would run on a thread state
 *    that belongs half to the fiber leaving and half to the one arriving. References that must
 *    be dropped because of a switch are parked in the FiberThread and dropped by after_switch()
 *    on the other side.
 *  - A fiber belongs to the OS thread it was created in. All state of that thread lives in one
 *    FiberThread, reached through a C thread-local and kept alive by the fibers that point to it.
 *    The thread's end is noticed when CPython clears the thread-state dict, which holds a
 *    ThreadHandle whose dealloc retires the FiberThread.
 *  - A suspended fiber that loses its last reference is killed with FiberExit in its own thread;
 *    from another thread it is queued for its owner; if the owner is gone, or the interpreter is
 *    finalizing, it is abandoned without running Python code (its frames' objects are leaked,
 *    as greenlet does).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <stdlib.h>

#include "fiber_stack.h"
#include "interp_state.h"
#include "memory_checkers.h"
#include "stack_switch.h"

#if defined(LOOP_STACK_SWITCH_UNSUPPORTED) && !defined(LOOP_UNSUPPORTED_REASON)
#  define LOOP_UNSUPPORTED_REASON LOOP_STACK_SWITCH_UNSUPPORTED
#endif

#ifdef LOOP_UNSUPPORTED_REASON
/* ------------------------------------------------------------------------------------------ */
/* Unsupported build: the module exists so that `import loop` fails with a sentence, not with */
/* a missing symbol.                                                                          */
static struct PyModuleDef unsupported_module = {PyModuleDef_HEAD_INIT, "loop._switch", NULL, -1};
PyMODINIT_FUNC
PyInit__switch(void)
{
    (void)unsupported_module;
    PyErr_SetString(PyExc_ImportError, LOOP_UNSUPPORTED_REASON);
    return NULL;
}
#else

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#if PY_VERSION_HEX >= 0x030D0000
#  define loop_is_finalizing() Py_IsFinalizing()
#else
#  define loop_is_finalizing() _Py_IsFinalizing()
#endif

/* ========================================================================================== */
/* Recursion budget                                                                            */
/* ========================================================================================== */

/* Bytes of a fiber's stack kept out of the recursion budget: the fiber's own bottom frames, a
 * C signal handler, and the C code between CPython's last recursion check and the next. */
#define STACK_RESERVE (16u << 10)

/* How many of CPython's recursion units (interp_state.h) a fiber's stack holds. CPython sizes
 * its budget for an 8 MiB thread stack and for typical code; a fiber's stack may be smaller,
 * and the worst measured pattern (a sort key function that sorts again: the sort's merge state
 * is ~5 KB of C stack per level) needs INTERP_STACK_BYTES_PER_UNIT per unit. Giving every
 * fiber exactly what its stack holds at that rate, never more than CPython gives a thread,
 * makes deep C recursion raise RecursionError at every stack size instead of reaching the
 * guard page. The numbers per size are in docs/design.md. */
static int
fiber_recursion_budget(size_t size)
{
    size_t c_bytes = fiber_stack_c_bytes(size);
    size_t units = c_bytes > STACK_RESERVE ? (c_bytes - STACK_RESERVE) / INTERP_STACK_BYTES_PER_UNIT
                                           : 0;
    if (INTERP_DEFAULT_C_BUDGET > 0 && units > (size_t)INTERP_DEFAULT_C_BUDGET) {
        units = INTERP_DEFAULT_C_BUDGET;
    }
    if (units > INT_MAX / 2) {
        units = INT_MAX / 2;
    }
    return units < 1 ? 1 : (int)units;
}

/* ========================================================================================== */
/* Objects                                                                                     */
/* ========================================================================================== */

enum fiber_state { FIBER_NEW = 0, FIBER_ACTIVE = 1, FIBER_DEAD = 2 };

typedef struct FiberThread FiberThread;

typedef struct Fiber {
    PyObject_HEAD
    void *sp;                    /* saved stack pointer while suspended */
    FiberThread *thread;         /* owner; a counted reference */
    struct Fiber *parent;        /* strong; NULL only for a thread's main fiber */
    PyObject *run;               /* strong until started */
    PyObject *run_replaced;      /* strong: a run that a lookup of run replaced, until started */
    PyObject *dict;
    PyObject *weakreflist;
    FiberStack stack;            /* base NULL for main fibers and for fibers not started */
    int state;
    int is_main;
    InterpState ps;              /* ps.context doubles as the context of a fiber not yet started */
    /* Instead of ps.context, for a fiber that is to start in a copy of its spawner's context: the
     * spawner's variables (see interp_state.h, "contextvars"); the Context is made from them
     * when the fiber starts or .context is read. A finished fiber whose last Context nobody else
     * can see keeps only its variables too. Never set together with ps.context. */
    PyObject *context_vars;
} Fiber;

/* What one switch hands to the fiber being resumed. */
typedef struct {
    PyObject *value;             /* owned: returned as-is when packed, else the args tuple */
    PyObject *kwargs;            /* owned or NULL */
    PyObject *exc;               /* owned exception instance to raise instead, or NULL */
    int packed;
    int from_exit;               /* value is the FiberExit its sender died of */
} Transfer;

struct FiberThread {
    Fiber *current;              /* strong */
    Fiber *main;                 /* strong until the thread ends */
    PyObject *trace;             /* strong or NULL */
    PyObject *deferred_kills;    /* list of fibers released by other threads, or NULL */
    Transfer xfer;
    Fiber *origin;               /* strong: the fiber that switched to us, for after_switch */
    Fiber *finished;             /* strong: a fiber that just died; its stack is freed after */
    Py_ssize_t refs;             /* fibers pointing here + the ThreadHandle */
    int alive;
    PyThreadState *tstate;
#ifdef LOOP_HAVE_ASAN
    const void *asan_main_bottom;    /* the thread's own stack, learnt at its first switch */
    size_t asan_main_size;
#endif
};

static PyTypeObject Fiber_Type;
static PyTypeObject ThreadHandle_Type;
static PyObject *FiberExit;
static PyObject *FiberError;
static PyObject *parent_start_error;  /* made at import: raised where no Python code may run */
static PyObject *thread_key;          /* key of our ThreadHandle in the thread-state dict */
static PyObject *str_run;
static PyObject *str_switch;
static PyObject *str_throw;
static PyObject *str_dead_goes_to_parent;
/* The type of main fibers; a facade can make it its own subclass (_set_main_fiber_type), so that
 * greenlet code sees its main greenlet as an instance of greenlet.greenlet. Strong, or NULL. */
static PyTypeObject *main_fiber_type;

static __thread FiberThread *tls_thread __attribute__((tls_model("initial-exec")));

typedef struct {
    PyObject_HEAD
    FiberThread *thread;
} ThreadHandle;

static void fiber_thread_decref(FiberThread *ft)
{
    if (--ft->refs == 0) {
        PyMem_RawFree(ft);
    }
}

static Fiber *
fiber_alloc_main(FiberThread *ft)
{
    Fiber *main = PyObject_GC_New(Fiber, main_fiber_type ? main_fiber_type : &Fiber_Type);
    if (main == NULL) {
        return NULL;
    }
    main->sp = NULL;
    main->thread = ft;
    ft->refs++;
    main->parent = NULL;
    main->run = NULL;
    main->run_replaced = NULL;
    main->dict = NULL;
    main->weakreflist = NULL;
    main->stack.base = NULL;
    main->stack.size = 0;
    main->state = FIBER_ACTIVE;
    main->is_main = 1;
    memset(&main->ps, 0, sizeof(main->ps));
    main->context_vars = NULL;
    PyObject_GC_Track(main);
    return main;
}

static FiberThread *
fiber_thread_create(void)
{
    PyObject *tsdict = PyThreadState_GetDict();
    if (tsdict == NULL) {
        PyErr_SetString(FiberError, "this thread has no Python thread state dict");
        return NULL;
    }
    FiberThread *ft = PyMem_RawCalloc(1, sizeof(FiberThread));
    if (ft == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    ft->refs = 1;   /* held by the handle below */
    ft->alive = 1;
    ft->tstate = PyThreadState_Get();
    Fiber *main = fiber_alloc_main(ft);
    if (main == NULL) {
        PyMem_RawFree(ft);
        return NULL;
    }
    ThreadHandle *handle = PyObject_New(ThreadHandle, &ThreadHandle_Type);
    if (handle == NULL) {
        main->thread = NULL;
        ft->refs--;
        Py_DECREF(main);
        PyMem_RawFree(ft);
        return NULL;
    }
    handle->thread = ft;
    ft->main = main;
    Py_INCREF(main);
    ft->current = main;
    tls_thread = ft;
    if (PyDict_SetItem(tsdict, thread_key, (PyObject *)handle) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    Py_DECREF(handle);
    return ft;
}

static void kill_deferred(FiberThread *ft);

static inline FiberThread *
current_thread(void)
{
    FiberThread *ft = tls_thread;
    if (LIKELY(ft != NULL && ft->alive)) {
        if (UNLIKELY(ft->deferred_kills != NULL)) {
            kill_deferred(ft);
        }
        return ft;
    }
    if (ft != NULL && !ft->alive) {
        tls_thread = NULL;
    }
    return fiber_thread_create();
}

static int fiber_has_greenlet_rules(Fiber *self);

/* The error for a switch into a fiber that belongs to another OS thread (greenlet's words). */
static void
raise_other_thread(FiberThread *ft, Fiber *target)
{
    if (target->thread == NULL || !target->thread->alive) {
        PyErr_SetString(FiberError,
                        "cannot switch to a different thread (which happens to have exited)");
        return;
    }
    PyErr_Format(FiberError, "Cannot switch to a different thread\n\tCurrent:  %R\n\tExpected: %R",
                 (PyObject *)ft->current, (PyObject *)target->thread->main);
}

/* ========================================================================================== */
/* Transfers                                                                                   */
/* ========================================================================================== */

static inline void
transfer_clear(Transfer *t)
{
    Py_CLEAR(t->value);
    Py_CLEAR(t->kwargs);
    Py_CLEAR(t->exc);
}

/* Take the raised exception out of the thread state as one object. */
static PyObject *
exception_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise `exc` (consumed) in the thread state. */
static void
exception_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *type = (PyObject *)Py_TYPE(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
#endif
}

/* greenlet's rule for what switch() returns: one argument -> itself, several -> the tuple,
 * keywords only -> the dict, both -> (args, kwargs). Consumes the transfer. */
static PyObject *
transfer_result(Transfer *t)
{
    if (t->exc != NULL) {
        PyObject *exc = t->exc;
        t->exc = NULL;
        Py_CLEAR(t->value);
        Py_CLEAR(t->kwargs);
        exception_restore(exc);
        return NULL;
    }
    PyObject *value = t->value;
    PyObject *kwargs = t->kwargs;
    t->value = NULL;
    t->kwargs = NULL;
    if (t->packed) {
        return value;
    }
    if (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) {
        Py_XDECREF(kwargs);
        if (PyTuple_GET_SIZE(value) == 1) {
            PyObject *only = PyTuple_GET_ITEM(value, 0);
            Py_INCREF(only);
            Py_DECREF(value);
            return only;
        }
        return value;
    }
    if (PyTuple_GET_SIZE(value) == 0) {
        Py_DECREF(value);
        return kwargs;
    }
    PyObject *both = PyTuple_Pack(2, value, kwargs);
    Py_DECREF(value);
    Py_DECREF(kwargs);
    return both;
}

/* ========================================================================================== */
/* The switch                                                                                  */
/* ========================================================================================== */

static void fiber_main(void *arg) __attribute__((noreturn));

/* Make the Context of a fiber that holds only variables (Fiber.context_vars). May run Python
 * code: the allocation can start a collection. */
static int
fiber_make_context(Fiber *self)
{
    PyObject *ctx = PyContext_New();
    if (ctx == NULL) {
        return -1;
    }
    PyObject *vars = self->context_vars;
    if (vars == NULL) {
        /* Made, or replaced through .context, by code that the allocation ran. */
        Py_DECREF(ctx);
        return 0;
    }
    self->context_vars = NULL;
    interp_context_set_vars(ctx, vars);
    self->ps.context = ctx;
    return 0;
}

/* A finished fiber keeps its last context for .context. When no one else can see that Context,
 * keep only its variables: a finished green thread then holds no Context object, which the
 * collector would visit for as long as the green thread is referenced (a joined list of them). */
static void
fiber_shelve_context(Fiber *self)
{
    PyObject *ctx = self->ps.context;
    if (ctx == NULL || self->context_vars != NULL || !PyContext_CheckExact(ctx) ||
        !interp_context_is_private(ctx)) {
        return;
    }
    PyObject *vars = interp_context_vars(ctx);
    Py_INCREF(vars);
    self->context_vars = vars;
    self->ps.context = NULL;
    Py_DECREF(ctx);      /* frees only the Context: its variables are referenced above */
}

/* Call the thread's switch hook (ft->trace set) for a switch from origin to self carrying t. */
static int
call_switch_hook(FiberThread *ft, Fiber *origin, Fiber *self, Transfer *t)
{
    int rc = 0;
    PyObject *trace = ft->trace;
    Py_INCREF(trace);
    PyThreadState *tstate = PyThreadState_Get();
    PyObject *event = t->exc != NULL ? str_throw : str_switch;
    PyObject *pair = PyTuple_Pack(2, (PyObject *)origin, (PyObject *)self);
    PyObject *res = NULL;
    if (pair != NULL) {
        PyThreadState_EnterTracing(tstate);
        res = PyObject_CallFunctionObjArgs(trace, event, pair, NULL);
        PyThreadState_LeaveTracing(tstate);
        Py_DECREF(pair);
    }
    if (res == NULL) {
        /* A failing hook is removed, and its error replaces what was being sent. */
        if (ft->trace == trace) {
            Py_CLEAR(ft->trace);
        }
        transfer_clear(t);
        rc = -1;
    }
    Py_XDECREF(res);
    Py_DECREF(trace);
    return rc;
}

/* Work left behind by the fiber we came from; runs first thing after every landing, on the
 * resumed fiber's stack. May run Python code (trace hook, finalizers). */
static int
after_switch(FiberThread *ft, Fiber *self, Transfer *t)
{
    *t = ft->xfer;
    memset(&ft->xfer, 0, sizeof(ft->xfer));
    Fiber *origin = ft->origin;
    Fiber *finished = ft->finished;
    ft->origin = NULL;
    ft->finished = NULL;
    if (finished != NULL) {
        fiber_stack_release(&finished->stack);
        fiber_shelve_context(finished);
    }
    int rc = 0;
    if (UNLIKELY(ft->trace != NULL) && origin != NULL) {
        rc = call_switch_hook(ft, origin, self, t);
    }
    Py_XDECREF(finished);
    Py_XDECREF(origin);
    return rc;
}

#ifdef LOOP_HAVE_ASAN
/* First thing on the stack we switched to: complete ASan's switch, and learn the bounds of the
 * thread's own stack the first time its main fiber leaves it. */
static void
asan_landed(FiberThread *ft, void *fake_stack)
{
    const void *from_bottom = NULL;
    size_t from_size = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &from_bottom, &from_size);
    if (ft->asan_main_bottom == NULL && ft->origin != NULL && ft->origin->is_main) {
        ft->asan_main_bottom = from_bottom;
        ft->asan_main_size = from_size;
    }
}
#endif

/* Everything from "this is now the current fiber" to the jump. `origin` is the running fiber;
 * when it has finished (origin_dead), its state is not saved and it is never resumed. The caller
 * has already put the transfer into ft->xfer and prepared target's stack if it is new. */
static void
switch_to(FiberThread *ft, Fiber *origin, Fiber *target, int origin_dead)
{
    PyThreadState *tstate = ft->tstate;
    Py_INCREF(target);
    ft->origin = origin;             /* the reference ft->current held moves here */
    ft->current = target;
    if (origin_dead) {
        ft->finished = origin;
        Py_INCREF(origin);
        /* The dead fiber's context and exception state were dropped by fiber_main. */
    }
    else {
        interp_state_save(&origin->ps, tstate);
    }
    if (target->state == FIBER_NEW) {
        target->state = FIBER_ACTIVE;
        interp_state_start(&target->ps, tstate, fiber_stack_chunk(&target->stack),
                           FIBER_DATA_CHUNK_SIZE, fiber_recursion_budget(target->stack.size));
    }
    else {
        interp_state_restore(&target->ps, tstate);
    }
    void *dummy;
#ifdef LOOP_HAVE_ASAN
    void *fake_stack = NULL;
    if (target->is_main) {
        __sanitizer_start_switch_fiber(origin_dead ? NULL : &fake_stack, ft->asan_main_bottom,
                                       ft->asan_main_size);
    }
    else {
        __sanitizer_start_switch_fiber(origin_dead ? NULL : &fake_stack,
                                       fiber_stack_low(&target->stack),
                                       fiber_stack_usable_size(&target->stack));
    }
#endif
    loop_stack_switch(origin_dead ? &dummy : &origin->sp, target->sp, NULL);
#ifdef LOOP_HAVE_ASAN
    asan_landed(ft, fake_stack);
#endif
}

/* Give a never-started fiber its stack. Runs no Python code and sets no Python error: the
 * finishing path calls it on a stack that is about to be released. Kept out of line: it runs
 * once per fiber, and inlined into fiber_switch_with it only makes every switch's frame bigger. */
static __attribute__((noinline)) int
fiber_give_stack(Fiber *target)
{
    if (target->stack.base == NULL) {
        if (fiber_stack_alloc(&target->stack) < 0) {
            return -1;
        }
        target->sp = loop_stack_prepare(fiber_stack_top(&target->stack), fiber_main, NULL);
    }
    return 0;
}

/* Check that `target` can run now and, if it never ran, give it a stack. May run Python code
 * (looking up a subclass's run method), so it happens before anything is committed: that code
 * may switch elsewhere, or start, kill or move `target`, and the caller re-reads the state
 * afterwards instead of trusting what it saw before. */
static int
prepare_target(FiberThread *ft, Fiber *target)
{
    if (UNLIKELY(target->thread != ft)) {
        raise_other_thread(ft, target);
        return -1;
    }
    if (UNLIKELY(target->state == FIBER_DEAD)) {
        PyErr_SetString(FiberError, "cannot switch to a fiber that has finished");
        return -1;
    }
    if (target->state == FIBER_NEW) {
        if (loop_is_finalizing()) {
            PyErr_SetString(FiberError, "cannot start a fiber while the interpreter is finalizing");
            return -1;
        }
        /* A class that customizes attribute lookup is asked for run even if one was given, as
         * greenlet asks every greenlet. */
        if (target->run == NULL || Py_TYPE(target)->tp_getattro != PyObject_GenericGetAttr) {
            PyObject *run = PyObject_GetAttr((PyObject *)target, str_run);
            if (run == NULL) {
                return -1;
            }
            if (target->state != FIBER_NEW && !fiber_has_greenlet_rules(target)) {
                Py_DECREF(run);
                PyErr_SetString(FiberError, "fiber was started while its run was looked up");
                return -1;
            }
            if (target->state != FIBER_NEW || target->thread != ft) {
                /* The lookup started the greenlet (greenlet makes this switch an ordinary one
                 * then) or moved it to another thread: check again. */
                Py_DECREF(run);
                return prepare_target(ft, target);
            }
            /* A run given before is dropped once the fiber runs, on its own stack (dropping
             * it can run code), as greenlet does. */
            Py_XSETREF(target->run_replaced, target->run);
            target->run = run;
        }
        if (target->context_vars != NULL) {
            if (fiber_make_context(target) < 0) {
                return -1;
            }
            if (target->state != FIBER_NEW) {
                PyErr_SetString(FiberError, "fiber was started while its context was made");
                return -1;
            }
        }
        if (fiber_give_stack(target) < 0) {
            fiber_stack_raise_alloc_error();
            return -1;
        }
    }
    return 0;
}

/* Does the fiber's class (loop.compat.greenlet's) ask for greenlet's rules where loop's differ:
 * a switch into a finished fiber goes to its nearest live parent, and a fiber that has not
 * started moves to the thread of a parent assigned from another thread? */
static int
fiber_has_greenlet_rules(Fiber *self)
{
    PyObject *flag = PyObject_GetAttr((PyObject *)Py_TYPE(self), str_dead_goes_to_parent);
    if (flag == NULL) {
        PyErr_Clear();
        return 0;
    }
    int yes = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    if (yes < 0) {
        PyErr_Clear();
    }
    return yes > 0;
}

/* Resolve greenlet-compat targets: a finished fiber whose type asks for it forwards to its
 * nearest live parent, as greenlet does. Returns a borrowed reference. */
static Fiber *
resolve_dead_target(Fiber *target)
{
    if (target->state != FIBER_DEAD || !fiber_has_greenlet_rules(target)) {
        return target;
    }
    while (target->state == FIBER_DEAD && target->parent != NULL) {
        target = target->parent;
    }
    return target;
}

/* A switch to the running fiber returns what it sends; the switch hook is told of it like of any
 * other switch, as greenlet does. */
static PyObject *
switch_to_self(FiberThread *ft, Fiber *self, Transfer *t)
{
    if (UNLIKELY(ft->trace != NULL) && call_switch_hook(ft, self, self, t) < 0) {
        return NULL;
    }
    return transfer_result(t);
}

/* switch() and throw(): consumes the transfer in all cases. */
static PyObject *
fiber_switch_with(Fiber *target, Transfer *t)
{
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        transfer_clear(t);
        return NULL;
    }
    target = resolve_dead_target(target);
    Fiber *origin = ft->current;
    if (target == origin) {
        return switch_to_self(ft, origin, t);
    }
    if (prepare_target(ft, target) < 0) {
        transfer_clear(t);
        return NULL;
    }
    /* prepare_target may have run Python code that switched around: re-read who we are. */
    origin = ft->current;
    if (target == origin) {
        return switch_to_self(ft, origin, t);
    }
    ft->xfer = *t;
    memset(t, 0, sizeof(*t));
    switch_to(ft, origin, target, 0);
    /* Resumed. */
    Transfer got;
    if (after_switch(ft, origin, &got) < 0) {
        return NULL;
    }
    return transfer_result(&got);
}

/* A fiber that a finishing child started (the end of fiber_main) has had no chance to look up
 * its run or to make its context: both can run Python code, which must not run on the finished
 * child's stack (its frames would outlive the stack). It does both here, on its own stack.
 * Returns 0, -1 when its context could not be made, -2 when its run could not be looked up. */
static int
fiber_complete_start(Fiber *self, PyObject **run)
{
    if (self->context_vars != NULL) {
        if (fiber_make_context(self) < 0) {
            return -1;
        }
        PyObject *ctx = self->ps.context;
        self->ps.context = NULL;
        PyThreadState *tstate = PyThreadState_Get();
        if (ctx != NULL && interp_current_context(tstate) == NULL) {
            (void)interp_context_replace(tstate, ctx);     /* replaces nothing */
        }
        else {
            Py_XDECREF(ctx);     /* .context was set meanwhile: that one wins */
        }
    }
    if (*run == NULL) {
        *run = PyObject_GetAttr((PyObject *)self, str_run);
        if (*run == NULL) {
            return -2;
        }
    }
    return 0;
}

/* The bottom C frame of every fiber. */
static void
fiber_main(void *unused)
{
    (void)unused;
    INTERP_BASE_CFRAME_DECL base_cframe;
    FiberThread *ft = tls_thread;
    Fiber *self = ft->current;
#ifdef LOOP_HAVE_ASAN
    asan_landed(ft, NULL);
#endif
    interp_state_enter_base(ft->tstate, &base_cframe);

    Transfer t;
    PyObject *result = NULL;
    PyObject *run = self->run;
    self->run = NULL;
    int never_ran = 0;
    if (after_switch(ft, self, &t) == 0) {
        Py_CLEAR(self->run_replaced);     /* may run code: on this fiber's own stack now */
        if (t.from_exit) {
            /* Started by a child that died of FiberExit: greenlet calls run() with no
             * arguments then, not with the exception. */
            Py_SETREF(t.value, PyTuple_New(0));
            t.packed = 0;
            if (t.value == NULL) {
                t.exc = exception_take();
            }
        }
        if (t.exc != NULL) {
            /* Thrown into before it ran: the run callable is never called. */
            result = transfer_result(&t);
        }
        else if ((never_ran = fiber_complete_start(self, &run)) < 0) {
            transfer_clear(&t);
            /* Its run could not even be looked up: as greenlet does, the fiber stays never
             * started (switched to again, it looks its run up again) and the error goes to its
             * parent. Nothing of it ran, and its stack is given back like a finished one's. */
            never_ran = never_ran == -2;
        }
        else if (t.packed) {
            result = PyObject_CallOneArg(run, t.value);
            transfer_clear(&t);
        }
        else {
            result = PyObject_Call(run, t.value, t.kwargs);
            transfer_clear(&t);
        }
    }
    Py_XDECREF(run);

    /* Finished: turn the outcome into what the parent receives. */
    Transfer out = {0};
    if (result != NULL) {
        out.value = result;
        out.packed = 1;
    }
    else if (PyErr_ExceptionMatches(FiberExit)) {
        out.value = exception_take();
        out.packed = 1;
        out.from_exit = 1;
    }
    else {
        out.exc = exception_take();
    }
    self->state = never_ran ? FIBER_NEW : FIBER_DEAD;

    /* Frames are all gone. The context reference is parked on the fiber and dropped by its
     * dealloc, so no Python code runs on this stack after the decision to leave it. */
    interp_state_finish(&self->ps, ft->tstate);

    for (;;) {
        Fiber *parent = self->parent;
        while (parent != NULL && (parent->state == FIBER_DEAD || parent->thread != ft)) {
            parent = parent->parent;
        }
        if (parent == NULL) {
            parent = ft->main;
        }
        /* Only C work here: any Python code (a subclass's run property, making a context,
         * even creating an exception) would run on this stack, which is released as soon as
         * we leave it. A never-started parent looks those up itself (fiber_complete_start). */
        if (parent->state == FIBER_NEW && (loop_is_finalizing() || fiber_give_stack(parent) < 0)) {
            /* Cannot start that parent: the main fiber gets a ready-made error instead, and
             * drops the outcome (out.value is cleared on the far side when out.exc is set). */
            if (out.exc != NULL) {
                out.value = out.exc;
            }
            out.exc = parent_start_error;
            Py_INCREF(out.exc);
            parent = ft->main;
        }
        ft->xfer = out;
        switch_to(ft, self, parent, 1);
        /* not reached */
        Py_FatalError("loop._switch: a finished fiber was resumed");
    }
}

/* ========================================================================================== */
/* Killing and abandoning                                                                      */
/* ========================================================================================== */

/* Throw FiberExit into a suspended fiber of the current thread and let it unwind. */
static void
fiber_kill_in_thread(FiberThread *ft, Fiber *self)
{
    PyObject *saved = exception_take();
    Fiber *old_parent = self->parent;
    self->parent = ft->current;
    Py_INCREF(self->parent);
    Transfer t = {0};
    t.exc = PyObject_CallNoArgs(FiberExit);
    PyObject *res = NULL;
    if (t.exc != NULL) {
        res = fiber_switch_with(self, &t);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(res);
    int cyclic = 0;
    for (Fiber *p = old_parent; p != NULL && !cyclic; p = p->parent) {
        cyclic = p == self;
    }
    if (old_parent != NULL && !cyclic) {
        /* The parent was lent for the kill only (greenlet does the same, even if the fiber
         * set another meanwhile): a fiber that survives it keeps its own, and dropping that one
         * here could kill it too. Never into a cycle, which would make parent walks endless. */
        Fiber *lent = self->parent;
        self->parent = old_parent;
        old_parent = lent;
    }
    Py_XDECREF(old_parent);
    if (saved != NULL) {
        exception_restore(saved);
    }
}

/* Give up on a fiber that can never run again, without running any Python code in it. The
 * objects its frames reference are leaked, and so is its stack, because frame objects created
 * for introspection may still point into it. */
static void
fiber_abandon(Fiber *self)
{
    self->state = FIBER_DEAD;
    self->stack.base = NULL;
    self->ps.context = NULL;          /* leaked with the frames */
}

static void
kill_deferred(FiberThread *ft)
{
    PyObject *list = ft->deferred_kills;
    ft->deferred_kills = NULL;
    /* The queue holds what was the last reference to each: dropping it, in order, here in the
     * owner's thread, is the deallocation that kills the fiber (once; fiber_dealloc). */
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(list, i);
        Py_INCREF(Py_None);
        PyList_SET_ITEM(list, i, Py_None);
        Py_DECREF(f);
    }
    Py_DECREF(list);
}

/* The thread-state dict is being cleared: the OS thread is ending (or, after fork, is gone). */
static void
fiber_thread_retire(FiberThread *ft)
{
    /* Fibers that other threads dropped while this one was busy are still killed here, in
     * this thread, as it ends (CPython runs finalizers while it clears the thread state, so
     * this is no different), rather than abandoned with their frames: greenlet does the same. */
    if (ft->deferred_kills != NULL && tls_thread == ft && ft->current == ft->main &&
        _PyThreadState_UncheckedGet() == ft->tstate && !loop_is_finalizing()) {
        kill_deferred(ft);
    }
    ft->alive = 0;
    if (tls_thread == ft) {
        tls_thread = NULL;
    }
    PyObject *deferred = ft->deferred_kills;
    ft->deferred_kills = NULL;
    if (deferred != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(deferred);
        for (Py_ssize_t i = 0; i < n; i++) {
            Fiber *f = (Fiber *)PyList_GET_ITEM(deferred, i);
            if (f->state == FIBER_ACTIVE && !f->is_main) {
                fiber_abandon(f);
            }
        }
    }
    Fiber *main = ft->main;
    Fiber *current = ft->current;
    ft->main = NULL;
    ft->current = NULL;
    if (main != NULL) {
        main->state = FIBER_DEAD;
    }
    if (current != NULL && current != main && current->state == FIBER_ACTIVE) {
        fiber_abandon(current);
    }
    Py_CLEAR(ft->trace);
    Py_XDECREF(deferred);
    Py_XDECREF(current);
    Py_XDECREF(main);
}

static void
thread_handle_dealloc(ThreadHandle *self)
{
    FiberThread *ft = self->thread;
    self->thread = NULL;
    if (ft != NULL) {
        fiber_thread_retire(ft);
        fiber_thread_decref(ft);
    }
    PyObject_Free(self);
}

static PyTypeObject ThreadHandle_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loop._switch._ThreadHandle",
    .tp_basicsize = sizeof(ThreadHandle),
    .tp_dealloc = (destructor)thread_handle_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* ========================================================================================== */
/* Fiber type                                                                                  */
/* ========================================================================================== */

static PyObject *
fiber_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (UNLIKELY(type->tp_flags & Py_TPFLAGS_IS_ABSTRACT)) {
        /* object.__new__ raises the usual "Can't instantiate abstract class" error. */
        PyObject *empty = PyTuple_New(0);
        PyObject *none = empty ? PyBaseObject_Type.tp_new(type, empty, NULL) : NULL;
        Py_XDECREF(empty);
        Py_XDECREF(none);
        return NULL;
    }
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        return NULL;
    }
    Fiber *self = (Fiber *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->thread = ft;
    ft->refs++;
    self->parent = ft->current;
    Py_INCREF(self->parent);
    self->state = FIBER_NEW;
    return (PyObject *)self;
}

static int fiber_set_parent(Fiber *self, PyObject *value, void *closure);

/* What a fiber that is not running will start in (or show as .context): the variables to make a
 * Context from, or a Context; at most one of them non-NULL, both references stolen. The old ones
 * are dropped last, since dropping may run Python code. */
static void
fiber_store_context(Fiber *self, PyObject *vars, PyObject *ctx)
{
    PyObject *old_vars = self->context_vars;
    PyObject *old_ctx = self->ps.context;
    self->context_vars = vars;
    self->ps.context = ctx;
    Py_XDECREF(old_vars);
    Py_XDECREF(old_ctx);
}

/* copy_context=True: the fiber will run in a copy of the current context as it is now. Only its
 * variables are kept until the fiber starts (Fiber.context_vars); copy_context() would also
 * install an empty Context for code that has none yet, and so does this. */
static int
fiber_copy_current_context(Fiber *self)
{
    if (self->state != FIBER_NEW) {
        PyErr_SetString(PyExc_ValueError, "cannot copy a context into a fiber that started");
        return -1;
    }
    PyThreadState *tstate = PyThreadState_Get();
    PyObject *ctx = interp_current_context(tstate);
    if (ctx == NULL) {
        PyObject *copy = PyContext_CopyCurrent();
        if (copy == NULL) {
            return -1;
        }
        Py_DECREF(copy);
        ctx = interp_current_context(tstate);
    }
    PyObject *vars = interp_context_vars(ctx);
    Py_INCREF(vars);
    fiber_store_context(self, vars, NULL);
    return 0;
}

static int
fiber_init(Fiber *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"run", "parent", "copy_context", NULL};
    PyObject *run = NULL, *parent = NULL;
    int copy_context = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOp:Fiber", kwlist, &run, &parent,
                                     &copy_context)) {
        return -1;
    }
    if (parent != NULL && parent != Py_None && fiber_set_parent(self, parent, NULL) < 0) {
        return -1;
    }
    if (run != NULL && run != Py_None) {
        if (self->state != FIBER_NEW) {
            PyErr_SetString(PyExc_AttributeError, "run cannot be set after the fiber started");
            return -1;
        }
        Py_INCREF(run);
        Py_XSETREF(self->run, run);
    }
    if (copy_context && fiber_copy_current_context(self) < 0) {
        return -1;
    }
    return 0;
}

static int
fiber_traverse(Fiber *self, visitproc visit, void *arg)
{
    Py_VISIT(self->parent);
    Py_VISIT(self->run);
    Py_VISIT(self->run_replaced);
    Py_VISIT(self->dict);
    Py_VISIT(self->ps.context);
    Py_VISIT(self->context_vars);
    return 0;
}

/* A running or suspended fiber is a GC root: its frames are not traversable, so the collector
 * must not conclude that what it references is garbage. */
static int
fiber_is_gc(Fiber *self)
{
    return self->state != FIBER_ACTIVE || self->thread == NULL || !self->thread->alive;
}

static int
fiber_clear(Fiber *self)
{
    Py_CLEAR(self->run);
    Py_CLEAR(self->run_replaced);
    Py_CLEAR(self->dict);
    if (self->state != FIBER_ACTIVE) {
        Py_CLEAR(self->ps.context);
        Py_CLEAR(self->context_vars);
        Py_CLEAR(self->parent);
    }
    return 0;
}

/* A suspended fiber that lost its last reference gets FiberExit thrown in, in its own thread, so
 * its finally blocks and __exit__ methods run. From another thread it is queued for the owner
 * (the queue's reference resurrects it). Called by fiber_dealloc, once per deallocation.
 * Returns 1 if FiberExit was thrown in, else 0. */
static int
fiber_finalize(Fiber *self)
{
    if (self->state != FIBER_ACTIVE || self->is_main || self->thread == NULL) {
        return 0;
    }
    FiberThread *owner = self->thread;
    if (!owner->alive || loop_is_finalizing()) {
        return 0;
    }
    if (owner != tls_thread) {
        PyObject *saved = exception_take();
        if (owner->deferred_kills == NULL) {
            owner->deferred_kills = PyList_New(0);
        }
        if (owner->deferred_kills == NULL ||
            PyList_Append(owner->deferred_kills, (PyObject *)self) < 0) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        if (saved != NULL) {
            exception_restore(saved);
        }
        return 0;
    }
    if (owner->current == self) {
        return 0;
    }
    fiber_kill_in_thread(owner, self);
    return 1;
}

/* The last reference to a suspended fiber went away: kill it (fiber_finalize), resurrecting
 * it for the time being as PyObject_CallFinalizerFromDealloc does. This is not a tp_finalize:
 * a subclass's __del__ would take over that slot, and CPython runs a finalizer once per object,
 * but a fiber must be killed whenever it is dropped suspended, whatever its class defines, and
 * exactly once per drop (greenlet does the same; a subclass's __del__ runs first). Returns -1
 * if the fiber was resurrected. Active fibers are never collected as garbage (fiber_is_gc), so
 * deallocation is the only way in. */
static int
fiber_kill_from_dealloc(Fiber *self)
{
    PyObject_GC_Track(self);
    Py_SET_REFCNT(self, 1);
    if (fiber_finalize(self) && self->state == FIBER_ACTIVE && Py_REFCNT(self) == 1) {
        /* It caught FiberExit and is suspended again, and nothing took a new reference.
         * Freeing it would strand its frames and stack, so it keeps the reference it has now
         * (greenlet does the same), and can still be killed by whoever reaches it (a weak
         * reference, the thread's end). */
        PySys_FormatStderr("loop._switch: FiberExit did not end %R; it is kept alive\n", self);
    }
    else {
        Py_SET_REFCNT(self, Py_REFCNT(self) - 1);
        if (Py_REFCNT(self) == 0) {
            PyObject_GC_UnTrack(self);
            return 0;
        }
    }
    /* Resurrected. A subclass instance is being freed by CPython's subtype_dealloc, which
     * drops the instance's reference to its class once we return: the object lives on, so it
     * needs that reference back. */
    if (PyType_HasFeature(Py_TYPE(self), Py_TPFLAGS_HEAPTYPE)) {
        Py_INCREF(Py_TYPE(self));
    }
    return -1;
}

static void
fiber_dealloc(Fiber *self)
{
    PyObject_GC_UnTrack(self);
    if (self->state == FIBER_ACTIVE && !self->is_main && fiber_kill_from_dealloc(self) < 0) {
        return;   /* resurrected */
    }
    if (self->state == FIBER_ACTIVE && !self->is_main) {
        /* Its thread is gone, the interpreter is finalizing, or it ignored FiberExit. */
        fiber_abandon(self);
    }
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    fiber_clear(self);
    Py_CLEAR(self->ps.context);
    Py_CLEAR(self->context_vars);
    Py_CLEAR(self->parent);
    if (self->stack.base != NULL) {
        fiber_stack_release(&self->stack);
    }
    if (self->thread != NULL) {
        fiber_thread_decref(self->thread);
        self->thread = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fiber_switch(Fiber *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Transfer t = {0};
    if (nargs == 1 && kwnames == NULL) {
        t.value = args[0];
        Py_INCREF(t.value);
        t.packed = 1;
    }
    else {
        t.value = PyTuple_New(nargs);
        if (t.value == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(t.value, i, args[i]);
        }
        if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
            t.kwargs = PyDict_New();
            if (t.kwargs == NULL) {
                transfer_clear(&t);
                return NULL;
            }
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
                if (PyDict_SetItem(t.kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                    transfer_clear(&t);
                    return NULL;
                }
            }
        }
    }
    return fiber_switch_with(self, &t);
}

/* Build the exception instance for throw(), following generator.throw's argument rules. */
static PyObject *
make_exception(PyObject *typ, PyObject *val, PyObject *tb)
{
    if (tb == Py_None) {
        tb = NULL;
    }
    if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        if (val != NULL && val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        exc = typ;
        Py_INCREF(exc);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (val != NULL && PyObject_IsInstance(val, typ) == 1) {
            exc = val;
            Py_INCREF(exc);
        }
        else if (val == NULL || val == Py_None) {
            exc = PyObject_CallNoArgs(typ);
        }
        else if (PyTuple_Check(val)) {
            exc = PyObject_Call(typ, val, NULL);
        }
        else {
            exc = PyObject_CallOneArg(typ, val);
        }
        if (exc == NULL) {
            return NULL;
        }
        if (!PyExceptionInstance_Check(exc)) {
            PyErr_Format(PyExc_TypeError, "calling %R should have returned an exception instance",
                         typ);
            Py_DECREF(exc);
            return NULL;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from BaseException, not %s",
                     Py_TYPE(typ)->tp_name);
        return NULL;
    }
    if (tb != NULL && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

static PyObject *
fiber_throw(Fiber *self, PyObject *args)
{
    PyObject *typ = FiberExit, *val = NULL, *tb = NULL;
    if (!PyArg_ParseTuple(args, "|OOO:throw", &typ, &val, &tb)) {
        return NULL;
    }
    /* greenlet checks the kind of its first argument before anything else, in its own words.
       Done here rather than in the Python facade: a Python-level throw() would leave a frame
       holding the target in the traceback of every exception raised through it, keeping a
       dropped greenlet alive (and unkilled) as long as that exception is kept. */
    if (fiber_has_greenlet_rules(self) && !PyExceptionInstance_Check(typ)
            && !PyExceptionClass_Check(typ)) {
        PyErr_Format(PyExc_TypeError, "exceptions must be classes, or instances, not %s",
                     Py_TYPE(typ)->tp_name);
        return NULL;
    }
    Fiber *target = resolve_dead_target(self);
    if (target->state == FIBER_DEAD && target->thread != tls_thread) {
        FiberThread *ft = current_thread();
        if (ft != NULL) {
            raise_other_thread(ft, target);   /* the thread is the first thing wrong */
        }
        return NULL;
    }
    if (target->state == FIBER_DEAD) {
        PyErr_SetString(FiberError, "cannot throw into a fiber that has finished");
        return NULL;
    }
    Transfer t = {0};
    t.exc = make_exception(typ, val, tb);
    if (t.exc == NULL) {
        return NULL;
    }
    if (target != self && PyErr_GivenExceptionMatches(t.exc, FiberExit)) {
        /* Forwarded past a finished fiber (greenlet's rule): the exit exception is what a fiber
         * that dies of it returns, so the live parent receives it as a value, not raised. */
        t.value = t.exc;
        t.exc = NULL;
        t.packed = 1;
    }
    return fiber_switch_with(target, &t);
}

static int
fiber_bool(Fiber *self)
{
    return self->state == FIBER_ACTIVE && self->thread != NULL && self->thread->alive;
}

static inline int
fiber_thread_alive(Fiber *self)
{
    return self->thread != NULL && self->thread->alive;
}

/* Is `self` the running fiber of some other thread (whose state must not be touched)? */
static inline int
fiber_running_elsewhere(Fiber *self, FiberThread *ft)
{
    return self->thread != ft && fiber_thread_alive(self) && self->thread->current == self;
}

static PyObject *
fiber_get_dead(Fiber *self, void *closure)
{
    /* A fiber left suspended by a thread that exited can never run again: greenlet calls it
     * dead too. */
    return PyBool_FromLong(self->state == FIBER_DEAD ||
                           (self->state == FIBER_ACTIVE && !fiber_thread_alive(self)));
}

static PyObject *
fiber_get_parent(Fiber *self, void *closure)
{
    if (self->parent == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self->parent);
    return (PyObject *)self->parent;
}

static int
fiber_set_parent(Fiber *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute");
        return -1;
    }
    if (!PyObject_TypeCheck(value, &Fiber_Type)) {
        PyErr_Format(PyExc_TypeError, "parent must be a Fiber, not %s", Py_TYPE(value)->tp_name);
        return -1;
    }
    if (self->is_main) {
        PyErr_SetString(PyExc_AttributeError, "cannot set the parent of a main fiber");
        return -1;
    }
    Fiber *parent = (Fiber *)value;
    for (Fiber *p = parent; p != NULL; p = p->parent) {
        if (p == self) {
            PyErr_SetString(PyExc_ValueError, "cyclic parent chain");
            return -1;
        }
    }
    if (parent->thread != self->thread && self->state == FIBER_NEW &&
        fiber_has_greenlet_rules(self)) {
        /* greenlet's rule: a greenlet that has not started moves to its new parent's thread
         * (and can only be started there). A plain fiber is refused at once, below. */
        FiberThread *old = self->thread;
        self->thread = parent->thread;
        self->thread->refs++;
        fiber_thread_decref(old);
    }
    else if (parent->thread != self->thread && fiber_thread_alive(self)) {
        PyErr_SetString(PyExc_ValueError, "parent cannot be on a different thread");
        return -1;
    }
    /* A fiber whose thread exited never runs again; any parent will do (greenlet allows it). */
    Py_INCREF(parent);
    Py_XSETREF(self->parent, parent);
    return 0;
}

static PyObject *
fiber_get_run(Fiber *self, void *closure)
{
    if (self->run == NULL) {
        PyErr_SetString(PyExc_AttributeError, "run");
        return NULL;
    }
    Py_INCREF(self->run);
    return self->run;
}

static int
fiber_set_run(Fiber *self, PyObject *value, void *closure)
{
    if (self->state != FIBER_NEW) {
        PyErr_SetString(PyExc_AttributeError, "run cannot be set after the fiber started");
        return -1;
    }
    Py_XINCREF(value);
    Py_XSETREF(self->run, value);
    return 0;
}

static PyObject *
fiber_get_frame(Fiber *self, void *closure)
{
    FiberThread *ft = tls_thread;
    if (self->state != FIBER_ACTIVE || (self->thread != ft && fiber_thread_alive(self)) ||
        (ft != NULL && ft->current == self)) {
        Py_RETURN_NONE;
    }
    /* Make the suspended chain current for a moment and let CPython build the frame object;
     * with the collector off, nothing can run Python code in between (a collection there would
     * see the suspended fiber's frames as the running ones). A fiber left
     * suspended by a thread that exited is shown the same way: its stack is never unmapped. */
    PyThreadState *tstate = PyThreadState_Get();
    int gc_was_enabled = PyGC_Disable();
    InterpTopFrame saved = NULL;
    interp_state_top_frame_swap(tstate, &self->ps, &saved);
    PyFrameObject *frame = PyThreadState_GetFrame(tstate);
    interp_state_top_frame_swap(tstate, NULL, &saved);
    if (gc_was_enabled) {
        PyGC_Enable();
    }
    if (frame == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return (PyObject *)frame;
}

static PyObject *
fiber_get_context(Fiber *self, void *closure)
{
    PyObject *ctx;
    FiberThread *ft = tls_thread;
    if (ft != NULL && ft->current == self) {
        ctx = interp_current_context(ft->tstate);
    }
    else if (fiber_running_elsewhere(self, ft)) {
        PyErr_SetString(PyExc_ValueError,
                        "cannot read the context of a fiber running in a different thread");
        return NULL;
    }
    else {
        if (self->context_vars != NULL && fiber_make_context(self) < 0) {
            return NULL;
        }
        ctx = self->ps.context;
    }
    if (ctx == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(ctx);
    return ctx;
}

static int
fiber_set_context(Fiber *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete context");
        return -1;
    }
    if (value == Py_None) {
        value = NULL;
    }
    else if (!PyContext_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return -1;
    }
    FiberThread *ft = tls_thread;
    if (fiber_running_elsewhere(self, ft)) {
        PyErr_SetString(PyExc_ValueError,
                        "cannot set the context of a fiber running in a different thread");
        return -1;
    }
    if (self->state == FIBER_DEAD && !fiber_has_greenlet_rules(self)) {
        PyErr_SetString(PyExc_ValueError, "cannot set the context of a finished fiber");
        return -1;
    }
    /* (greenlet lets a finished greenlet's context be replaced: it is what .context shows.) */
    Py_XINCREF(value);
    if (ft != NULL && ft->current == self) {
        Py_XDECREF(interp_context_replace(ft->tstate, value));
    }
    else {
        fiber_store_context(self, NULL, value);
    }
    return 0;
}

static PyObject *
fiber_repr(Fiber *self)
{
    const char *state = self->state == FIBER_NEW ? "new"
                      : self->state == FIBER_DEAD ? "dead"
                      : (tls_thread && tls_thread->current == self) ? "current" : "suspended";
    return PyUnicode_FromFormat("<%s object at %p (%s%s)>", Py_TYPE(self)->tp_name, self, state,
                                self->is_main ? ", main" : "");
}

/* How much of its stack a suspended fiber uses: the numbers behind the memory-per-fiber tuning. */
static PyObject *
fiber_stack_usage(Fiber *self, PyObject *unused)
{
    if (self->is_main && self->state == FIBER_ACTIVE && self->sp != NULL &&
        tls_thread == self->thread && tls_thread->current != self) {
        /* A suspended main fiber holds the part of its thread's stack above where it left. */
        pthread_attr_t attr;
        void *low;
        size_t size;
        if (pthread_getattr_np(pthread_self(), &attr) != 0) {
            Py_RETURN_NONE;
        }
        int rc = pthread_attr_getstack(&attr, &low, &size);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            Py_RETURN_NONE;
        }
        return Py_BuildValue("{s:n,s:n}", "c_stack_bytes", (Py_ssize_t)((char *)low + size -
                             (char *)self->sp), "data_stack_bytes", (Py_ssize_t)-1);
    }
    if (self->stack.base == NULL || self->state != FIBER_ACTIVE || self->sp == NULL ||
        (tls_thread != NULL && tls_thread->current == self)) {
        Py_RETURN_NONE;
    }
    char *top = fiber_stack_top(&self->stack);
    char *chunk = fiber_stack_chunk(&self->stack);
    Py_ssize_t c_bytes = top - (char *)self->sp;
    Py_ssize_t data_bytes = interp_state_data_stack_bytes(&self->ps, chunk);
    return Py_BuildValue("{s:n,s:n}", "c_stack_bytes", c_bytes, "data_stack_bytes", data_bytes);
}

static PyMethodDef fiber_methods[] = {
    {"_stack_usage", (PyCFunction)fiber_stack_usage, METH_NOARGS,
     "_stack_usage()\n--\n\nC-stack and data-stack bytes in use by a suspended fiber (or None)."},
    {"switch", (PyCFunction)(void (*)(void))fiber_switch, METH_FASTCALL | METH_KEYWORDS,
     "switch(*args, **kwargs)\n--\n\nRun this fiber until it switches back; returns what the "
     "next switch to the caller sends."},
    {"throw", (PyCFunction)fiber_throw, METH_VARARGS,
     "throw(typ=FiberExit, val=None, tb=None)\n--\n\nRaise an exception inside this fiber."},
    {NULL}
};

static PyGetSetDef fiber_getset[] = {
    {"dead", (getter)fiber_get_dead, NULL, "True once run() has returned or raised.", NULL},
    {"parent", (getter)fiber_get_parent, (setter)fiber_set_parent,
     "The fiber that receives this one's result.", NULL},
    {"run", (getter)fiber_get_run, (setter)fiber_set_run, "The callable to run.", NULL},
    {"frame", (getter)fiber_get_frame, NULL, "Top frame of a suspended fiber, else None.", NULL},
    {"gr_frame", (getter)fiber_get_frame, NULL, "greenlet spelling of frame.", NULL},
    {"context", (getter)fiber_get_context, (setter)fiber_set_context,
     "The contextvars.Context the fiber runs in (None: empty).", NULL},
    {"gr_context", (getter)fiber_get_context, (setter)fiber_set_context,
     "greenlet spelling of context.", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL}
};

static PyNumberMethods fiber_as_number = {
    .nb_bool = (inquiry)fiber_bool,
};

static PyTypeObject Fiber_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "loop._switch.Fiber",
    .tp_doc = "Fiber(run=None, parent=None, copy_context=False)\n--\n\n"
              "A green thread with its own C stack. Semantics follow greenlet.greenlet, except "
              "that switching or throwing into a finished fiber raises FiberError, and so does "
              "a start that the lookup of run already made; a finished fiber's context is final; "
              "a parent from another thread is refused at once. It runs in "
              "an empty context, or with copy_context=True in a copy of the current context "
              "as of this call (as an asyncio task does).",
    .tp_basicsize = sizeof(Fiber),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = fiber_new,
    .tp_init = (initproc)fiber_init,
    .tp_dealloc = (destructor)fiber_dealloc,
    .tp_traverse = (traverseproc)fiber_traverse,
    .tp_clear = (inquiry)fiber_clear,
    .tp_is_gc = (inquiry)fiber_is_gc,
    .tp_methods = fiber_methods,
    .tp_getset = fiber_getset,
    .tp_as_number = &fiber_as_number,
    .tp_repr = (reprfunc)fiber_repr,
    .tp_dictoffset = offsetof(Fiber, dict),
    .tp_weaklistoffset = offsetof(Fiber, weakreflist),
};

/* ========================================================================================== */
/* Module functions                                                                            */
/* ========================================================================================== */

static PyObject *
mod_getcurrent(PyObject *module, PyObject *unused)
{
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        return NULL;
    }
    Py_INCREF(ft->current);
    return (PyObject *)ft->current;
}

static PyObject *
mod_settrace(PyObject *module, PyObject *fn)
{
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        return NULL;
    }
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "settrace() argument must be callable or None");
        return NULL;
    }
    PyObject *old = ft->trace;
    ft->trace = fn == Py_None ? NULL : fn;
    Py_XINCREF(ft->trace);
    if (old == NULL) {
        Py_RETURN_NONE;
    }
    return old;
}

static PyObject *
mod_gettrace(PyObject *module, PyObject *unused)
{
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        return NULL;
    }
    if (ft->trace == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(ft->trace);
    return ft->trace;
}

static PyObject *
mod_get_stack_size(PyObject *module, PyObject *unused)
{
    return PyLong_FromSize_t(fiber_stack_size());
}

static PyObject *
mod_set_stack_size(PyObject *module, PyObject *arg)
{
    size_t size = PyLong_AsSize_t(arg);
    if (size == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fiber_stack_set_size(size) < 0) {
        return NULL;
    }
    return PyLong_FromSize_t(fiber_stack_size());
}

/* The allocator's counters, and which stack switch this build uses. */
static PyObject *
mod_stack_stats(PyObject *module, PyObject *unused)
{
    PyObject *stats = fiber_stack_stats();
    if (stats == NULL) {
        return NULL;
    }
    PyObject *arch = PyUnicode_FromString(LOOP_STACK_SWITCH_ARCH);
    if (arch == NULL || PyDict_SetItemString(stats, "arch", arch) < 0) {
        Py_XDECREF(arch);
        Py_DECREF(stats);
        return NULL;
    }
    Py_DECREF(arch);
    return stats;
}

/* Make `type` (a subclass of Fiber that adds no storage) the type of main fibers: of threads that
 * start using fibers from now on, and of the calling thread's, which is re-typed in place (both
 * types share one layout and one deallocator). loop.compat.greenlet uses it so that greenlet
 * code finds its main greenlet to be a greenlet.greenlet, as in greenlet. Main fibers of other
 * threads that already exist keep their type. */
static PyObject *
mod_set_main_fiber_type(PyObject *module, PyObject *arg)
{
    if (!PyType_Check(arg) || !PyType_IsSubtype((PyTypeObject *)arg, &Fiber_Type)) {
        PyErr_SetString(PyExc_TypeError, "_set_main_fiber_type() needs a subclass of Fiber");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)arg;
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_basicsize != Fiber_Type.tp_basicsize ||
        type->tp_itemsize != 0 || type->tp_dictoffset != Fiber_Type.tp_dictoffset ||
        type->tp_weaklistoffset != Fiber_Type.tp_weaklistoffset ||
        (type->tp_flags & (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_IS_ABSTRACT))) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_main_fiber_type() needs a class with Fiber's layout (no __slots__)");
        return NULL;
    }
    FiberThread *ft = current_thread();
    if (ft == NULL) {
        return NULL;
    }
    Fiber *main = ft->main;
    if (Py_TYPE(main) != type) {
        PyTypeObject *old = Py_TYPE(main);
        Py_INCREF(type);
        Py_SET_TYPE(main, type);
        if (old->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            Py_DECREF(old);
        }
    }
    Py_INCREF(type);
    Py_XSETREF(main_fiber_type, type);
    Py_RETURN_NONE;
}

/* The calling thread's trashcan nesting depth (None on 3.13+, which has no such counter). It is
 * one of the fields every switch saves and restores per fiber; tests read it to check that a
 * switch in the middle of a deferred deallocation leaves it balanced. */
static PyObject *
mod_trash_delete_nesting(PyObject *module, PyObject *unused)
{
    int nesting = interp_trash_delete_nesting(PyThreadState_Get());
    if (nesting < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(nesting);
}

static PyMethodDef module_methods[] = {
    {"getcurrent", mod_getcurrent, METH_NOARGS, "getcurrent()\n--\n\nThe running fiber."},
    {"settrace", mod_settrace, METH_O,
     "settrace(fn)\n--\n\nInstall fn(event, (origin, target)) to be called on every switch in this "
     "thread; returns the previous hook."},
    {"gettrace", mod_gettrace, METH_NOARGS, "gettrace()\n--\n\nThe switch hook of this thread."},
    {"get_stack_size", mod_get_stack_size, METH_NOARGS,
     "get_stack_size()\n--\n\nBytes reserved for each new fiber's C stack."},
    {"set_stack_size", mod_set_stack_size, METH_O,
     "set_stack_size(n)\n--\n\nReserve n bytes for stacks of fibers started from now on."},
    {"_trash_delete_nesting", mod_trash_delete_nesting, METH_NOARGS,
     "_trash_delete_nesting()\n--\n\nThis thread's trashcan nesting depth (None on 3.13+)."},
    {"_set_main_fiber_type", mod_set_main_fiber_type, METH_O,
     "_set_main_fiber_type(type)\n--\n\nMake a layout-compatible Fiber subclass the type of main "
     "fibers (for loop.compat.greenlet)."},
    {"stack_stats", mod_stack_stats, METH_NOARGS,
     "stack_stats()\n--\n\nCounters about fiber stacks, for tests and benchmarks."},
    {NULL}
};

static struct PyModuleDef switch_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "loop._switch",
    .m_doc = "Green threads on their own C stacks: the core that loop stands on.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__switch(void)
{
    if (fiber_stack_init() < 0) {
        return NULL;
    }
    if (!interp_context_layout_ok()) {
        PyErr_SetString(PyExc_ImportError,
                        "loop._switch: contextvars.Context does not have the expected layout");
        return NULL;
    }
    if (PyType_Ready(&Fiber_Type) < 0 || PyType_Ready(&ThreadHandle_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&switch_module);
    if (m == NULL) {
        return NULL;
    }
    FiberExit = PyErr_NewExceptionWithDoc(
        "loop._switch.FiberExit",
        "Raised inside a fiber to end it quietly; its instance is returned to the parent.",
        PyExc_BaseException, NULL);
    FiberError = PyErr_NewExceptionWithDoc(
        "loop._switch.FiberError", "Misuse of a fiber: a switch that cannot happen.",
        PyExc_RuntimeError, NULL);
    parent_start_error = FiberError == NULL ? NULL : PyObject_CallFunction(
        FiberError, "s", "cannot start the parent of a finished fiber (no stack could be "
        "mapped, or the interpreter is finalizing)");
    thread_key = PyUnicode_InternFromString("loop._switch.thread");
    str_run = PyUnicode_InternFromString("run");
    str_switch = PyUnicode_InternFromString("switch");
    str_throw = PyUnicode_InternFromString("throw");
    str_dead_goes_to_parent = PyUnicode_InternFromString("_dead_switch_goes_to_parent");
    if (!FiberExit || !FiberError || !parent_start_error || !thread_key || !str_run || !str_switch || !str_throw ||
        !str_dead_goes_to_parent) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&Fiber_Type);
    if (PyModule_AddObject(m, "Fiber", (PyObject *)&Fiber_Type) < 0 ||
        PyModule_AddObjectRef(m, "FiberExit", FiberExit) < 0 ||
        PyModule_AddObjectRef(m, "FiberError", FiberError) < 0 ||
        PyModule_AddStringConstant(m, "ARCH", LOOP_STACK_SWITCH_ARCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#endif /* LOOP_UNSUPPORTED_REASON */
