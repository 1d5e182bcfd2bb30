/*
 * stack_switch.h -- the only machine code in loop: switching the CPU from one C stack to another.
 *
 * Why hand-written assembly and not inline asm in a C function: the switch must save exactly the
 * registers the platform ABI calls callee-saved, and nothing the compiler decides to keep in a
 * register or a stack slot may survive it by accident (greenlet trap T12: a compiler caching a
 * thread-local address, or "restoring" a register from a stale slot). A file-scope asm function
 * with a fixed calling convention has no such hidden state: everything it needs is in its
 * arguments, and everything it preserves is listed below.
 *
 * ABI (identical on every architecture):
 *
 *     void *loop_stack_switch(void **save_sp, void *load_sp, void *transfer);
 *
 *   1. pushes the callee-saved registers and the floating-point control state onto the current
 *      stack, and stores the resulting stack pointer in *save_sp;
 *   2. loads load_sp, a value an earlier call stored through save_sp (or one made by
 *      loop_stack_prepare), pops the registers saved there and returns into that stack;
 *   3. the call being resumed returns `transfer`.
 *
 *     void *loop_stack_prepare(void *stack_top, void (*entry)(void *), void *arg);
 *
 *   lays out a register frame at the top of a fresh stack and returns the load_sp for it. The first
 *   switch into it "returns" into loop_fiber_trampoline, which calls entry(arg) on the new stack.
 *   entry must never return (the fiber's last act is a switch away). The trampoline marks the
 *   return address as undefined in its unwind info, so debuggers, profilers and glibc's forced
 *   unwinding stop cleanly at the bottom of a fiber.
 *
 * Saved state per architecture:
 *   x86-64 SysV: rbx, rbp, r12-r15, MXCSR, x87 control word (56 bytes + return address).
 *   aarch64 AAPCS64: x19-x28, x29 (fp), x30 (lr), d8-d15, FPCR (176 bytes).
 */
#ifndef LOOP_STACK_SWITCH_H
#define LOOP_STACK_SWITCH_H

#include <stdint.h>
#include <string.h>

void *loop_stack_switch(void **save_sp, void *load_sp, void *transfer);

#if defined(__x86_64__) && !defined(_WIN32)
#define LOOP_STACK_SWITCH_ARCH "x86_64-sysv"

__asm__(
    ".text\n"
    ".globl loop_stack_switch\n"
    ".hidden loop_stack_switch\n"
    ".type loop_stack_switch,@function\n"
    ".p2align 4\n"
    "loop_stack_switch:\n"
    "    .cfi_startproc\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    movq %rdx, %rax\n"
    "    ret\n"
    "    .cfi_endproc\n"
    ".size loop_stack_switch, .-loop_stack_switch\n"
    "\n"
    ".globl loop_fiber_trampoline\n"
    ".hidden loop_fiber_trampoline\n"
    ".type loop_fiber_trampoline,@function\n"
    ".p2align 4\n"
    "loop_fiber_trampoline:\n"
    "    .cfi_startproc\n"
    "    .cfi_undefined rip\n"
    "    xorl %ebp, %ebp\n"
    "    movq %r12, %rdi\n"
    "    call *%rbx\n"
    "    ud2\n"
    "    .cfi_endproc\n"
    ".size loop_fiber_trampoline, .-loop_fiber_trampoline\n"
);

void loop_fiber_trampoline(void);

static inline void *
loop_stack_prepare(void *stack_top, void (*entry)(void *), void *arg)
{
    /* After `ret` pops the trampoline address, rsp must be 16-byte aligned so that the
     * trampoline's `call` enters `entry` with the usual rsp % 16 == 8. */
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 24 - 7 * 8);
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    memset(frame, 0, 8 * 8);
    memcpy((char *)frame, &mxcsr, 4);
    memcpy((char *)frame + 4, &fpucw, 2);
    frame[4] = (uint64_t)(uintptr_t)arg;             /* r12 */
    frame[5] = (uint64_t)(uintptr_t)entry;           /* rbx */
    frame[6] = 0;                                    /* rbp: end of the frame-pointer chain */
    frame[7] = (uint64_t)(uintptr_t)&loop_fiber_trampoline;
    return frame;
}

#elif defined(__aarch64__) && !defined(_WIN32) && !defined(__APPLE__)
#define LOOP_STACK_SWITCH_ARCH "aarch64-aapcs64"

__asm__(
    ".text\n"
    ".globl loop_stack_switch\n"
    ".hidden loop_stack_switch\n"
    ".type loop_stack_switch,%function\n"
    ".p2align 4\n"
    "loop_stack_switch:\n"
    "    .cfi_startproc\n"
    "    sub sp, sp, #176\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mrs x9, fpcr\n"
    "    str x9, [sp, #160]\n"
    "    mov x9, sp\n"
    "    str x9, [x0]\n"
    "    mov sp, x1\n"
    "    ldr x9, [sp, #160]\n"
    "    msr fpcr, x9\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #176\n"
    "    mov x0, x2\n"
    "    ret\n"
    "    .cfi_endproc\n"
    ".size loop_stack_switch, .-loop_stack_switch\n"
    "\n"
    ".globl loop_fiber_trampoline\n"
    ".hidden loop_fiber_trampoline\n"
    ".type loop_fiber_trampoline,%function\n"
    ".p2align 4\n"
    "loop_fiber_trampoline:\n"
    "    .cfi_startproc\n"
    "    .cfi_undefined x30\n"
    "    mov x29, #0\n"
    "    mov x0, x20\n"
    "    blr x19\n"
    "    brk #0\n"
    "    .cfi_endproc\n"
    ".size loop_fiber_trampoline, .-loop_fiber_trampoline\n"
);

void loop_fiber_trampoline(void);

static inline void *
loop_stack_prepare(void *stack_top, void (*entry)(void *), void *arg)
{
    uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 176);
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    memset(frame, 0, 176);
    frame[0] = (uint64_t)(uintptr_t)entry;           /* x19 */
    frame[1] = (uint64_t)(uintptr_t)arg;             /* x20 */
    frame[10] = 0;                                   /* x29: end of the frame-pointer chain */
    frame[11] = (uint64_t)(uintptr_t)&loop_fiber_trampoline;   /* x30 */
    frame[20] = fpcr;
    return frame;
}

#else
#define LOOP_STACK_SWITCH_UNSUPPORTED \
    "loop._switch has no stack switch for this CPU/OS (supported: x86-64 and aarch64 Linux)"
#endif

#endif
