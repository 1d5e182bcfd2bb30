#!/usr/bin/env python
"""Run greenlet's own test suite, from the installed greenlet wheel, against loop's facade.

Usage (in a venv where greenlet and loop are installed)::

    python tests/peers/run_greenlet_suite.py            # greenlet aliased to loop.compat.greenlet
    python tests/peers/run_greenlet_suite.py --real     # the real greenlet, for the baseline
    python tests/peers/run_greenlet_suite.py -v -k test_throw

The tests are loaded from the wheel's ``greenlet/tests`` directory; nothing of them lives in
this repository. In facade mode ``import greenlet`` yields ``loop.compat.greenlet`` itself, and
the package path of that alias points at the wheel so that ``greenlet.tests`` and its modules
load from there. The suite also imports ``greenlet._greenlet`` for a few bookkeeping hooks of
greenlet's C implementation; a small adapter module stands in for it (built here, not in loop,
because those hooks have no meaning outside greenlet). Scripts the tests start with
``sys.executable`` get the same alias through a ``sitecustomize`` on their ``PYTHONPATH``.

Each test module runs in its own child process, so a crash or a hang costs the test that
caused it (the module is restarted past it), not the run. The last line printed is
``N passed, N failed, N skipped``; the exit status is non-zero when a test fails that is not
listed in ``greenlet_known_failures.py`` (or a listed one passes, so the list stays honest).
Tests that need greenlet's compiled test extensions or private hooks are skipped there, each
with its reason.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir, "src"))


def wheel_greenlet_dir():
    """The installed greenlet package directory, found without importing it."""
    if "greenlet" in sys.modules and hasattr(sys.modules["greenlet"], "__path__"):
        return list(sys.modules["greenlet"].__path__)[0]
    spec = importlib.util.find_spec("greenlet")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("greenlet is not installed in this environment")
    return list(spec.submodule_search_locations)[0]


# --------------------------------------------------------------------------------------------
# The alias (used in the child process and, through sitecustomize, in scripts it starts)


def _private_hooks_module(facade):
    """Stand-in for ``greenlet._greenlet``: the facade's names plus greenlet's bookkeeping hooks.

    Only what the suite's shared base class calls in every test is given a meaning:
    ``get_pending_cleanup_count`` (greenlet queues the destruction of greenlets of threads that
    ended; loop retires a thread's fibers synchronously when its thread state goes, so nothing
    is ever pending) and ``get_total_main_greenlets`` (used only to wait for that queue; with
    nothing pending there is nothing to wait for). The other private hooks are absent on
    purpose: tests that use them are skipped with that reason."""
    mod = types.ModuleType("greenlet._greenlet")
    for name in ("greenlet", "getcurrent", "GreenletExit", "error", "settrace", "gettrace",
                 "GREENLET_USE_GC", "GREENLET_USE_CONTEXT_VARS", "GREENLET_USE_TRACING"):
        setattr(mod, name, getattr(facade, name))
    mod.get_pending_cleanup_count = lambda: 0
    mod.get_total_main_greenlets = lambda: 0

    # greenlet can spend time in its GC hooks on "optional cleanup" of greenlets of dead threads
    # and reports the clock ticks it used (None when switched off). loop has no such optional
    # work (a thread's fibers are dealt with when the thread ends), so it uses none.
    optional_cleanup = {"enabled": True}

    def enable_optional_cleanup(flag):
        optional_cleanup["enabled"] = bool(flag)

    mod.enable_optional_cleanup = enable_optional_cleanup
    mod.get_clocks_used_doing_optional_cleanup = (
        lambda: 0 if optional_cleanup["enabled"] else None)
    mod.CLOCKS_PER_SEC = 1000000   # POSIX's value of the C constant

    def set_thread_local(key, value):
        # greenlet's hook stores into CPython's per-thread-state dict, which dies with the thread.
        import ctypes

        api = ctypes.pythonapi
        api.PyThreadState_GetDict.restype = ctypes.py_object
        tsdict = api.PyThreadState_GetDict()
        # ctypes takes a py_object result for a new reference; this one is borrowed.
        api.Py_IncRef(ctypes.py_object(tsdict))
        tsdict[key] = value

    mod.set_thread_local = set_thread_local

    # CPython's trashcan nesting counter of this thread (3.11/3.12; gone in 3.13, where the
    # suite does without the hook), which loop's core saves per fiber too.
    from loop import _switch

    if _switch._trash_delete_nesting() is not None:
        mod.get_tstate_trash_delete_nesting = _switch._trash_delete_nesting
    return mod


def install_alias(greenlet_dir):
    import loop.compat.greenlet as facade

    sys.modules["greenlet"] = facade
    # Submodules (greenlet.tests.*) are found on the alias's package path, i.e. in the wheel.
    facade.__path__ = [greenlet_dir]
    hooks = _private_hooks_module(facade)
    sys.modules["greenlet._greenlet"] = hooks
    facade._greenlet = hooks


SITECUSTOMIZE = """\
import sys
sys.path.insert(0, {src!r})
import importlib.util
_spec = importlib.util.spec_from_file_location("_greenlet_suite_runner", {runner!r})
_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runner)
_runner.install_alias({greenlet_dir!r})
del _spec, _runner
"""


# --------------------------------------------------------------------------------------------
# Child: run one test module, one JSON line per event


def child_main(module, out_path, skip_ids, real, known):
    import unittest

    # In facade mode the sitecustomize on PYTHONPATH has installed the alias already.
    out = open(out_path, "a", buffering=1)

    def emit(**event):
        out.write(json.dumps(event) + "\n")

    if not real and module in known.EXCLUDED:
        # Not even imported (it would load a greenlet C extension): its tests, read from the
        # source, are reported as skipped.
        emit(kind="list", ids=static_test_ids(module))
        for tid in static_test_ids(module):
            emit(kind="result", id=tid, outcome="skip", detail=known.EXCLUDED[module])
        return
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName("greenlet.tests." + module)
    except Exception as exc:  # the module does not even import
        emit(kind="import_error", id=module, detail="%s: %s" % (type(exc).__name__, exc))
        return

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                yield from flatten(t)
            else:
                yield t

    tests = list(flatten(suite))
    broken = [t for t in tests if type(t).__name__ == "_FailedTest"]
    if broken:  # the loader turns an import error into a pseudo-test
        emit(kind="import_error", id=module, detail=str(broken[0]._exception).strip()[-2000:])
        return
    emit(kind="list", ids=[short_id(t.id()) for t in tests])

    class Result(unittest.TestResult):
        def __init__(self):
            super().__init__()
            self.outcome = None

        def addSuccess(self, test):
            self.outcome = ("pass", "")

        def addFailure(self, test, err):
            if type(err[1]).__name__ == "LeakCheckError" and "to leak but it did not" in str(
                    err[1]):
                # greenlet marks some tests as leaking in greenlet (fails_leakcheck) and then
                # fails them when nothing leaks: the test's own checks all passed.
                self.outcome = ("pass", "passes, and does not leak where greenlet does")
                return
            self.outcome = ("fail", self._exc_info_to_string(err, test))

        def addError(self, test, err):
            # setUpClass errors arrive once for the class; they fail the test being run.
            self.outcome = ("fail", self._exc_info_to_string(err, test))

        def addSkip(self, test, reason):
            self.outcome = ("skip", reason)

        def addExpectedFailure(self, test, err):
            self.outcome = ("pass", "expected failure")

        def addUnexpectedSuccess(self, test):
            self.outcome = ("fail", "unexpected success")

    for test in tests:
        tid = short_id(test.id())
        if tid in skip_ids:
            continue
        if not real and tid in known.EXCLUDED:
            emit(kind="result", id=tid, outcome="skip", detail=known.EXCLUDED[tid])
            continue
        if not real and tid in known.NOT_RUN:
            # A known failure too costly to run (it is counted as failed).
            emit(kind="result", id=tid, outcome="fail", detail="not run: " + known.NOT_RUN[tid])
            continue
        emit(kind="start", id=tid)
        result = Result()
        # Run the test through a one-test suite so class fixtures are set up and torn down.
        unittest.TestSuite([test])(result)
        outcome, detail = result.outcome or ("fail", "".join(
            text for _t, text in result.errors + result.failures) or "no outcome")
        emit(kind="result", id=tid, outcome=outcome, detail=detail[-2000:])


def static_test_ids(module):
    """Test ids of a module, read from its source without importing it."""
    import ast

    path = os.path.join(wheel_greenlet_dir(), "tests", module + ".py")
    with open(path) as f:
        tree = ast.parse(f.read())
    ids = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    ids.append("%s.%s.%s" % (module, node.name, item.name))
    return ids


def short_id(test_id):
    prefix = "greenlet.tests."
    return test_id[len(prefix):] if test_id.startswith(prefix) else test_id


# --------------------------------------------------------------------------------------------
# Parent: one child per module, restarted past a crash or a hang


def run_module(module, real, tmp, env, test_timeout, verbose):
    out_path = os.path.join(tmp, module + ".jsonl")
    outcomes, details, listed = {}, {}, None
    while True:
        if os.path.exists(out_path):
            os.unlink(out_path)
        skip_path = os.path.join(tmp, module + ".skip")
        with open(skip_path, "w") as f:
            json.dump(sorted(outcomes), f)
        command = [sys.executable, os.path.abspath(__file__), "--child", module, "--out", out_path,
                   "--skip", skip_path] + (["--real"] if real else [])
        proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        # A test may not take longer than test_timeout; the whole module gets that per test.
        started_at, current, stderr = time.monotonic(), None, b""
        while True:
            try:
                stderr += proc.communicate(timeout=0.2)[0] or b""
                break
            except subprocess.TimeoutExpired:
                pass
            events = read_events(out_path)
            last_start = [e for e in events if e["kind"] == "start"]
            if last_start and last_start[-1]["id"] != current:
                current, started_at = last_start[-1]["id"], time.monotonic()
            if time.monotonic() - started_at > test_timeout:
                proc.kill()
                stderr += proc.communicate()[0] or b""
                break
        events = read_events(out_path)
        running = None
        for e in events:
            if e["kind"] == "import_error":
                outcomes[e["id"]] = "fail"
                details[e["id"]] = "import error: " + e["detail"]
                return outcomes, details
            if e["kind"] == "list":
                listed = e["ids"]
            elif e["kind"] == "start":
                running = e["id"]
            elif e["kind"] == "result":
                outcomes[e["id"]] = e["outcome"]
                details[e["id"]] = e["detail"]
                running = None
        tail = stderr.decode(errors="replace")[-1500:]
        if running is not None:
            outcomes[running] = "fail"
            how = "hang (killed after %ss)" % test_timeout if proc.returncode == -9 else \
                "crash (exit status %s)" % proc.returncode
            details[running] = how + "\n" + tail
            continue
        if listed is None:
            outcomes[module] = "fail"
            details[module] = "child failed before listing tests (exit %s)\n%s" % (
                proc.returncode, tail)
            return outcomes, details
        missing = [t for t in listed if t not in outcomes]
        if not missing:
            return outcomes, details
        if proc.returncode == 0:
            for t in missing:
                outcomes[t], details[t] = "fail", "never ran\n" + tail
            return outcomes, details
        # Died between tests (e.g. at interpreter exit after the last one): blame nothing twice.
        for t in missing[:1]:
            outcomes[t], details[t] = "fail", "child died (exit %s)\n%s" % (proc.returncode, tail)


def read_events(path):
    if not os.path.exists(path):
        return []
    events = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                events.append(json.loads(line))
    return events


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true", help="run the real greenlet (baseline)")
    parser.add_argument("-k", dest="pattern", help="only test ids containing this substring")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every failure")
    parser.add_argument("--test-timeout", type=float, default=60.0)
    parser.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="test modules run at once (default: 2, or 1 on one CPU)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--skip", help=argparse.SUPPRESS)
    args = parser.parse_args()

    sys.path.insert(0, HERE)
    import greenlet_known_failures as known

    if args.child:
        with open(args.skip) as f:
            skip = set(json.load(f))
        child_main(args.child, args.out, skip, args.real, known)
        return 0

    greenlet_dir = wheel_greenlet_dir()
    tests_dir = os.path.join(greenlet_dir, "tests")
    modules = sorted(name[:-3] for name in os.listdir(tests_dir)
                     if name.startswith("test_") and name.endswith(".py"))
    if args.pattern:
        modules = [m for m in modules if args.pattern in m] or modules
    env = dict(os.environ)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.real:
            site_dir = os.path.join(tmp, "site")
            os.mkdir(site_dir)
            with open(os.path.join(site_dir, "sitecustomize.py"), "w") as f:
                f.write(SITECUSTOMIZE.format(src=SRC, runner=os.path.abspath(__file__),
                                             greenlet_dir=greenlet_dir))
            env["PYTHONPATH"] = os.pathsep.join(
                [site_dir, SRC] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        outcomes, details = {}, {}
        # The slowest modules first, so that two workers finish together.
        modules.sort(key=lambda m: m not in ("test_greenlet", "test_interpreter_shutdown"))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for o, d in pool.map(lambda m: run_module(m, args.real, tmp, env, args.test_timeout,
                                                      args.verbose), modules):
                outcomes.update(o)
                details.update(d)
    if args.pattern:
        outcomes = {t: o for t, o in outcomes.items() if args.pattern in t}

    unexpected, fixed = [], []
    for tid, outcome in sorted(outcomes.items()):
        expected = None if args.real else known.KNOWN_FAILURES.get(tid)
        if outcome == "fail" and expected is None:
            unexpected.append(tid)
        elif outcome == "pass" and expected is not None:
            fixed.append(tid)
        if args.verbose and outcome != "pass":
            reason = expected or (details.get(tid, "") if outcome == "fail" else details.get(tid))
            print("%s %s: %s" % (outcome.upper(), tid, (reason or "").strip()))
            print()
    for tid in unexpected:
        print("UNEXPECTED FAILURE %s\n    %s" % (
            tid, details.get(tid, "").strip().replace("\n", "\n    ")[-1500:]))
    for tid in fixed:
        print("PASSES BUT IS LISTED AS A KNOWN FAILURE: %s" % tid)
    counts = {k: sum(1 for o in outcomes.values() if o == k) for k in ("pass", "fail", "skip")}
    print("greenlet suite against %s on Python %s (%.0f s)" % (
        "the real greenlet" if args.real else "loop.compat.greenlet",
        sys.version.split()[0], time.monotonic() - start))
    print("%d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"]))
    return 1 if unexpected or fixed else 0


if __name__ == "__main__":
    sys.exit(main())
