/* CPython 3.12: frames still hang off tstate->cframe, but tracing moved out of it; Python and C
 * recursion have separate counters (GH-96510); trashcan state is tstate->trash. Entry frames
 * (FRAME_OWNED_BY_CSTACK) live on the C stack, which is fine for us: a suspended fiber's C stack
 * stays mapped and untouched. */
#define INTERP_DEFAULT_C_BUDGET C_RECURSION_LIMIT

typedef struct {
    _PyCFrame *cframe;
    _PyStackChunk *datastack_chunk;
    PyObject **datastack_top;
    PyObject **datastack_limit;
    int py_recursion_depth;         /* py_recursion_limit - py_recursion_remaining */
    int c_recursion_remaining;      /* the C limit is a constant, so the raw value is kept */
    _PyErr_StackItem *exc_info;
    _PyErr_StackItem exc_state;
    PyObject *context;
    int trash_delete_nesting;
    PyObject *trash_delete_later;
} InterpState;

static inline void
interp_state_save(InterpState *s, PyThreadState *ts)
{
    s->cframe = ts->cframe;
    s->datastack_chunk = ts->datastack_chunk;
    s->datastack_top = ts->datastack_top;
    s->datastack_limit = ts->datastack_limit;
    s->py_recursion_depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    s->c_recursion_remaining = ts->c_recursion_remaining;
    s->exc_info = ts->exc_info;
    s->exc_state = ts->exc_state;
    s->context = ts->context;
    ts->context = NULL;
    s->trash_delete_nesting = ts->trash.delete_nesting;
    s->trash_delete_later = ts->trash.delete_later;
}

static inline void
interp_state_restore(InterpState *s, PyThreadState *ts)
{
    ts->cframe = s->cframe;
    ts->datastack_chunk = s->datastack_chunk;
    ts->datastack_top = s->datastack_top;
    ts->datastack_limit = s->datastack_limit;
    ts->py_recursion_remaining = ts->py_recursion_limit - s->py_recursion_depth;
    ts->c_recursion_remaining = s->c_recursion_remaining;
    ts->exc_state = s->exc_state;
    ts->exc_info = s->exc_info ? s->exc_info : &ts->exc_state;
    ts->context = s->context;
    s->context = NULL;
    ts->context_ver++;
    ts->trash.delete_nesting = s->trash_delete_nesting;
    ts->trash.delete_later = s->trash_delete_later;
}

static inline void
interp_state_start(InterpState *s, PyThreadState *ts, _PyStackChunk *chunk, int chunk_size,
                   int c_budget)
{
    chunk->previous = NULL;
    chunk->size = chunk_size;
    chunk->top = 0;
    ts->datastack_chunk = chunk;
    ts->datastack_top = &chunk->data[1];
    ts->datastack_limit = (PyObject **)((char *)chunk + chunk_size);
    ts->py_recursion_remaining = ts->py_recursion_limit;
    ts->c_recursion_remaining = c_budget;
    ts->exc_state.exc_value = NULL;
    ts->exc_state.previous_item = NULL;
    ts->exc_info = &ts->exc_state;
    ts->context = s->context;
    s->context = NULL;
    ts->context_ver++;
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
