"""Runs one CPython test module under a monkey patch; one JSON line per finished test.

Invoked by run_stdlib.py as::

    python _child.py --impl loop|gevent|none --module test_socket --out results.jsonl
                     [--skip ids.txt] [--test-timeout 120]

The patch is applied first, before the test module (or ``test.support``) is imported, the way
an application would be run with ``python -m loop.monkey``.  Each outcome is appended and
flushed to ``--out`` as soon as the test finishes, so a hang or a crash loses nothing: the
parent restarts the module with the finished tests (and the one that hung) skipped.
"""
import argparse
import json
import os
import sys


#: Modules whose tests that require the "network" resource only talk to 127.0.0.1.
LOOPBACK_ONLY_NETWORK = {"test_socketserver": ["network"]}


def apply_patch(impl):
    # Imports here on purpose: only the implementation asked for is loaded, and it patches
    # before anything below imports the stdlib modules it replaces.
    if impl == "loop":
        import loop.monkey
        loop.monkey.patch_all(warn_stale=False)
    elif impl == "gevent":
        from gevent import monkey
        monkey.patch_all()
    elif impl != "none":
        raise SystemExit("unknown --impl %r" % impl)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--skip")
    parser.add_argument("--test-timeout", type=float, default=120.0)
    args = parser.parse_args()

    apply_patch(args.impl)

    # A watchdog in a real OS thread: a test that hangs (a green deadlock) is recorded and the
    # process exits so the parent can go on with the rest of the module.
    if args.impl == "loop":
        from loop.monkey import get_original
        start_thread = get_original("_thread", "start_new_thread")
        real_sleep = get_original("time", "sleep")
    elif args.impl == "gevent":
        from gevent.monkey import get_original
        start_thread = get_original("_thread", "start_new_thread")
        real_sleep = get_original("time", "sleep")
    else:
        import _thread
        import time
        start_thread, real_sleep = _thread.start_new_thread, time.sleep
    import time as _time
    monotonic = _time.monotonic

    out = open(args.out, "a", buffering=1)
    skip = set()
    if args.skip and os.path.exists(args.skip):
        with open(args.skip) as f:
            skip = {line.strip() for line in f if line.strip()}
    current = {"id": None, "since": None}

    def record(test_id, outcome, detail=""):
        out.write(json.dumps({"id": test_id, "outcome": outcome, "detail": detail[-2000:]})
                  + "\n")
        out.flush()

    def watchdog():
        while True:
            real_sleep(1.0)
            test_id, since = current["id"], current["since"]
            if test_id is not None and monotonic() - since > args.test_timeout:
                record(test_id, "hang", "no result after %.0f s" % args.test_timeout)
                os._exit(3)

    start_thread(watchdog, ())

    # Imported after the patch on purpose, as the test module itself is.
    import unittest
    from test import support
    # No cpu-hog tests, and no network: except for modules whose "network" tests only use
    # loopback (test_socketserver requires the resource for the whole module).
    support.use_resources = ["subprocess"] + LOOPBACK_ONLY_NETWORK.get(args.module, [])
    try:
        support.verbose = False
    except Exception:
        pass

    class Result(unittest.TextTestResult):
        def startTest(self, test):
            current["id"], current["since"] = test.id(), monotonic()
            super().startTest(test)

        def stopTest(self, test):
            super().stopTest(test)
            current["id"] = None

        def addSuccess(self, test):
            super().addSuccess(test)
            record(test.id(), "pass")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            record(test.id(), "fail", self._exc_info_to_string(err, test))

        def addError(self, test, err):
            super().addError(test, err)
            test_id = test.id() if hasattr(test, "id") else str(test)
            record(test_id, "error", self._exc_info_to_string(err, test))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            record(test.id(), "skip", reason)

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            record(test.id(), "pass", "expected failure")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            record(test.id(), "fail", "unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                kind = "fail" if issubclass(err[0], test.failureException) else "error"
                record(test.id(), kind, "subtest %s: %s"
                       % (subtest._subDescription(), self._exc_info_to_string(err, test)))

    loader = unittest.TestLoader()
    suite = loader.loadTestsFromName("test." + args.module)

    def filtered(suite):
        result = unittest.TestSuite()
        for item in suite:
            if isinstance(item, unittest.TestSuite):
                result.addTest(filtered(item))
            elif item.id() not in skip:
                result.addTest(item)
        return result

    suite = filtered(suite)
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=Result,
                                     verbosity=0)
    runner.run(suite)
    record("__module__", "done")
    out.close()
    os._exit(0)  # don't let leftover (green or real) threads hang the exit


if __name__ == "__main__":
    sys.exit(main())
