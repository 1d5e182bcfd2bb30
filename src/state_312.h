/* CPython 3.12: frames still hang off tstate->cframe, but tracing moved out of it; Python and C
 * recursion have separate counters (GH-96510); trashcan state is tstate->trash. Entry frames
 * (FRAME_OWNED_BY_CSTACK) live on the C stack, which is fine for us: a suspended fiber's C stack
 * stays mapped and untouched. */
#define INTERP_DEFAULT_C_BUDGET C_RECURSION_LIMIT
/* measured: 4,989 bytes and 3 units of c_recursion_remaining per level of sorted(key=...) */
#define INTERP_STACK_BYTES_PER_UNIT 2100

typedef struct {
    _PyCFrame *cframe;
    INTERP_COMMON_FIELDS
    int py_recursion_depth;         /* py_recursion_limit - py_recursion_remaining */
    int what_event;                 /* the monitoring event being delivered, if any */
    int c_recursion_remaining;      /* the C limit is a constant, so the raw value is kept */
    int trash_delete_nesting;
    PyObject *trash_delete_later;
} InterpState;

static inline void
interp_state_save(InterpState *s, PyThreadState *ts)
{
    s->cframe = ts->cframe;
    INTERP_COMMON_SAVE(s, ts);
    s->py_recursion_depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    s->c_recursion_remaining = ts->c_recursion_remaining;
    s->what_event = ts->what_event;
    s->trash_delete_nesting = ts->trash.delete_nesting;
    s->trash_delete_later = ts->trash.delete_later;
}

static inline void
interp_state_restore(InterpState *s, PyThreadState *ts)
{
    ts->cframe = s->cframe;
    INTERP_COMMON_RESTORE(s, ts);
    ts->py_recursion_remaining = ts->py_recursion_limit - s->py_recursion_depth;
    ts->c_recursion_remaining = s->c_recursion_remaining;
    ts->what_event = s->what_event;
    ts->trash.delete_nesting = s->trash_delete_nesting;
    ts->trash.delete_later = s->trash_delete_later;
}

static inline void
interp_state_start(InterpState *s, PyThreadState *ts, void *chunk, int chunk_size,
                   int c_budget)
{
    INTERP_COMMON_START(s, ts, chunk, chunk_size);
    ts->py_recursion_remaining = ts->py_recursion_limit;
    ts->c_recursion_remaining = c_budget;
    ts->what_event = -1;            /* as a new thread state starts */
    ts->trash.delete_nesting = 0;
    ts->trash.delete_later = NULL;
}

#define INTERP_BASE_CFRAME_DECL _PyCFrame
static inline void
interp_state_enter_base(PyThreadState *ts, _PyCFrame *base)
{
    base->current_frame = NULL;
    base->previous = &ts->root_cframe;
    ts->cframe = base;
}

typedef _PyCFrame *InterpTopFrame;
static inline void
interp_state_top_frame_swap(PyThreadState *ts, InterpState *s, InterpTopFrame *saved)
{
    if (s) { *saved = ts->cframe; ts->cframe = s->cframe; }
    else { ts->cframe = *saved; }
}

static inline int
interp_trash_delete_nesting(PyThreadState *ts)
{
    return ts->trash.delete_nesting;
}
