"""One-way switch cost of loop._switch against greenlet, measured side by side in one process.

    python bench/switch.py [--quick] [--json bench/results/switch-3.11.json]
    python bench/switch.py --baseline OTHER/src [--rounds 3] [--quick]

Rows: switching between two fibers/greenlets with 0, 100 and 500 Python frames below the switch
point, and with 10, 50 and 200 levels of C recursion (through sorted(key=...)) below it; spawn plus
first switch; RSS per suspended fiber. Each number is the best of several repeats, in ns (spawn:
us, RSS: bytes). greenlet is optional: without it only loop's column is printed.

``--baseline`` compares this tree's loop with another checkout's (its ``src`` directory, with the
extension built in place: ``python setup.py build_ext --inplace`` there), e.g. the previous commit
made with ``git worktree add /tmp/base HEAD~1``.  Each side runs in its own process, alternating,
``--rounds`` times; the table shows each row's best per side and baseline/this (above 1: this tree
is faster).
"""
import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import loop._switch as ls

try:
    import greenlet as gl
except ImportError:  # pragma: no cover - the peer is optional
    gl = None


def impls():
    out = {"loop": (ls.Fiber, ls.getcurrent)}
    if gl is not None:
        out["greenlet"] = (gl.greenlet, gl.getcurrent)
    return out


def make_pingpong(Fiber, getcurrent, py_depth, c_depth):
    """A partner that sits at the requested depth and switches straight back each time."""
    main = getcurrent()

    def bottom():
        while True:
            main.switch()

    def py_dig(n):
        if n:
            return py_dig(n - 1)
        return c_dig(c_depth)

    def c_dig(n):
        if n:
            # a real C frame (list.sort) between two Python frames
            return sorted([1, 0], key=lambda x: c_dig(n - 1) if x else 0)
        return bottom()

    partner = Fiber(lambda: py_dig(py_depth))
    partner.switch()
    return partner


def time_switches(Fiber, getcurrent, py_depth, c_depth, n, repeats):
    partner = make_pingpong(Fiber, getcurrent, py_depth, c_depth)
    sw = partner.switch
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            sw()
        best = min(best, time.perf_counter() - t0)
    return best / (2 * n) * 1e9     # two one-way switches per round trip


def time_spawn(Fiber, n, repeats):
    def run():
        return None
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            Fiber(run).switch()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def rss_per_suspended(Fiber, getcurrent, n):
    main = getcurrent()

    def park():
        main.switch()

    gc.collect()
    before = rss_bytes()
    fibers = [Fiber(park) for _ in range(n)]
    for f in fibers:
        f.switch()
    per = (rss_bytes() - before) / n
    for f in fibers:
        f.switch()
    return per


def compare_with_baseline(args):
    """Run this file for this tree and for ``args.baseline`` in turn; print both, best of each."""
    here_src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    sides = {"this": here_src, "baseline": os.path.abspath(args.baseline)}
    best = {}
    for _ in range(args.rounds):
        for side, src in sides.items():
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, os.path.abspath(__file__), "--json", out.name, "--loop-only"]
                if args.quick:
                    cmd.append("--quick")
                env = dict(os.environ, PYTHONPATH=src)
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                with open(out.name) as f:
                    rows = json.load(f)["results"]["loop"]
            for label, value in rows.items():
                kept = best.setdefault(side, {}).get(label)
                best[side][label] = value if kept is None else min(kept, value)
    print(f"Python {platform.python_version()} {platform.machine()}: this tree against "
          f"{args.baseline}, best of {args.rounds} alternating rounds")
    print(f"{'':28}{'this':>12}{'baseline':>12}{'base/this':>12}")
    for label, value in best["this"].items():
        base = best["baseline"][label]
        print(f"{label:28}{value:12.1f}{base:12.1f}{base / value:12.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--baseline", help="another checkout's src directory to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        compare_with_baseline(args)
        return
    n, repeats = (20_000, 3) if args.quick else (200_000, 5)
    rows = [("depth 0", 0, 0), ("py-depth 100", 100, 0), ("py-depth 500", 500, 0),
            ("C-depth 10", 0, 10), ("C-depth 50", 0, 50), ("C-depth 200", 0, 200)]
    sys.setrecursionlimit(10_000)
    results = {}
    for name, (Fiber, getcurrent) in impls().items():
        if args.loop_only and name != "loop":
            continue
        r = results[name] = {}
        for label, py, c in rows:
            r[label] = time_switches(Fiber, getcurrent, py, c, n // (1 + c // 10), repeats)
        r["spawn+first switch (us)"] = time_spawn(Fiber, n // 4, repeats)
        r["RSS per suspended (bytes)"] = rss_per_suspended(Fiber, getcurrent, 20_000)
    names = list(results)
    labels = list(results["loop"])
    head = f"{'':28}" + "".join(f"{n:>12}" for n in names)
    if "greenlet" in results:
        head += f"{'loop/greenlet':>16}"
    print(f"Python {platform.python_version()} {platform.machine()}, "
          f"greenlet {getattr(gl, '__version__', 'not installed')}")
    print(head)
    for label in labels:
        line = f"{label:28}" + "".join(f"{results[n][label]:12.1f}" for n in names)
        if "greenlet" in results:
            line += f"{results['loop'][label] / results['greenlet'][label]:16.2f}"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "machine": platform.machine(),
                       "greenlet": getattr(gl, "__version__", None), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
