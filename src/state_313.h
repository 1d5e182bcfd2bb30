/* CPython 3.13: _PyCFrame is gone and the current frame sits on the thread state itself
 * (GH-108035), so the frame pointer to swap is tstate->current_frame; a port of the 3.12 switch
 * that does not swap it leaves the next fiber running on the previous fiber's frames. The
 * trashcan keeps only delete_later; its nesting is derived from c_recursion_remaining. */
#define INTERP_DEFAULT_C_BUDGET Py_C_RECURSION_LIMIT
/* measured: 5,151 bytes and 4 units of c_recursion_remaining per level of sorted(key=...) */
#define INTERP_STACK_BYTES_PER_UNIT 1600

typedef struct {
    struct _PyInterpreterFrame *current_frame;
    INTERP_COMMON_FIELDS
    int py_recursion_depth;
    int what_event;                 /* the monitoring event being delivered, if any */
    int c_recursion_remaining;
    PyObject *delete_later;
} InterpState;

static inline void
interp_state_save(InterpState *s, PyThreadState *ts)
{
    s->current_frame = ts->current_frame;
    INTERP_COMMON_SAVE(s, ts);
    s->py_recursion_depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    s->c_recursion_remaining = ts->c_recursion_remaining;
    s->what_event = ts->what_event;
    s->delete_later = ts->delete_later;
}

static inline void
interp_state_restore(InterpState *s, PyThreadState *ts)
{
    ts->current_frame = s->current_frame;
    INTERP_COMMON_RESTORE(s, ts);
    ts->py_recursion_remaining = ts->py_recursion_limit - s->py_recursion_depth;
    ts->c_recursion_remaining = s->c_recursion_remaining;
    ts->what_event = s->what_event;
    ts->delete_later = s->delete_later;
}

static inline void
interp_state_start(InterpState *s, PyThreadState *ts, void *chunk, int chunk_size,
                   int c_budget)
{
    ts->current_frame = NULL;
    INTERP_COMMON_START(s, ts, chunk, chunk_size);
    ts->py_recursion_remaining = ts->py_recursion_limit;
    ts->c_recursion_remaining = c_budget;
    ts->what_event = -1;            /* as a new thread state starts */
    ts->delete_later = NULL;
}

/* No cframe: nothing to install at the bottom of a new fiber. */
#define INTERP_BASE_CFRAME_DECL char
static inline void
interp_state_enter_base(PyThreadState *ts, char *base) { (void)ts; (void)base; }

typedef struct _PyInterpreterFrame *InterpTopFrame;
static inline void
interp_state_top_frame_swap(PyThreadState *ts, InterpState *s, InterpTopFrame *saved)
{
    if (s) { *saved = ts->current_frame; ts->current_frame = s->current_frame; }
    else { ts->current_frame = *saved; }
}

/* No separate trashcan nesting counter on 3.13 (see above). */
static inline int
interp_trash_delete_nesting(PyThreadState *ts)
{
    (void)ts;
    return -1;
}
