/*
 * memory_checkers.h -- what valgrind and AddressSanitizer must be told about fiber stacks.
 *
 * Both checkers track stacks: valgrind marks what lies below the stack pointer as inaccessible
 * when a stack shrinks, AddressSanitizer poisons the redzones of the frames on it. A pooled fiber
 * stack keeps those marks from its last fiber (whose bottom frames never return), so reusing it,
 * and reading its tripwires, must first clear them (fiber_stack.c); and ASan must be told about
 * every switch between stacks (_switch.c, switch_to). .ci/memcheck builds the extension with
 * each checker. None of this is compiled into normal builds: LOOP_HAVE_VALGRIND needs valgrind's
 * headers at build time, LOOP_HAVE_ASAN needs -fsanitize=address.
 */
#ifndef LOOP_MEMORY_CHECKERS_H
#define LOOP_MEMORY_CHECKERS_H

#if defined(__has_include)
#  if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#    include <valgrind/valgrind.h>
#    include <valgrind/memcheck.h>
#    define LOOP_HAVE_VALGRIND 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define LOOP_HAVE_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define LOOP_HAVE_ASAN 1
#  endif
#endif
#ifdef LOOP_HAVE_ASAN
#  include <sanitizer/asan_interface.h>
#  include <sanitizer/common_interface_defs.h>
#endif

#endif
