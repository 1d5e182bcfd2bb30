#!/usr/bin/env python
"""Run gevent's own tests of its public API against loop (or against gevent, for the baseline).

Usage, from the repository root, in a venv where gevent and loop are installed::

    python tests/peers/run_gevent_suite.py                  # loop, the default files
    python tests/peers/run_gevent_suite.py --impl gevent    # the same files on real gevent
    python tests/peers/run_gevent_suite.py --files test__event test__queue -v

The test files are imported from the installed gevent wheel (``gevent/tests``); nothing of them is
copied here.  Under ``--impl loop`` the name ``gevent`` is an alias: ``gevent.X`` is ``loop.X``
for every public module loop has, ``gevent.testing`` and ``gevent.tests`` come from the wheel,
and the few gevent internals that ``gevent.testing`` imports are small adapters defined in this
file (see ``_ADAPTERS``).  A ``gevent.X`` that is neither fails to import, as it would in a port:
no file of real gevent is ever loaded in that mode.

Each file runs in its own child process with a time limit.  A child streams one JSON line per
test start and outcome, so a hang or a crash costs only the test that was running: the file is
restarted with the finished tests and the culprit skipped.  A file without unittest tests (a
script that asserts at import) counts as one test named after the file.  Many of gevent's tests
assert timings (a wait of 0.1 s must end within 0.12 s); on a busy machine some miss, so a test
that fails and is not a known failure runs once more on its own (``--retries``) before it
counts as failed.

Known failures (``gevent_known_failures.py``) are test ids with the reason they fail under loop.
The closing line is ``N passed, N failed, N skipped``; under ``--impl loop`` the exit status is
non-zero when a test that is not listed fails (or, with ``--strict-known``, when a listed test
passes).  ``--impl gevent`` only reports.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir, "src"))

DEFAULT_FILES = [
    "test__event", "test__queue", "test__pool", "test__timeout", "test__greenlet",
    "test__greenletset", "test__joinall", "test__iwait", "test__api_timeout", "test__semaphore",
    "test__lock", "test__local", "test__sleep0", "test__GreenletExit", "test__exc_info",
    "test__socket", "test__socket_timeout", "test__socketpair", "test__server", "test__pywsgi",
    "test__select", "test__signal", "test__subprocess", "test__threading_2", "test__thread",
    "test__monkey", "test__monkey_queue", "test__monkey_select", "test__monkey_selectors",
    "test__monkey_ssl_warning",
]

BAD = ("fail", "error", "hang", "crash")


# ---------------------------------------------------------------------------------------------
# Parent: run the files, compare with the known failures, print the summary

def run_file(python, impl, name, file_timeout, env, only=None):
    """Run one test file to completion, restarting after a hang or crash; {test id: outcome}
    and {test id: detail}.  ``only``: run just these test ids."""
    outcomes, details = {}, {}
    deadline = time.monotonic() + file_timeout
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "results.jsonl")
        skip_path = os.path.join(tmp, "skip.txt")
        while True:
            with open(skip_path, "w") as f:
                f.write("\n".join(outcomes))
            if os.path.exists(out_path):
                os.unlink(out_path)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcomes.setdefault(name, "hang")
                details.setdefault(name, "file time limit reached")
                break
            command = [python, os.path.abspath(__file__), "--child", name, "--impl", impl,
                       "--out", out_path, "--skip", skip_path]
            if only:
                only_path = os.path.join(tmp, "only.txt")
                with open(only_path, "w") as f:
                    f.write("\n".join(only))
                command += ["--only", only_path]
            try:
                proc = subprocess.run(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, timeout=remaining, env=env,
                                      cwd=tmp)
                stderr = proc.stderr.decode(errors="replace")
                returncode = proc.returncode
            except subprocess.TimeoutExpired as exc:
                stderr = (exc.stderr or b"").decode(errors="replace")
                returncode = None
            running, finished, tests_seen = None, False, False
            if os.path.exists(out_path):
                with open(out_path) as f:
                    for line in f:
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue  # a line cut short by a crash
                        kind = record["event"]
                        if kind == "start":
                            running = record["id"]
                            tests_seen = True
                        elif kind == "outcome":
                            outcomes[record["id"]] = record["outcome"]
                            if record.get("detail"):
                                details[record["id"]] = record["detail"]
                            running = None
                        elif kind == "done":
                            finished = True
                            tests_seen = tests_seen or record["tests"] > 0
            if finished and tests_seen:
                break
            if finished or (not tests_seen and running is None):
                # A script-style file (no unittest tests), or a file that failed before its
                # first test: the file itself is the test.
                if returncode == 0 and finished:
                    outcomes[name] = "pass"
                else:
                    outcomes[name] = "hang" if returncode is None else (
                        "crash" if returncode < 0 else "fail")
                    details[name] = _tail(stderr)
                break
            culprit = running or name
            outcomes[culprit] = "hang" if returncode is None else "crash"
            details[culprit] = _tail(stderr)
            if culprit == name:
                break
    return outcomes, details


def _tail(text, limit=1500):
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=("loop", "gevent"), default="loop")
    parser.add_argument("--files", nargs="+", default=DEFAULT_FILES)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--file-timeout", type=float, default=300.0)
    parser.add_argument("--src", default=SRC, help="the loop tree to test (default: this one)")
    parser.add_argument("--json", help="write {test id: outcome} here")
    parser.add_argument("--strict-known", action="store_true",
                        help="also fail when a known failure passes (to prune the list)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--skip", help=argparse.SUPPRESS)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--retries", type=int, default=1,
                        help="run an unexpected failure again this many times (many of gevent's "
                             "tests assert timings that a busy machine misses); default 1")
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child, args.impl, args.out, args.skip, args.only)

    sys.path.insert(0, HERE)
    from gevent_known_failures import KNOWN_FAILURES

    env = dict(os.environ)
    env["PYTHONPATH"] = args.src + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONHASHSEED", "0")
    env["GEVENTTEST_QUIET"] = "1"
    all_outcomes = {}
    all_details = {}
    started = time.monotonic()
    for name in args.files:
        t0 = time.monotonic()
        outcomes, details = run_file(args.python, args.impl, name, args.file_timeout, env)
        all_outcomes.update(outcomes)
        all_details.update(details)
        counts = _count(outcomes.values())
        print("%-28s %4d passed %4d failed %4d skipped  %5.1fs" % (
            name, counts["pass"], counts["bad"], counts["skip"], time.monotonic() - t0),
            flush=True)
    retried = []
    for _ in range(args.retries if args.impl == "loop" else 0):
        again = {}
        for test_id, outcome in all_outcomes.items():
            if outcome in BAD and test_id not in KNOWN_FAILURES and "." in test_id:
                again.setdefault(test_id.split(".", 1)[0], []).append(test_id)
        for name, ids in again.items():
            outcomes, details = run_file(args.python, args.impl, name, args.file_timeout, env,
                                         only=ids)
            for test_id in ids:
                if outcomes.get(test_id) == "pass":
                    all_outcomes[test_id] = "pass"
                    retried.append(test_id)
    elapsed = time.monotonic() - started
    if retried:
        print("\nFailed, then passed when run again (timing on a busy machine):")
        for test_id in retried:
            print("  " + test_id)

    unexpected, known_passing, known_failing = [], [], []
    for test_id, outcome in sorted(all_outcomes.items()):
        known = KNOWN_FAILURES.get(test_id) if args.impl == "loop" else None
        if outcome in BAD:
            (known_failing if known else unexpected).append(test_id)
        elif known and outcome == "pass":
            known_passing.append(test_id)
    if unexpected:
        print("\nFailures under gevent itself (the baseline):" if args.impl == "gevent"
              else "\nUnexpected failures:")
        for test_id in unexpected:
            print("  %s: %s" % (test_id, all_outcomes[test_id]))
            if args.verbose and test_id in all_details:
                print("    " + all_details[test_id].replace("\n", "\n    "))
    if known_passing:
        print("\nListed as known failures but passed (prune the list):")
        for test_id in known_passing:
            print("  " + test_id)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"outcomes": all_outcomes, "details": all_details}, f, indent=1,
                      sort_keys=True)
    counts = _count(all_outcomes.values())
    print("\n%s on Python %s, %.0f s; %d of the failures are known" % (
        args.impl, _python_version(args.python), elapsed, len(known_failing)))
    print("%d passed, %d failed, %d skipped" % (counts["pass"], counts["bad"], counts["skip"]))
    if args.impl == "gevent":
        return 0  # the baseline: the known-failures list is about loop
    if unexpected or (args.strict_known and known_passing):
        return 1
    return 0


def _count(outcomes):
    counts = {"pass": 0, "bad": 0, "skip": 0}
    for outcome in outcomes:
        counts["bad" if outcome in BAD else outcome] += 1
    return counts


def _python_version(python):
    if python == sys.executable:
        return "%d.%d" % sys.version_info[:2]
    return subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------------------------
# Child: alias gevent to loop, import one test file as __main__, report each test

def _child_main(name, impl, out_path, skip_path, only_path=None):
    import faulthandler
    import runpy
    import unittest

    faulthandler.enable()
    with open(skip_path) as f:
        skip = set(line for line in f.read().split("\n") if line)
    only = None
    if only_path:
        with open(only_path) as f:
            only = set(line for line in f.read().split("\n") if line)
    out = open(out_path, "a", buffering=1)

    def emit(**record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    def test_id(test):
        return name + "." + test.id().split(".", 1)[1] if test.id().startswith("__main__.") \
            else test.id()

    class Result(unittest.TextTestResult):
        def startTest(self, test):
            emit(event="start", id=test_id(test))
            super().startTest(test)

        def _outcome(self, test, outcome, detail=""):
            emit(event="outcome", id=test_id(test), outcome=outcome, detail=detail[-1500:])

        def addSuccess(self, test):
            super().addSuccess(test)
            self._outcome(test, "pass")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._outcome(test, "fail", self.failures[-1][1])

        def addError(self, test, err):
            super().addError(test, err)
            self._outcome(test, "error", self.errors[-1][1])

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._outcome(test, "skip", reason)

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._outcome(test, "skip", "expected failure")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._outcome(test, "fail", "unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                # a failing subtest fails its test; the test's own outcome follows
                self._outcome(test, "fail", self._exc_info_to_string(err, test))

    reported = {"tests": 0}

    def run_main(*args, **kwargs):
        module = sys.modules["__main__"]
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        kept = unittest.TestSuite()
        for test in _flatten(suite):
            if test_id(test) not in skip and (only is None or test_id(test) in only):
                kept.addTest(test)
        reported["tests"] = kept.countTestCases()
        runner = unittest.TextTestRunner(stream=sys.stderr, resultclass=Result, verbosity=2)
        runner.run(kept)
        emit(event="done", tests=reported["tests"])
        out.close()
        # Leave at once: gevent's tests leave green threads and servers behind on purpose.
        os._exit(0)

    unittest.main = run_main
    if impl == "loop":
        _install_gevent_alias()
    else:
        import gevent  # noqa: F401  (real gevent)
    sys.argv = [name]
    if impl == "loop":
        for hook in _HARNESS_HOOKS.get(name, ()):
            hook()
    runpy.run_module("gevent.tests." + name, run_name="__main__", alter_sys=True)
    emit(event="done", tests=reported["tests"])
    out.close()
    os._exit(0)


def _flatten(suite):
    for item in suite:
        if isinstance(item, __import__("unittest").TestSuite):
            yield from _flatten(item)
        else:
            yield item


# ---------------------------------------------------------------------------------------------
# The alias: gevent.X -> loop.X, gevent.testing / gevent.tests from the wheel, adapters for the
# internals gevent.testing needs.

def _real_gevent_dir():
    import importlib.util
    spec = importlib.util.find_spec("gevent")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gevent is not installed in this Python; its tests come from the wheel")
    return list(spec.submodule_search_locations)[0]


def _install_gevent_alias():
    import importlib
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types

    import loop

    gevent_dir = _real_gevent_dir()
    package = types.ModuleType("gevent", "loop, imported under the name gevent")
    package.__path__ = [gevent_dir]
    package.__package__ = "gevent"
    package.__dict__.update({k: getattr(loop, k) for k in dir(loop) if not k.startswith("__")})
    for attr in ("getswitchinterval", "setswitchinterval"):
        if hasattr(loop, attr):
            setattr(package, attr, getattr(loop, attr))
    package.__spec__ = importlib.machinery.ModuleSpec("gevent", None, is_package=True)
    package.__spec__.submodule_search_locations = [gevent_dir]
    sys.modules["gevent"] = package

    class AliasLoader(importlib.abc.Loader):
        def __init__(self, make):
            self.make = make

        def create_module(self, spec):
            return self.make()

        def exec_module(self, module):
            pass

    class AliasFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if not fullname.startswith("gevent."):
                return None
            rest = fullname[len("gevent."):]
            if rest.split(".")[0] in ("testing", "tests"):
                return None  # the wheel's files, found through gevent.__path__
            if rest in _ADAPTERS:
                make = _ADAPTERS[rest]
            else:
                target_name = "loop." + rest
                try:
                    found = importlib.util.find_spec(target_name)
                except ModuleNotFoundError:
                    found = None
                if found is None:
                    raise ModuleNotFoundError("loop has no module %r (imported as %r)"
                                              % (target_name, fullname), name=fullname)

                def make(target_name=target_name):
                    return importlib.import_module(target_name)
            return importlib.machinery.ModuleSpec(fullname, AliasLoader(make))

    sys.meta_path.insert(0, AliasFinder())


def _module(name, **attrs):
    import types
    module = types.ModuleType(name, "runner adapter for a gevent internal")
    module.__dict__.update(attrs)
    return module


def _adapter_compat():
    import time as _time
    import platform

    def reraise(t, value, tb=None):
        if value.__traceback__ is not tb and tb is not None:
            raise value.with_traceback(tb)
        raise value

    def get_this_psutil_process():
        try:
            import psutil
        except ImportError:
            return None
        return psutil.Process()

    return _module(
        "gevent._compat", PY3=True, PY2=False, PYPY=platform.python_implementation() == "PyPy",
        WIN=sys.platform.startswith("win"), LINUX=sys.platform.startswith("linux"),
        OSX=sys.platform == "darwin", perf_counter=_time.perf_counter,
        # As for the installed (compiled) gevent, so that both runs pick the same tests.
        PURE_PYTHON=False,
        get_clock_info=_time.get_clock_info, reraise=reraise,
        get_this_psutil_process=get_this_psutil_process, string_types=(str,),
        integer_types=(int,), text_type=str)


def _adapter_config():
    def validate_bool(value):
        if isinstance(value, str):
            value = value.lower().strip()
            if value in ("1", "yes", "on", "true"):
                return True
            if value in ("0", "no", "off", "false", ""):
                return False
            raise ValueError("Invalid boolean string: %r" % (value,))
        return bool(value)
    return _module("gevent._config", validate_bool=validate_bool)


def _adapter_util():
    class Lazy:
        """A descriptor computing its value once per instance."""

        def __init__(self, func):
            self.func = func
            self.__name__ = func.__name__

        def __get__(self, inst, owner):
            if inst is None:
                return self
            value = self.func(inst)
            inst.__dict__[self.__name__] = value
            return value

    class LazyOnClass:
        """A descriptor computing its value once per class (stored on the class)."""

        @classmethod
        def lazy(cls, cls_dict, func):
            cls_dict[func.__name__] = cls(func)

        def __init__(self, func, name=None):
            self.name = name or func.__name__
            self.func = func

        def __get__(self, inst, klass):
            if inst is None:
                return self
            value = self.func(inst)
            setattr(klass, self.name, value)
            return value

    return _module("gevent._util", Lazy=Lazy, LazyOnClass=LazyOnClass)


def _adapter_hub_local():
    import loop.hub as hub
    return _module("gevent._hub_local", get_hub_if_exists=hub.get_hub_if_exists,
                   get_hub_class=hub.get_hub_class, get_hub=hub.get_hub)


def _adapter_core():
    # gevent.core names the event loop implementation; gevent.testing reads which one
    # (libev or libuv) and the callback type, which loop has neither of.
    class callback:
        pass

    class loop_type:
        __module__ = "loop.hub"

    return _module("gevent.core", loop=loop_type, callback=callback)


def _pywsgi_print_hook():
    # test__pywsgi checks, at import, that gevent's handler has the private hook through which
    # gevent prints unexpected application errors, so that its bad-request tests can silence
    # it.  loop's handler reports them through its server's error log instead and never calls
    # this name; giving it the name lets the file import and changes nothing loop does.
    from loop import pywsgi
    if not hasattr(pywsgi.WSGIHandler, "_print_unexpected_exc"):
        pywsgi.WSGIHandler._print_unexpected_exc = lambda self: None


#: Per test file: gevent-private names the file's *harness* (not the behaviour under test)
#: touches, given to loop's objects before the file is imported.
_HARNESS_HOOKS = {
    "test__pywsgi": [_pywsgi_print_hook],
}


_ADAPTERS = {
    "_compat": _adapter_compat,
    "_config": _adapter_config,
    "_util": _adapter_util,
    "_hub_local": _adapter_hub_local,
    "core": _adapter_core,
}


if __name__ == "__main__":
    sys.exit(main())
