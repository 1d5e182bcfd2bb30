/*
 * fiber_stack.c -- C stacks for fibers: mapping, guard pages, reuse, and giving memory back.
 *
 * Interface and stack layout: fiber_stack.h. Why it is built this way:
 *
 * Each fiber gets its own C stack, mapped lazily (MAP_NORESERVE) and 8 MiB by default -- the size
 * CPython's recursion limits were tuned for -- with a guard page at the bottom. Only touched pages
 * cost memory, so a fiber suspended in shallow code holds one page (the hot page, shared by the
 * top of its C stack and the start of its data-stack chunk).
 *
 * What costs time is the kernel, so each step avoids a system call where it can:
 *  - New stacks are mapped STACK_BATCH at a time, one mmap instead of sixteen.
 *  - Guard pages are installed with MADV_GUARD_INSTALL where the kernel has it (Linux >= 6.13),
 *    which does not split the mapping, so 100,000s of stacks do not hit vm.max_map_count; older
 *    kernels fall back to mprotect (two VMAs per stack).
 *  - A finished stack goes to a pool (guard installed, hot page resident) and is handed out again
 *    without any system call; past the pool it goes to a cold list with its pages given back by
 *    MADV_DONTNEED, which is cheaper than munmap's TLB shootdown; only past that is it unmapped.
 *  - Before pooling, pages that deep recursion touched are given back -- but two tripwire bands on
 *    the hot page's edges tell, without a mincore call, that a short-lived fiber never left it.
 *  - Batches are placed so that a stack's guard page shares a page table with the hot page of the
 *    stack below it, which halves the page-table memory per suspended fiber.
 *
 * Nothing here knows about fibers or Python thread states; the only Python API used is for memory
 * (PyMem_RawMalloc), for the stack_stats() dict and for raising errors.
 */
#include "fiber_stack.h"

/* Only Linux has a stack switch (stack_switch.h); elsewhere loop._switch is a module whose import
 * raises ImportError, and this file compiles to nothing, so that its Linux-only calls do not
 * break that build. */
#if defined(__linux__)

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memory_checkers.h"

#ifndef MADV_GUARD_INSTALL
#  define MADV_GUARD_INSTALL 102
#endif

#define DEFAULT_STACK_SIZE (8u << 20)
/* New stacks are mapped this many at a time: one mmap instead of sixteen. */
#define STACK_BATCH 16
/* Finished stacks kept for reuse, hot page resident and guard installed; beyond this they are
 * unmapped. munmap is the most expensive step of a stack's life (TLB shootdown), so the pool is
 * generous: 1024 stacks keep at most ~8 MiB resident (the hot page plus its page table). */
#define STACK_POOL_MAX 1024

size_t fiber_page_size;
static size_t stack_size = DEFAULT_STACK_SIZE;
static int guard_mode;   /* 0 unknown, 1 madvise guard, 2 mprotect guard */
static char *stack_pool[STACK_POOL_MAX];     /* used before: guarded, hot page resident */
static int stack_pool_len;
/* Beyond the pool, finished stacks are kept as "cold": guard installed, every page given back with
 * MADV_DONTNEED (cheaper than munmap's TLB shootdown); only past this many are they unmapped. */
#define STACK_COLD_MAX 16384
static char **stack_cold;
static int stack_cold_len;
static char *stack_fresh[STACK_BATCH];       /* mapped by a batch, never used, no guard yet */
static int stack_fresh_len;
static size_t stacks_mapped;                 /* stacks currently mapped: in use, pooled, fresh */
/* Why the last fiber_stack_alloc() failed. The allocator sets no Python error itself: the
 * finishing path allocates the stack of a never-started parent where no Python code may run
 * (creating an exception can start a collection), so callers raise
 * (fiber_stack_raise_alloc_error). */
static const char *stack_alloc_failed_step;
static int stack_alloc_failed_errno;

/* The page that holds the top of the C stack and the start of the root data-stack chunk
 * (fiber_stack.h, "Layout"). */
static inline char *
stack_hot_page_of(char *base, size_t size)
{
    FiberStack st = {base, size};
    return (char *)((uintptr_t)fiber_stack_chunk(&st) & ~(uintptr_t)(fiber_page_size - 1));
}

static int
stack_install_guard(char *base)
{
    if (guard_mode != 2) {
        if (madvise(base, fiber_page_size, MADV_GUARD_INSTALL) == 0) {
            guard_mode = 1;
            return 0;
        }
        if (guard_mode == 1 || (errno != EINVAL && errno != ENOSYS)) {
            return -1;
        }
        guard_mode = 2;
    }
    return mprotect(base, fiber_page_size, PROT_NONE);
}

/* One last-level page table maps 2 MiB (4 KiB pages, x86-64 and aarch64), and the kernel
 * allocates a 4 KiB table for every 2 MiB region a stack touches -- the guard page counts, since
 * MADV_GUARD_INSTALL marks it in the page table. Large anonymous mappings come back 2 MiB-aligned,
 * so with 8 MiB stacks each fiber's guard page and hot page would sit in two different regions:
 * 8 KiB of page tables per fiber (measured: VmPTE/fiber 8,224 bytes). Starting the stacks
 * STACK_TABLE_OFFSET past a region boundary puts every guard page in the region that also holds
 * the hot page of the stack below it (~20 KiB under its end), halving that. */
#define PAGE_TABLE_SPAN ((size_t)2 << 20)
#define STACK_TABLE_OFFSET ((size_t)64 << 10)

static int
stack_map_batch(void)
{
    size_t count = STACK_BATCH;
    size_t want = stack_size * count;
    size_t span = want + PAGE_TABLE_SPAN;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    char *base;
    if (raw != MAP_FAILED) {
        uintptr_t start = (((uintptr_t)raw + PAGE_TABLE_SPAN - 1) & ~(uintptr_t)(PAGE_TABLE_SPAN - 1))
                          + STACK_TABLE_OFFSET;
        if (start - (uintptr_t)raw >= PAGE_TABLE_SPAN) {
            start -= PAGE_TABLE_SPAN;
        }
        base = (char *)start;
        /* The slack before and after stays mapped (never touched, so it costs no memory):
         * unmapping it would leave holes, and batches would stop merging into one VMA. */
    }
    else {
        count = 1;
        base = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (base == MAP_FAILED) {
            stack_alloc_failed_step = "map a fiber stack";
            stack_alloc_failed_errno = errno;
            return -1;
        }
    }
    /* Highest first, so stacks are handed out from low to high addresses. */
    for (size_t i = count; i-- > 0;) {
        stack_fresh[stack_fresh_len++] = base + i * stack_size;
    }
    stacks_mapped += count;
    return 0;
}

static void stack_set_tripwires(char *base, size_t size);

/* Let the memory checkers forget what they recorded about `len` bytes of a pooled stack. */
static inline void
stack_checkers_forget(char *start, size_t len)
{
#ifdef LOOP_HAVE_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED(start, len);
#endif
#ifdef LOOP_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(start, len);
#endif
    (void)start;
    (void)len;
}

int
fiber_stack_alloc(FiberStack *st)
{
    st->size = stack_size;
    if (stack_pool_len > 0) {
        st->base = stack_pool[--stack_pool_len];
        stack_checkers_forget(st->base + fiber_page_size, st->size - fiber_page_size);
        stack_set_tripwires(st->base, st->size);
        return 0;
    }
    if (stack_cold_len > 0) {
        st->base = stack_cold[--stack_cold_len];
        stack_checkers_forget(st->base + fiber_page_size, st->size - fiber_page_size);
        stack_set_tripwires(st->base, st->size);
        return 0;
    }
    if (stack_fresh_len == 0 && stack_map_batch() < 0) {
        return -1;
    }
    char *base = stack_fresh[--stack_fresh_len];
    if (stack_install_guard(base) < 0) {
        stack_alloc_failed_step = "install a fiber stack guard page";
        stack_alloc_failed_errno = errno;
        munmap(base, stack_size);
        stacks_mapped--;
        return -1;
    }
#ifdef LOOP_HAVE_VALGRIND
    VALGRIND_STACK_REGISTER(base + fiber_page_size, base + stack_size);
#endif
    st->base = base;
    stack_set_tripwires(st->base, st->size);
    return 0;
}

void
fiber_stack_raise_alloc_error(void)
{
    PyErr_Format(PyExc_MemoryError, "cannot %s (%zu bytes): %s", stack_alloc_failed_step,
                 stack_size, strerror(stack_alloc_failed_errno));
}

/* Tripwires for stack_trim. A fiber that used more than its hot page wrote across one of the hot
 * page's two edges: the C stack grows down through its lowest bytes, the frame data stack up
 * through its highest. Both edges are filled with a pattern when the stack is handed out; if
 * both are intact when it comes back, the fiber stayed inside the hot page and the mincore
 * probe (a syscall, ~1 us: a third of the cost of a short green thread's whole life) is
 * skipped. The bands sit below what short-lived green threads use (measured peaks on 3.11-3.13:
 * 1.5-1.8 KiB of the 2,944 bytes of C stack, 450 of the 1,024 bytes of frames) and below what a
 * green thread parked in Event.wait uses (2.4-2.5 KiB, 704 bytes), so those take the fast path.
 * A frame can straddle a band without writing into it and touch the pages beyond; the page
 * then stays resident in the pool, which, like the probe's own blind spot below, only costs
 * memory. */
#define TRIPWIRE_C_BYTES 256
#define TRIPWIRE_DATA_BYTES 128
#define TRIPWIRE_WORD ((uint64_t)0x7f1be5a55a5ae1f7ull)

static void
stack_set_tripwires(char *base, size_t size)
{
    uint64_t *c = (uint64_t *)stack_hot_page_of(base, size);
    uint64_t *d = (uint64_t *)((char *)c + fiber_page_size - TRIPWIRE_DATA_BYTES);
    for (size_t i = 0; i < TRIPWIRE_C_BYTES / sizeof(uint64_t); i++) {
        c[i] = TRIPWIRE_WORD;
    }
    for (size_t i = 0; i < TRIPWIRE_DATA_BYTES / sizeof(uint64_t); i++) {
        d[i] = TRIPWIRE_WORD;
    }
}

static int
stack_tripwires_intact(char *base, size_t size)
{
    const uint64_t *c = (const uint64_t *)stack_hot_page_of(base, size);
    const uint64_t *d = (const uint64_t *)((const char *)c + fiber_page_size - TRIPWIRE_DATA_BYTES);
#ifdef LOOP_HAVE_VALGRIND
    /* Whatever the last fiber left there is what we want to look at. */
    VALGRIND_MAKE_MEM_DEFINED(c, TRIPWIRE_C_BYTES);
    VALGRIND_MAKE_MEM_DEFINED(d, TRIPWIRE_DATA_BYTES);
#endif
#ifdef LOOP_HAVE_ASAN
    ASAN_UNPOISON_MEMORY_REGION(c, TRIPWIRE_C_BYTES);
    ASAN_UNPOISON_MEMORY_REGION(d, TRIPWIRE_DATA_BYTES);
#endif
    uint64_t diff = 0;
    for (size_t i = 0; i < TRIPWIRE_C_BYTES / sizeof(uint64_t); i++) {
        diff |= c[i] ^ TRIPWIRE_WORD;
    }
    for (size_t i = 0; i < TRIPWIRE_DATA_BYTES / sizeof(uint64_t); i++) {
        diff |= d[i] ^ TRIPWIRE_WORD;
    }
    return diff == 0;
}

/* Before pooling a stack, give back what deep recursion touched. Unless the tripwires say the
 * fiber stayed in its hot page, one mincore of the pages next to the hot one tells; the
 * expensive MADV_DONTNEED runs only when one of them is resident. A frame that skipped those
 * pages entirely goes unnoticed, which only costs memory. */
static void
stack_trim(char *base, size_t size)
{
    if (stack_tripwires_intact(base, size)) {
        return;
    }
    char *hot = stack_hot_page_of(base, size);
    char *probe = hot - 4 * fiber_page_size;
    size_t probe_len = 4 * fiber_page_size + (size_t)(base + size - hot);
    unsigned char resident[64];
    if (probe <= base || probe_len / fiber_page_size > sizeof(resident)) {
        return;
    }
    if (mincore(probe, probe_len, resident) != 0) {
        return;
    }
    size_t hot_index = 4;
    int deep = 0;
    for (size_t i = 0; i < probe_len / fiber_page_size; i++) {
        if (i != hot_index && (resident[i] & 1)) {
            deep = 1;
            break;
        }
    }
    if (deep) {
        madvise(base + fiber_page_size, (size_t)(hot - base - fiber_page_size), MADV_DONTNEED);
        madvise(hot + fiber_page_size, (size_t)(base + size - hot - fiber_page_size),
                MADV_DONTNEED);
    }
}

void
fiber_stack_release(FiberStack *st)
{
    char *base = st->base;
    if (base == NULL) {
        return;
    }
    st->base = NULL;
    if (st->size == stack_size && stack_pool_len < STACK_POOL_MAX) {
        stack_trim(base, st->size);
        stack_pool[stack_pool_len++] = base;
        return;
    }
    if (st->size == stack_size && stack_cold_len < STACK_COLD_MAX) {
        if (stack_cold == NULL) {
            stack_cold = PyMem_RawMalloc(STACK_COLD_MAX * sizeof(char *));
        }
        if (stack_cold != NULL) {
            char *hot = stack_hot_page_of(base, st->size);
            stack_trim(base, st->size);
            madvise(hot, (size_t)(base + st->size - hot), MADV_DONTNEED);
            stack_cold[stack_cold_len++] = base;
            return;
        }
    }
    munmap(base, st->size);
    stacks_mapped--;
}

static void
stack_pool_flush(void)
{
    while (stack_pool_len > 0) {
        munmap(stack_pool[--stack_pool_len], stack_size);
        stacks_mapped--;
    }
    while (stack_cold_len > 0) {
        munmap(stack_cold[--stack_cold_len], stack_size);
        stacks_mapped--;
    }
    while (stack_fresh_len > 0) {
        munmap(stack_fresh[--stack_fresh_len], stack_size);
        stacks_mapped--;
    }
}


/* ========================================================================================== */
/* Size and counters                                                                           */
/* ========================================================================================== */

int
fiber_stack_init(void)
{
    fiber_page_size = (size_t)sysconf(_SC_PAGESIZE);
    const char *env = getenv("LOOP_STACK_SIZE");
    if (env != NULL && *env) {
        char *endp;
        unsigned long long v = strtoull(env, &endp, 0);
        if (*endp == 'k' || *endp == 'K') v <<= 10;
        else if (*endp == 'm' || *endp == 'M') v <<= 20;
        if (v < FIBER_MIN_STACK_SIZE) {
            PyErr_Format(PyExc_ImportError, "LOOP_STACK_SIZE=%s is below the minimum of %u bytes",
                         env, FIBER_MIN_STACK_SIZE);
            return -1;
        }
        stack_size = ((size_t)v + fiber_page_size - 1) & ~(fiber_page_size - 1);
    }
    return 0;
}

size_t
fiber_stack_size(void)
{
    return stack_size;
}

int
fiber_stack_set_size(size_t size)
{
    if (size < FIBER_MIN_STACK_SIZE) {
        PyErr_Format(PyExc_ValueError, "stack size must be at least %u bytes",
                     FIBER_MIN_STACK_SIZE);
        return -1;
    }
    size = (size + fiber_page_size - 1) & ~(fiber_page_size - 1);
    if (size != stack_size) {
        stack_pool_flush();
        stack_size = size;
    }
    return 0;
}

PyObject *
fiber_stack_stats(void)
{
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:s}",
                         "stack_size", (Py_ssize_t)stack_size,
                         "stacks_mapped", (Py_ssize_t)stacks_mapped,
                         "stacks_pooled", (Py_ssize_t)stack_pool_len,
                         "stacks_cold", (Py_ssize_t)stack_cold_len,
                         "stacks_fresh", (Py_ssize_t)stack_fresh_len,
                         "guard", guard_mode == 1 ? "madvise"
                                  : guard_mode == 2 ? "mprotect" : "unknown");
}

#endif /* __linux__ */
