/*
 * stack_switch.h -- the only machine code in loop: switching the CPU from one C stack to another.
 *
 * Why hand-written assembly and not inline asm in a C function: the switch must save exactly the
 * registers the platform ABI calls callee-saved, and nothing the compiler decides to keep in a
 * register or a stack slot may survive it by accident. Inline asm inside a C function leaves the
 * compiler free to keep values (a thread-local's address, a spilled register) across the asm
 * statement in places the asm does not know about, and a switch that changes the stack pointer
 * under it breaks them. A file-scope asm function with a fixed calling convention has no such
 * hidden state: to the C caller it is an ordinary call of an external function, so the compiler
 * keeps live values only in callee-saved registers (which the switch saves) or in the caller's
 * own frame (which stays on the suspended stack, untouched), and it assumes the call may have
 * changed any memory whose address escaped.
 *
 * This header is included by _switch.c only: it defines the two global (hidden) assembly
 * symbols, which a second translation unit would define again.
 *
 * ---------------------------------------------------------------------------------------------
 * The calling contract (both architectures)
 *
 *     void *loop_stack_switch(void **save_sp, void *load_sp, void *transfer);
 *
 *   Called like any C function, with the platform's C calling convention. It
 *   1. saves the callee-saved registers and the floating-point control state (listed per
 *      architecture below) in a frame on the current stack, and stores the address of that
 *      frame (the stack pointer after saving) in *save_sp;
 *   2. sets the stack pointer to load_sp, which must be a value an earlier call stored through
 *      save_sp and that has not been resumed since, or one made by loop_stack_prepare; restores
 *      the registers saved in that frame and returns on that stack;
 *   3. so the call being resumed returns `transfer` (a fresh stack ignores it).
 *   Registers the ABI calls caller-saved (scratch) are not preserved, as with any call. Memory
 *   outside the two frames and *save_sp is not touched. save_sp may point to memory on either
 *   stack. The frame stays above the stack pointer at every instruction, so a signal handler
 *   that runs in the middle of a switch cannot overwrite it.
 *
 *     void *loop_stack_prepare(void *stack_top, void (*entry)(void *), void *arg);
 *
 *   Lays out a register frame just below stack_top (any address; it is rounded down to 16
 *   bytes) and returns the load_sp for it. The first switch into it "returns" into
 *   loop_fiber_trampoline, which calls entry(arg) on the new stack with the stack aligned as the
 *   C ABI requires at a call. entry must never return (the fiber's last act is a switch away;
 *   the trampoline traps if it does). The floating-point control state of the fresh stack is
 *   that of the thread calling loop_stack_prepare. The trampoline marks the return address as
 *   undefined in its unwind info and ends the frame-pointer chain with 0, so debuggers,
 *   profilers and glibc's forced unwinding stop cleanly at the bottom of a fiber.
 *
 *   loop_stack_switch's own unwind info describes only its entry: a debugger stopped on one of
 *   its instructions may show a wrong backtrace; nothing else ever unwinds from inside it.
 *
 * ---------------------------------------------------------------------------------------------
 * x86-64, System V ABI (Linux)
 *
 *   Saved: rbx, rbp, r12, r13, r14, r15 (the callee-saved general registers), MXCSR (all of it;
 *   the ABI asks only for its control bits) and the x87 control word (the x87 status word is
 *   not preserved, as the ABI allows). All xmm registers are caller-saved, so none is saved.
 *   Frame at *save_sp, 56 bytes, lowest address first, with the return address above it:
 *       +0 MXCSR (4), +4 x87 control word (2), +6 padding (2),
 *       +8 r15, +16 r14, +24 r13, +32 r12, +40 rbx, +48 rbp, +56 return address.
 *   Alignment: a call leaves rsp = 8 (mod 16) at entry; six pushes and 8 bytes more make the
 *   saved stack pointer 16-byte aligned. loop_stack_prepare places the frame so that after the
 *   `ret` into the trampoline rsp is 16-byte aligned, and the trampoline's `call` then enters
 *   entry with rsp = 8 (mod 16), as after any call. The red zone below rsp is not used: the
 *   caller is not a leaf function. The direction flag is clear on entry and on return, as the
 *   ABI requires; the switch does not touch it.
 *   Registers: save_sp in rdi, load_sp in rsi, transfer in rdx, result in rax. The trampoline
 *   finds entry in rbx and arg in r12 (restored from the prepared frame).
 *
 * aarch64, AAPCS64 (Linux)
 *
 *   Saved: x19-x28 (callee-saved), x29 (frame pointer), x30 (link register: where the switch
 *   returns), the low 64 bits of v8-v15 (d8-d15, the only callee-saved part of the vector
 *   registers) and FPCR (rounding mode and trap enables; FPSR holds only status flags and is
 *   not preserved).
 *   Frame at *save_sp, 176 bytes (a multiple of 16): +0 x19 ... +72 x28, +80 x29, +88 x30,
 *   +96 d8 ... +152 d15, +160 FPCR, +168 padding.
 *   Alignment: sp is 16-byte aligned at every instruction, as AAPCS64 requires whenever sp is
 *   used to access memory; the frame size keeps it so. loop_stack_prepare leaves sp 16-byte
 *   aligned for the trampoline.
 *   Registers: save_sp in x0, load_sp in x1, transfer in x2, result in x0. The trampoline finds
 *   entry in x19 and arg in x20 (restored from the prepared frame).
 * ---------------------------------------------------------------------------------------------
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
