"""Tests of CPython's suite that fail under loop.monkey.patch_all(), each with the reason.

Keys are module names as given to run_stdlib.py; values map an fnmatch pattern of the test id
to the reason.  Keep reasons concrete: what differs and why it is accepted (or which issue will
fix it).
"""
import fnmatch

KNOWN_FAILURES = {
}


def match_known(module, test_id):
    for pattern, reason in KNOWN_FAILURES.get(module, {}).items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None
