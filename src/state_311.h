/* CPython 3.11: frames hang off tstate->cframe (a _PyCFrame on the C stack), one recursion
 * counter covers Python and C recursion, use_tracing lives in the cframe, trashcan nesting is an
 * int on the thread state. */
#define INTERP_DEFAULT_C_BUDGET 0

typedef struct {
    _PyCFrame *cframe;              /* points into the fiber's own C stack: stays valid */
    _PyStackChunk *datastack_chunk;
    PyObject **datastack_top;
    PyObject **datastack_limit;
    int recursion_depth;            /* limit - remaining, so setrecursionlimit() is honoured */
    _PyErr_StackItem *exc_info;
    _PyErr_StackItem exc_state;
    PyObject *context;              /* strong reference while the fiber is not running */
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
    s->recursion_depth = ts->recursion_limit - ts->recursion_remaining;
    s->exc_info = ts->exc_info;
    s->exc_state = ts->exc_state;
    s->context = ts->context;
    ts->context = NULL;
    s->trash_delete_nesting = ts->trash_delete_nesting;
    s->trash_delete_later = ts->trash_delete_later;
}

static inline void
interp_state_restore(InterpState *s, PyThreadState *ts)
{
    /* Tracing is a property of the thread: the resumed fiber inherits the flag (greenlet#256). */
    uint8_t use_tracing = ts->cframe->use_tracing;
    ts->cframe = s->cframe;
    ts->cframe->use_tracing = use_tracing;
    ts->datastack_chunk = s->datastack_chunk;
    ts->datastack_top = s->datastack_top;
    ts->datastack_limit = s->datastack_limit;
    ts->recursion_remaining = ts->recursion_limit - s->recursion_depth;
    ts->exc_state = s->exc_state;
    ts->exc_info = s->exc_info ? s->exc_info : &ts->exc_state;
    ts->context = s->context;
    s->context = NULL;
    ts->context_ver++;
    ts->trash_delete_nesting = s->trash_delete_nesting;
    ts->trash_delete_later = s->trash_delete_later;
}

static inline void
interp_state_start(InterpState *s, PyThreadState *ts, _PyStackChunk *chunk, int chunk_size,
                   int c_budget)
{
    /* ts->cframe keeps pointing at the origin's (still mapped) cframe until the new fiber's
     * bottom C frame installs its own base cframe in interp_state_enter_base(). */
    chunk->previous = NULL;
    chunk->size = chunk_size;
    chunk->top = 0;
    ts->datastack_chunk = chunk;
    ts->datastack_top = &chunk->data[1];   /* data[0] reserved: CPython never pops a root chunk */
    ts->datastack_limit = (PyObject **)((char *)chunk + chunk_size);
    ts->recursion_remaining = ts->recursion_limit;
    ts->exc_state.exc_value = NULL;
    ts->exc_state.previous_item = NULL;
    ts->exc_info = &ts->exc_state;
    ts->context = s->context;
    s->context = NULL;
    ts->context_ver++;
    ts->trash_delete_nesting = 0;
    ts->trash_delete_later = NULL;
    (void)c_budget;
}

#define INTERP_BASE_CFRAME_DECL _PyCFrame
static inline void
interp_state_enter_base(PyThreadState *ts, _PyCFrame *base)
{
    base->use_tracing = ts->cframe->use_tracing;
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
