"""What greenlet's own suite may not pass against loop.compat.greenlet, and why.

EXCLUDED: tests that are not run against the facade (reported as skipped), because they need
greenlet's compiled test extensions (``greenlet/tests/_test_extension*.so``, built against
greenlet's C API, which loop does not provide) or greenlet-private hooks of its C
implementation (``greenlet._greenlet.*`` functions that inspect or steer its internals).

KNOWN_FAILURES: tests that fail against the facade, each with the difference behind it.
NOT_RUN: known failures that are not even run because running them would cost the machine too
much (they are counted as failed).

Keys are test ids relative to ``greenlet.tests`` (``module.Class.test``), or a module name for
a module that cannot be imported at all.
"""

C_EXTENSION = ("needs greenlet's compiled test extension (built against greenlet's C API, "
               "which loop does not provide)")


def _private(hook):
    return "needs the greenlet-private hook greenlet._greenlet.%s" % hook


EXCLUDED = {
    "test_cpp": C_EXTENSION + ": _test_extension_cpp",
    "test_extension_interface": C_EXTENSION + ": _test_extension",
    "test_greenlet.TestGreenlet.test_get_stack_with_nested_c_calls":
        C_EXTENSION + ": _test_extension_cpp",
    "test_interpreter_shutdown.TestInterpreterShutdown"
    ".test_api_getcurrent_no_system_error_at_module_gc_time": C_EXTENSION + ": _test_extension",
    "test_interpreter_shutdown.TestInterpreterShutdown.test_switch_no_error_at_module_gc_time":
        C_EXTENSION + ": _test_extension",
    "test_greenlet.TestBrokenGreenlets.test_failed_to_initialstub":
        _private("UnswitchableGreenlet") + " (a greenlet whose stack switch can be made to fail)",
    "test_greenlet.TestBrokenGreenlets.test_failed_to_switch_into_running":
        _private("UnswitchableGreenlet") + " (a greenlet whose stack switch can be made to fail)",
    "test_greenlet.TestBrokenGreenlets.test_failed_to_slp_switch_into_running":
        _private("UnswitchableGreenlet") + " (via fail_slp_switch.py)",
}

KNOWN_FAILURES = {
}

NOT_RUN = {
    "test_leaks.TestLeaks.test_untracked_memory_doesnt_increase_unfinished_thread_dealloc_in_main":
        "green threads left suspended by an OS thread that exited are abandoned without "
        "running code, and loop keeps their stacks mapped for good (frame objects may still "
        "point into them); greenlet frees its heap copies. The test makes 20,000 such green "
        "threads per round for up to 100 rounds (about 170 MB resident per round with loop)",
}
KNOWN_FAILURES.update(NOT_RUN)
