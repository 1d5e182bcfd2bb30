"""Hub benchmarks: loop against gevent, eventlet, asyncio and asyncio+uvloop, side by side.

    python bench/hub.py [--repeat 3] [--only loop,gevent,...] [--scale 1.0] [--baseline DIR/src]

Scenarios (each run in a fresh subprocess per implementation, best of --repeat):

* spawn_join  -- spawn 100,000 green threads (tasks) doing nothing, then join them all;
* yield       -- 1,000 green threads each yielding 1,000 times (``sleep(0)``);
* event_block -- 100,000 green threads blocked on one Event: creation time until all wait, and
                 RSS growth per blocked green thread; then set and join;
* timers      -- 10,000 green threads sleeping random lengths in [0, 50 ms): total wall time
                 (the floor is 50 ms);
* lateness    -- a 10 ms ticker while 200 green threads (tasks) are spawned at once, each
                 computing for about 5 ms before its first wait (a burst of new connections
                 whose handlers each build an SSL context, say): the ticker's worst lateness.
                 Running every ready green thread before looking at timers makes it the sum of
                 their runs (about 1 s).

``--baseline`` adds a column "loop-baseline": loop from another checkout's ``src`` directory
(extension built in place there), e.g. the previous commit from ``git worktree add /tmp/base
HEAD~1``, so a change is measured side by side with the code before it.  Implementations take
turns within each repeat, so a change in the machine's load hits all of them alike.

Peers that are not installed are skipped with a note.  A run of every peer at full scale
writes ``bench/results/hub-<python>.json`` (``--json`` writes any run elsewhere); the table
shows each peer's time divided by loop's (above 1.0 means loop is faster).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
IMPLS = ["loop", "gevent", "eventlet", "asyncio", "uvloop"]
SCENARIOS = ["spawn_join", "yield", "event_block", "timers", "lateness"]

#: The lateness scenario: a ticker's period, and the burst of computing threads.
TICK, BURST, BURST_COMPUTE = 0.01, 200, 0.005


def compute(seconds):
    """Keep the CPU busy for about ``seconds`` without waiting."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(100))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Workers: one scenario of one implementation, in this process.

def green_api(impl):
    """spawn, joinall, sleep, Event for the green libraries."""
    if impl in ("loop", "loop-baseline"):
        import loop
        from loop.event import Event
        return loop.spawn, loop.joinall, loop.sleep, Event
    if impl == "gevent":
        import gevent
        from gevent.event import Event
        return gevent.spawn, gevent.joinall, gevent.sleep, Event
    if impl == "eventlet":
        import warnings
        warnings.simplefilter("ignore")
        import eventlet
        import eventlet.event

        class Event:  # eventlet's Event is one-shot with send(); wrap to wait()/set()
            def __init__(self):
                self._e = eventlet.event.Event()

            def wait(self):
                return self._e.wait()

            def set(self):
                self._e.send(True)

        def joinall(threads):
            for t in threads:
                t.wait()
        return eventlet.spawn, joinall, eventlet.sleep, Event
    raise ValueError(impl)


def run_green(impl, scenario, scale):
    spawn, joinall, sleep, Event = green_api(impl)
    sleep(0)  # create the hub outside the measurement
    n = int(100_000 * scale)
    if scenario == "spawn_join":
        def nothing():
            pass
        t = time.perf_counter()
        joinall([spawn(nothing) for _ in range(n)])
        return {"seconds": time.perf_counter() - t, "n": n}
    if scenario == "yield":
        threads, yields = int(1000 * scale), 1000

        def yielder():
            for _ in range(yields):
                sleep(0)
        t = time.perf_counter()
        joinall([spawn(yielder) for _ in range(threads)])
        return {"seconds": time.perf_counter() - t, "n": threads * yields}
    if scenario == "event_block":
        event = Event()
        before = rss_bytes()
        t = time.perf_counter()
        threads = [spawn(event.wait) for _ in range(n)]
        sleep(0)  # every one of them runs and blocks
        created = time.perf_counter() - t
        grown = rss_bytes() - before
        event.set()
        joinall(threads)
        return {"seconds": created, "n": n, "rss_per_thread": grown / n,
                "total_seconds": time.perf_counter() - t}
    if scenario == "timers":
        import random
        rnd = random.Random(42)
        delays = [rnd.random() * 0.05 for _ in range(int(10_000 * scale))]
        t = time.perf_counter()
        joinall([spawn(sleep, d) for d in delays])
        return {"seconds": time.perf_counter() - t, "n": len(delays)}
    if scenario == "lateness":
        worst = [0.0]

        def ticker(ticks):
            for _ in range(ticks):
                due = time.perf_counter() + TICK
                sleep(TICK)
                worst[0] = max(worst[0], time.perf_counter() - due)
        tick = spawn(ticker, 50)
        sleep(TICK * 1.5)
        joinall([spawn(compute, BURST_COMPUTE) for _ in range(BURST)] + [tick])
        return {"seconds": worst[0], "n": BURST}
    raise ValueError(scenario)


def run_asyncio(impl, scenario, scale):
    import asyncio
    n = int(100_000 * scale)

    async def main():
        if scenario == "spawn_join":
            async def nothing():
                pass
            t = time.perf_counter()
            await asyncio.gather(*[asyncio.ensure_future(nothing()) for _ in range(n)])
            return {"seconds": time.perf_counter() - t, "n": n}
        if scenario == "yield":
            threads, yields = int(1000 * scale), 1000

            async def yielder():
                for _ in range(yields):
                    await asyncio.sleep(0)
            t = time.perf_counter()
            await asyncio.gather(*[asyncio.ensure_future(yielder()) for _ in range(threads)])
            return {"seconds": time.perf_counter() - t, "n": threads * yields}
        if scenario == "event_block":
            event = asyncio.Event()
            before = rss_bytes()
            t = time.perf_counter()
            tasks = [asyncio.ensure_future(event.wait()) for _ in range(n)]
            await asyncio.sleep(0)
            created = time.perf_counter() - t
            grown = rss_bytes() - before
            event.set()
            await asyncio.gather(*tasks)
            return {"seconds": created, "n": n, "rss_per_thread": grown / n,
                    "total_seconds": time.perf_counter() - t}
        if scenario == "timers":
            import random
            rnd = random.Random(42)
            delays = [rnd.random() * 0.05 for _ in range(int(10_000 * scale))]
            t = time.perf_counter()
            await asyncio.gather(*[asyncio.ensure_future(asyncio.sleep(d)) for d in delays])
            return {"seconds": time.perf_counter() - t, "n": len(delays)}
        if scenario == "lateness":
            worst = [0.0]

            async def ticker(ticks):
                for _ in range(ticks):
                    due = time.perf_counter() + TICK
                    await asyncio.sleep(TICK)
                    worst[0] = max(worst[0], time.perf_counter() - due)

            async def computing():
                compute(BURST_COMPUTE)
            tick = asyncio.ensure_future(ticker(50))
            await asyncio.sleep(TICK * 1.5)
            await asyncio.gather(*[asyncio.ensure_future(computing()) for _ in range(BURST)],
                                 tick)
            return {"seconds": worst[0], "n": BURST}
        raise ValueError(scenario)

    if impl == "uvloop":
        import uvloop
        return uvloop.run(main())
    return asyncio.run(main())


def worker(impl, scenario, scale):
    if impl in ("asyncio", "uvloop"):
        result = run_asyncio(impl, scenario, scale)
    else:
        result = run_green(impl, scenario, scale)
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Driver

#: Where each implementation's ``loop`` comes from (``--baseline`` adds "loop-baseline").
SOURCES = {}


def environment(impl):
    src = SOURCES.get(impl, SRC)
    return dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))


def available(impl):
    name = {"loop": "loop._switch", "loop-baseline": "loop._switch",
            "asyncio": "asyncio"}.get(impl, impl)
    r = subprocess.run([sys.executable, "-c", "import %s" % name], env=environment(impl),
                       capture_output=True, text=True)
    return r.returncode == 0


def measure_once(impl, scenario, scale):
    r = subprocess.run([sys.executable, __file__, "--worker", impl, scenario,
                        "--scale", str(scale)], env=environment(impl), capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(impls, scenario, scale, repeat):
    """Best of ``repeat`` runs per implementation, the implementations taking turns."""
    best = {}
    for _ in range(repeat):
        for impl in impls:
            result = measure_once(impl, scenario, scale)
            kept = best.get(impl)
            if kept is None or "error" in kept or (
                    "error" not in result and result["seconds"] < kept["seconds"]):
                best[impl] = result
            sys.stderr.write(".")
            sys.stderr.flush()
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "SCENARIO"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default=",".join(IMPLS))
    parser.add_argument("--baseline", help="another checkout's src directory, as loop-baseline")
    parser.add_argument("--json", help="write the results here (default: bench/results/"
                        "hub-<python>.json, for a full run only)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.scale)
        return

    impls = [i for i in args.only.split(",") if i]
    if args.baseline:
        SOURCES["loop-baseline"] = os.path.abspath(args.baseline)
        impls.insert(impls.index("loop") + 1 if "loop" in impls else 0, "loop-baseline")
    notes = []
    present = []
    for impl in impls:
        if available(impl):
            present.append(impl)
        else:
            notes.append("%s: not installed, skipped" % impl)
    results = {}
    for scenario in SCENARIOS:
        results[scenario] = measure(present, scenario, args.scale, args.repeat)
    sys.stderr.write("\n")

    label = {"spawn_join": "spawn+join 100k (s)", "yield": "1k x 1k sleep(0) (s)",
             "event_block": "100k block on Event (s)", "timers": "10k random timers (s)",
             "lateness": "10ms tick, worst late (s)"}
    width = 26
    header = "%-*s" % (width, "scenario") + "".join(" %17s" % i for i in present)
    print(header)
    print("-" * len(header))

    def cell(value, base):
        if value is None:
            return "%16s" % "error"
        if base:
            return " %17s" % ("%.6g (x%.2f)" % (value, value / base))
        return " %17s" % ("%.6g" % value)

    for scenario in SCENARIOS:
        row = results.get(scenario, {})
        base = row.get("loop", {}).get("seconds")
        print("%-*s" % (width, label[scenario]) +
              "".join(cell(row[i].get("seconds"), base if i != "loop" else None)
                      for i in present))
        if scenario == "event_block":
            rss_base = row.get("loop", {}).get("rss_per_thread")
            print("%-*s" % (width, "  RSS per blocked (bytes)") + "".join(
                cell(row[i].get("rss_per_thread"), rss_base if i != "loop" else None)
                for i in present))
    print("\n(xN = that implementation's number divided by loop's; above 1 means loop is "
          "better)")
    for note in notes:
        print("note:", note)

    out = {"python": platform.python_version(), "machine": platform.machine(),
           "repeat": args.repeat, "scale": args.scale, "results": results, "notes": notes,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = args.json
    if path is None:
        # The published results (bench/report.py turns them into docs/performance.md's tables)
        # are replaced only by a run of every peer at full scale; a partial or --baseline run
        # writes them only where --json says.
        if args.baseline or args.scale != 1.0 or impls != IMPLS:
            return
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        path = os.path.join(HERE, "results", "hub-%s.json" % platform.python_version())
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print("results written to", os.path.relpath(path))


if __name__ == "__main__":
    main()
