/* CPython 3.11: frames hang off tstate->cframe (a _PyCFrame on the C stack), one recursion
 * counter covers Python and C recursion, use_tracing lives in the cframe, trashcan nesting is an
 * int on the thread state. */
#define INTERP_DEFAULT_C_BUDGET 0
/* measured: 4,985 bytes and 2 units of recursion_remaining per level of sorted(key=...) */
#define INTERP_STACK_BYTES_PER_UNIT 3100

typedef struct {
    _PyCFrame *cframe;              /* points into the fiber's own C stack: stays valid */
    INTERP_COMMON_FIELDS
    int recursion_depth;            /* the fiber's own depth: what CPython sees, less the offset */
    int recursion_budget;           /* units the fiber's stack holds; 0 = no bound (main fibers) */
    int depth_offset;               /* added to the depth CPython sees (interp_recursion_apply) */
    int tracing_what;
    int trash_delete_nesting;
    PyObject *trash_delete_later;
} InterpState;

/* 3.11 counts Python and C calls with one counter (recursion_remaining, against the thread's
 * recursion_limit), and offers no C budget apart from it. Two things are done with it here:
 *  - A fiber whose stack holds fewer units than the limit (recursion_budget, a small
 *    LOOP_STACK_SIZE) runs as if it were already depth_offset deep, so RecursionError comes
 *    at its budget, before the guard page. Recomputed at every restore, so a changed limit
 *    applies from the next switch on.
 *  - CPython aborts ("Cannot recover from stack overflow") when it has to build a RecursionError
 *    more than 50 calls past the limit. A fiber suspended deeper than a limit lowered meanwhile
 *    would be that far past it, so the thread's limit is lifted to just above the depth it
 *    sees: the next deeper call raises RecursionError. Until it switches again, such a fiber
 *    may come back to the depth it was parked at (its stack held that much), never deeper. */
static inline void
interp_recursion_apply(InterpState *s, PyThreadState *ts)
{
    int limit = Py_GetRecursionLimit();
    s->depth_offset = s->recursion_budget > 0 && s->recursion_budget < limit
                      ? limit - s->recursion_budget : 0;
    int seen = s->recursion_depth + s->depth_offset;
    ts->recursion_limit = seen < limit ? limit : seen + 1;
    ts->recursion_remaining = ts->recursion_limit - seen;
}

static inline void
interp_state_save(InterpState *s, PyThreadState *ts)
{
    s->cframe = ts->cframe;
    INTERP_COMMON_SAVE(s, ts);
    s->recursion_depth = ts->recursion_limit - ts->recursion_remaining - s->depth_offset;
    s->tracing_what = ts->tracing_what;
    s->trash_delete_nesting = ts->trash_delete_nesting;
    s->trash_delete_later = ts->trash_delete_later;
}

static inline void
interp_state_restore(InterpState *s, PyThreadState *ts)
{
    ts->cframe = s->cframe;
    INTERP_COMMON_RESTORE(s, ts);
    ts->tracing_what = s->tracing_what;
    /* Trace and profile functions belong to the thread, so the resumed fiber traces if the
     * thread does -- a fiber that was suspended before sys.settrace() was called is traced once
     * it resumes, as a thread's other frames are -- unless it is itself inside a trace function.
     * The formula is CPython's _PyThreadState_UpdateTracing. */
    ts->cframe->use_tracing =
        (ts->tracing == 0 && (ts->c_tracefunc != NULL || ts->c_profilefunc != NULL)) ? 255 : 0;
    interp_recursion_apply(s, ts);
    ts->trash_delete_nesting = s->trash_delete_nesting;
    ts->trash_delete_later = s->trash_delete_later;
}

static inline void
interp_state_start(InterpState *s, PyThreadState *ts, void *chunk, int chunk_size,
                   int c_budget)
{
    /* ts->cframe keeps pointing at the origin's (still mapped) cframe until the new fiber's
     * bottom C frame installs its own base cframe in interp_state_enter_base(). */
    INTERP_COMMON_START(s, ts, chunk, chunk_size);
    s->recursion_depth = 0;
    s->recursion_budget = c_budget;
    interp_recursion_apply(s, ts);
    ts->tracing_what = 0;
    ts->trash_delete_nesting = 0;
    ts->trash_delete_later = NULL;
}

#define INTERP_BASE_CFRAME_DECL _PyCFrame
static inline void
interp_state_enter_base(PyThreadState *ts, _PyCFrame *base)
{
    base->use_tracing = (ts->c_tracefunc != NULL || ts->c_profilefunc != NULL) ? 255 : 0;
    base->current_frame = NULL;
    base->previous = &ts->root_cframe;
    ts->cframe = base;
}

typedef _PyCFrame *InterpTopFrame;
/* save != NULL: make the suspended fiber's frames the thread's current ones; else undo. */
static inline void
interp_state_top_frame_swap(PyThreadState *ts, InterpState *s, InterpTopFrame *saved)
{
    if (s) { *saved = ts->cframe; ts->cframe = s->cframe; }
    else { ts->cframe = *saved; }
}

static inline int
interp_trash_delete_nesting(PyThreadState *ts)
{
    return ts->trash_delete_nesting;
}
