/*
 * fiber_stack.h -- the interface of the fiber stack allocator (fiber_stack.c).
 *
 * Why the allocator is a file of its own: it is the part of the core that talks to the kernel
 * (mmap, madvise, mprotect, mincore) and it knows nothing of fibers, thread states or switching.
 * The switch (_switch.c) asks it for a stack when a fiber first runs and gives the stack back
 * when the fiber has finished; everything else -- the pool of hot stacks, the cold list, guard
 * pages, the tripwires that spare a mincore call, the page-table-friendly placement -- is
 * private to fiber_stack.c. The few things the switch needs on every new fiber (where the C
 * stack starts, where CPython's root data-stack chunk goes) are inline functions here, so that
 * the switch path does not call into another translation unit for them.
 *
 * Layout of one stack mapping of `size` bytes starting at `base`:
 *
 *   [base, base + page)                      guard page
 *   ... C stack, growing down ...
 *   fiber_stack_top()                        where the C stack starts (64 bytes below the chunk)
 *   [chunk, chunk + FIBER_DATA_CHUNK_SIZE)   root data-stack chunk, growing up; chunk sits at
 *                                            page offset FIBER_SHARED_PAGE_SPLIT, so that one
 *                                            page (the "hot page") holds the top of both
 *
 * A fiber suspended in shallow code therefore costs one resident page.
 *
 * The allocator sets no Python error when it fails: the end of a fiber allocates the stack of a
 * never-started parent at a point where no Python code may run (creating an exception object can
 * start a garbage collection), so callers raise with fiber_stack_raise_alloc_error() where they
 * can. All functions run with the GIL held; the allocator's state is process-wide.
 */
#ifndef LOOP_FIBER_STACK_H
#define LOOP_FIBER_STACK_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* Functions shared between the core's files are hidden: no other shared object sees them, and
 * calls between the files do not go through the PLT. */
#define LOOP_INTERNAL __attribute__((visibility("hidden")))

#define FIBER_DATA_CHUNK_SIZE (16 * 1024)      /* CPython's DATA_STACK_CHUNK_SIZE */
#define FIBER_SHARED_PAGE_SPLIT 3072
/* Below this, compiling pathologically nested source overflows the stack: CPython's parser has
 * a fixed depth limit of its own (6,000 levels, ~800 KB of C stack measured on 3.11-3.13),
 * which no recursion budget bounds. Every other deep recursion measured is bounded by the
 * recursion budget (_switch.c, fiber_recursion_budget) at any size. */
#define FIBER_MIN_STACK_SIZE (1u << 20)

typedef struct {
    char *base;          /* lowest address of the mapping (the guard page); NULL: no stack */
    size_t size;         /* whole mapping */
} FiberStack;

LOOP_INTERNAL extern size_t fiber_page_size;

/* Where the root data-stack chunk of the fiber on `st` lives. */
static inline char *
fiber_stack_chunk(const FiberStack *st)
{
    return st->base + st->size - FIBER_DATA_CHUNK_SIZE - fiber_page_size + FIBER_SHARED_PAGE_SPLIT;
}

/* Where the fiber's C stack starts (it grows down from here): a cache line below the chunk. */
static inline char *
fiber_stack_top(const FiberStack *st)
{
    return fiber_stack_chunk(st) - 64;
}

/* The part of the mapping a fiber may touch: everything above the guard page. */
static inline char *
fiber_stack_low(const FiberStack *st)
{
    return st->base + fiber_page_size;
}

static inline size_t
fiber_stack_usable_size(const FiberStack *st)
{
    return st->size - fiber_page_size;
}

/* Bytes of C stack between fiber_stack_top() and the guard page of a stack of `size` bytes. */
static inline size_t
fiber_stack_c_bytes(size_t size)
{
    size_t layout = fiber_page_size + (FIBER_DATA_CHUNK_SIZE + fiber_page_size -
                                       FIBER_SHARED_PAGE_SPLIT) + 64;
    return size > layout ? size - layout : 0;
}

/* Read the page size and LOOP_STACK_SIZE; at import. -1 with ImportError set if the variable
 * asks for less than FIBER_MIN_STACK_SIZE. */
LOOP_INTERNAL int fiber_stack_init(void);

/* Give `st` a stack of the current size: from the pool, the cold list or a new batch. 0, or -1
 * (no Python error set; see above). */
LOOP_INTERNAL int fiber_stack_alloc(FiberStack *st);

/* Take back the stack of a finished fiber (st->base becomes NULL; no stack is fine). */
LOOP_INTERNAL void fiber_stack_release(FiberStack *st);

/* Raise MemoryError for the last failed fiber_stack_alloc(), naming the step that failed. */
LOOP_INTERNAL void fiber_stack_raise_alloc_error(void);

/* The size of stacks handed out from now on. */
LOOP_INTERNAL size_t fiber_stack_size(void);

/* Change that size (rounded up to whole pages; at least FIBER_MIN_STACK_SIZE, else ValueError).
 * Stacks kept for reuse are unmapped; stacks in use keep their size. 0, or -1 with an error. */
LOOP_INTERNAL int fiber_stack_set_size(size_t size);

/* A new dict of counters (stack_size, stacks_mapped, stacks_pooled, stacks_cold, stacks_fresh,
 * guard) for loop._switch.stack_stats(); NULL with an error. */
LOOP_INTERNAL PyObject *fiber_stack_stats(void);

#endif
