#!/usr/bin/env python
"""Run CPython's own test modules under ``loop.monkey.patch_all()`` (and gevent's, to compare).

Usage (from the repository root, in a venv where loop is installed, gevent too for --impl
gevent)::

    python tests/stdlib/run_stdlib.py                       # loop, the default module list
    python tests/stdlib/run_stdlib.py --impl loop gevent --json out.json
    python tests/stdlib/run_stdlib.py --modules test_select test_timeout

Each module runs in its own child process (``_child.py``) with the patch applied before the
test module is imported.  A test that hangs longer than ``--test-timeout`` or a crash ends the
child; the module is then restarted with every finished test and the culprit skipped, so one
bad test costs one test, not the module.  Outcomes per test: pass, fail, error, skip, hang,
crash.

Known failures (``known_failures.py``) list tests that fail under loop for a documented reason;
they are counted separately, and ``--strict`` makes any *other* failure the exit status.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from known_failures import KNOWN_FAILURES, match_known  # noqa: E402

DEFAULT_MODULES = [
    "test_socket", "test_select", "test_selectors", "test_time", "test_thread",
    "test_threading", "test_threading_local", "test_queue", "test_subprocess", "test_signal",
    "test_socketserver", "test_httplib", "test_urllib2_localnet", "test_wsgiref", "test_ssl",
    "test_timeout",
    # a subset of test_asyncio that exercises what patching touches (threads, sockets,
    # selectors, subprocesses) without the slow or platform-specific parts
    "test_asyncio.test_locks", "test_asyncio.test_queues", "test_asyncio.test_futures",
    "test_asyncio.test_tasks", "test_asyncio.test_streams", "test_asyncio.test_sock_lowlevel",
    "test_asyncio.test_subprocess", "test_asyncio.test_threads",
]

BAD = ("fail", "error", "hang", "crash")
_RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3, "hang": 4, "crash": 5}


def run_module(python, impl, module, module_timeout, test_timeout, env):
    """Run one module to completion (restarting after hangs/crashes); {test id: outcome}."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "results.jsonl")
        skip_path = os.path.join(tmp, "skip.txt")
        outcomes = {}
        details = {}
        deadline = time.monotonic() + module_timeout
        restarts = 0
        while True:
            with open(skip_path, "w") as f:
                f.write("\n".join(outcomes))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcomes.setdefault("__module__", "hang")
                break
            before = len(outcomes)
            command = [python, os.path.join(HERE, "_child.py"), "--impl", impl, "--module",
                       module, "--out", out_path, "--skip", skip_path,
                       "--test-timeout", str(test_timeout)]
            try:
                proc = subprocess.run(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, timeout=remaining, env=env,
                                      cwd=tmp)
                stderr = proc.stderr.decode(errors="replace")[-3000:]
                returncode = proc.returncode
            except subprocess.TimeoutExpired:
                stderr, returncode = "module timeout", None
            finished = False
            started_ids = set()
            if os.path.exists(out_path):
                with open(out_path) as f:
                    for line in f:
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue
                        if record["id"] == "__module__":
                            finished = True
                            continue
                        started_ids.add(record["id"])
                        old = outcomes.get(record["id"])
                        if old is None or _RANK[record["outcome"]] > _RANK[old]:
                            outcomes[record["id"]] = record["outcome"]
                            if record["outcome"] in BAD:
                                details[record["id"]] = record.get("detail", "")
                os.unlink(out_path)
            if finished:
                break
            if returncode is None:
                outcomes.setdefault("__module__", "hang")
                break
            if len(outcomes) == before:
                # Died before finishing any new test: a crash at import or in an unknown
                # test.  Record it once and give up on the rest of the module.
                outcomes["__module__"] = "crash"
                details["__module__"] = stderr
                break
            restarts += 1
            if restarts > 50:
                outcomes["__module__"] = "crash"
                details["__module__"] = "too many restarts; last stderr:\n" + stderr
                break
        return outcomes, details


def summarize(module, outcomes, impl):
    counts = Counter(v for k, v in outcomes.items() if k != "__module__")
    known = 0
    unexpected = []
    for test_id, outcome in outcomes.items():
        if outcome in BAD:
            if impl == "loop" and match_known(module, test_id):
                known += 1
            elif test_id != "__module__" or outcome != "pass":
                unexpected.append(test_id)
    return {
        "pass": counts["pass"], "fail": counts["fail"] + counts["error"],
        "hang": counts["hang"] + counts["crash"], "skip": counts["skip"],
        "total": sum(counts.values()), "known": known,
        "module_status": outcomes.get("__module__", "done"), "unexpected": unexpected,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", nargs="+", default=["loop"],
                        choices=["loop", "gevent", "none"])
    parser.add_argument("--modules", nargs="+", default=DEFAULT_MODULES)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter to run the tests with (default: this one)")
    parser.add_argument("--timeout", type=float, default=900, help="per module, seconds")
    parser.add_argument("--test-timeout", type=float, default=60, help="per test, seconds")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--details", help="write failure tracebacks here (JSON)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on failures that are not in known_failures.py")
    parser.add_argument("--jobs", type=int, default=1, help="modules run in parallel")
    args = parser.parse_args()

    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONFAULTHANDLER", "1")

    results = {}
    all_details = {}
    jobs = [(impl, module) for module in args.modules for impl in args.impl]

    def do(job):
        impl, module = job
        start = time.monotonic()
        outcomes, details = run_module(args.python, impl, module, args.timeout,
                                       args.test_timeout, env)
        summary = summarize(module, outcomes, impl)
        summary["seconds"] = round(time.monotonic() - start, 1)
        return impl, module, summary, details

    if args.jobs > 1:
        with ThreadPoolExecutor(args.jobs) as pool:
            finished = list(pool.map(do, jobs))
    else:
        finished = map(do, jobs)
    for impl, module, summary, details in finished:
        results.setdefault(module, {})[impl] = summary
        all_details.setdefault(impl, {})[module] = details
        print("%-34s %-7s pass %4d  fail %3d  hang/crash %2d  skip %4d  known %3d  %6.1fs %s"
              % (module, impl, summary["pass"], summary["fail"], summary["hang"],
                 summary["skip"], summary["known"], summary["seconds"],
                 "" if summary["module_status"] == "done" else summary["module_status"]),
              flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": args.python, "version": _version(args.python),
                       "results": results}, f, indent=1)
    if args.details:
        with open(args.details, "w") as f:
            json.dump(all_details, f, indent=1)
    unexpected = sum(len(r["loop"]["unexpected"]) for r in results.values() if "loop" in r)
    if args.strict and unexpected:
        print("%d unexpected failures under loop" % unexpected)
        return 1
    return 0


def _version(python):
    return subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
