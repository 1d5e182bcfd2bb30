"""What greenlet's own suite may not pass against loop.compat.greenlet, and why.

EXCLUDED: tests that are not run at all against the facade (reported as skipped), because they
need greenlet's compiled test extensions (``greenlet/tests/_test_extension*.so``, which are
built against greenlet's C API) or greenlet-private hooks of its C implementation.

KNOWN_FAILURES: tests that run and fail, each with the difference behind it.

Keys are test ids relative to ``greenlet.tests`` (``module.Class.test``).
"""

C_EXTENSION = ("needs greenlet's compiled test extension (built against greenlet's C API, "
               "which loop does not provide)")

EXCLUDED = {
    # Whole modules (their tests are read from the source and reported as skipped).
    "test_cpp": C_EXTENSION + ": _test_extension_cpp",
    "test_extension_interface": C_EXTENSION + ": _test_extension",
}

KNOWN_FAILURES = {
}
