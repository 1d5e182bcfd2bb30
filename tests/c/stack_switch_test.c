/* Exercises loop_stack_switch() without Python: two fibers ping-pong, values computed in
 * callee-saved registers and floating-point state must survive every switch, and the fiber's
 * entry gets its argument. Built and run by tests/test_stack_switch_c.py, natively and (when a
 * cross compiler and qemu are installed) for aarch64. Exit 0 = pass. */
#define _GNU_SOURCE
#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "../../src/stack_switch.h"

#define ROUNDS 100000
static void *main_sp, *fiber_sp;
static volatile long fiber_total;

static void
fiber_entry(void *arg)
{
    long step = (long)(intptr_t)arg;
    /* Keep several live values across switches so the compiler puts some in callee-saved
     * registers. */
    long a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    double x = 0.5;
    for (int i = 0; i < ROUNDS; i++) {
        a += step; b += a; c ^= b; d += c; e -= d; f += e;
        x = x * 1.0000001 + 0.25;
        loop_stack_switch(&fiber_sp, main_sp, (void *)(intptr_t)i);
    }
    fiber_total = a + b + c + d + e + f + (long)x;
    loop_stack_switch(&fiber_sp, main_sp, (void *)(intptr_t)-1);
    abort();   /* never resumed */
}

static long
expected_total(long step)
{
    long a = 1, b = 2, c = 3, d = 4, e = 5, f = 6;
    double x = 0.5;
    for (int i = 0; i < ROUNDS; i++) {
        a += step; b += a; c ^= b; d += c; e -= d; f += e;
        x = x * 1.0000001 + 0.25;
    }
    return a + b + c + d + e + f + (long)x;
}

int
main(void)
{
    size_t size = 256 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) return 2;
    fiber_sp = loop_stack_prepare(stack + size - 64, fiber_entry, (void *)(intptr_t)7);
    fesetround(FE_TOWARDZERO);   /* FP control state belongs to each side of the switch */
    long m1 = 11, m2 = 13, m3 = 17;
    long got = 0;
    for (;;) {
        long r = (long)(intptr_t)loop_stack_switch(&main_sp, fiber_sp, NULL);
        if (fegetround() != FE_TOWARDZERO) { fprintf(stderr, "rounding mode lost\n"); return 3; }
        if (r == -1) break;
        if (r != got) { fprintf(stderr, "transfer %ld != %ld\n", r, got); return 4; }
        got++;
        m1 = m1 * 3 + r; m2 ^= m1; m3 += m2;
    }
    long m_expect1 = 11, m_expect2 = 13, m_expect3 = 17;
    for (long r = 0; r < ROUNDS; r++) { m_expect1 = m_expect1 * 3 + r; m_expect2 ^= m_expect1; m_expect3 += m_expect2; }
    if (m1 != m_expect1 || m2 != m_expect2 || m3 != m_expect3) { fprintf(stderr, "main registers lost\n"); return 5; }
    if (fiber_total != expected_total(7)) { fprintf(stderr, "fiber registers lost\n"); return 6; }
    printf("ok %s %d switches\n", LOOP_STACK_SWITCH_ARCH, 2 * ROUNDS + 2);
    return 0;
}
