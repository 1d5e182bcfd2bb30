"""A seeded, differential fuzzer of green-thread operations.

Why it is built this way:

* **A seed is a program.** One ``random.Random(seed)`` decides every operation, and it is consumed
  in execution order. Green threads are cooperative, so the order in which fibers run is itself
  decided by that stream: the same seed replays the same program, on loop and on greenlet, for
  as long as the two behave alike. The first entry where their traces differ is where they
  stopped behaving alike.
* **Operations** (run by whichever fiber is current): spawn, switch with a value, throw, reparent,
  drop the last reference to a fiber (suspended ones are killed), collect garbage, finish with a
  value or an exception, recurse and act at the bottom (fibers parked deep), recurse into
  RecursionError, switch from ``__del__`` and from a weakref callback, keep a generator or a
  coroutine suspended across switches and resume it from another fiber, run a sub-program in
  another OS thread (its own fibers; switching into ours from there must fail cleanly), raise a
  signal whose handler runs in whichever fiber is current, and turn a trace and profile function
  on and off.
* **Checks**, always: the process does not crash or hang (each seed runs under a timeout in a
  worker process; a dying worker names the seed it was running, which is then re-run alone); every
  fiber that started ran its ``finally``; after the clean-up every fiber and every object the
  program made is gone (weak references), no fiber stack is still in use, and the worker's RSS
  comes back to a plateau. Where greenlet is installed the same seeds also run on it, and the
  traces must agree, up to the differences listed in ``TOLERATED``.

Usage::

    python tests/fuzz/fiber_fuzz.py --seeds 0:10000 --jobs 2        # long run, one Python
    python tests/fuzz/fiber_fuzz.py --seeds 17:18 --show              # replay one seed, print its trace
"""
import argparse
import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, os.pardir, os.pardir, "src")

# Differences between loop's greenlet facade and greenlet that the comparison tolerates; each is
# normalised away before the traces are compared.
TOLERATED = {
    "exit-name": "the exit exception is loop._switch.FiberExit (greenlet.GreenletExit): compared as "
                 "'Exit'",
    "error-name": "misuse raises loop._switch.FiberError (greenlet.error): compared as 'error'; "
                  "messages are never compared",
    "exit-start-args": "a fiber that dies of the exit exception starts its unstarted parent with "
                       "(exit,) where greenlet passes () (issue 14 item 8): start arguments of one "
                       "exit instance compare equal to ()",
    "recursion-depth": "greenlet starts a greenlet at its spawner's recursion depth, loop at 0: "
                       "only the fact that RecursionError was raised is recorded, not where",
    "parent-cycle": "a fiber that survives being killed on its last reference gets its parent back, "
                    "but loop keeps the killer as its parent where that would close a cycle of "
                    "parents (greenlet restores it, and a later parent walk through the cycle "
                    "never ends): a seed whose greenlet run makes a parent cycle is compared only "
                    "up to that point",
    "not-generated": "operations whose greenlet behaviour differs on purpose or is being aligned "
                     "elsewhere are not generated: setting a main fiber's parent, gr_context of "
                     "finished fibers, the switch hook's events, .dead of fibers of ended threads, "
                     "dropping a fiber in a thread other than its own on purpose (the fibers "
                     "another thread is handed are let go in their own thread)",
    "deferred-kill-args": "a fiber released in another thread (its last reference held by garbage "
                          "that thread collected) is killed by its owner at the owner's next "
                          "switch; greenlet then loses that switch's value and raises 'cannot "
                          "switch with no pending arguments', loop delivers it: a seed whose first "
                          "difference is that is compared up to it",
}

MAX_FIBERS = 12
OPS = ["spawn", "switch", "switch", "switch", "throw", "reparent", "drop", "gc", "finish",
       "recurse", "recursion_error", "del_switch", "weakref_switch", "generator", "coroutine",
       "resume_gen", "thread", "signal", "trace"]


class Program:
    """One seed's run in one OS thread (sub-programs in other threads get their own)."""

    def __init__(self, api, rng, budget, trace, tag="", main_thread=True, foreign=()):
        self.api = api
        self.rng = rng
        self.budget = budget
        self.trace = trace
        self.tag = tag
        self.main_thread = main_thread
        self.foreign = list(foreign)     # fibers of another thread: switching into them must fail
        self.fibers = {}                 # id -> fiber: the program's strong references
        self.refs = []                   # weak references to everything made, for the leak check
        self.started = set()
        self.finished = set()
        self.next_id = 1
        self.gens = []
        self.depth = 0
        self.check_cycles = api.mod.__name__ == "greenlet"
        self.cycle_at = None
        self.main = api.getcurrent()
        self.fibers[0] = self.main

    # -- recording -------------------------------------------------------------------------------
    def norm(self, v):
        api = self.api
        if isinstance(v, api.GreenletExit):
            return "<Exit>"
        if isinstance(v, BaseException):
            return "<%s>" % exc_name(api, v)
        if isinstance(v, tuple):
            return [self.norm(x) for x in v]
        if isinstance(v, dict):
            return {k: self.norm(x) for k, x in sorted(v.items())}
        if v is None or isinstance(v, (int, str)):
            return v
        return "<%s>" % type(v).__name__

    def rec(self, *entry):
        self.trace.append([self.tag + str(entry[0])] + [self.norm(x) for x in entry[1:]])

    def fid(self):
        cur = self.api.getcurrent()
        for k, f in self.fibers.items():
            if f is cur:
                return k
        return -1

    # -- the fibers' body -------------------------------------------------------------------------
    def body(self, my_id):
        def run(*args, **kwargs):
            if len(args) == 1 and isinstance(args[0], self.api.GreenletExit) and not kwargs:
                args = ()                       # TOLERATED["exit-start-args"]
            self.started.add(my_id)
            self.rec("start", my_id, args, kwargs)
            try:
                while True:
                    if self.budget[0] <= 0:
                        return ("done", my_id)
                    r = self.step(my_id)
                    if r is not None:
                        kind, value = r
                        if kind == "return":
                            return value
                        raise value
            finally:
                self.finished.add(my_id)
                self.rec("finally", my_id)
        return run

    def pick(self, include_main=True, live_only=False):
        keys = [k for k, f in self.fibers.items()
                if (include_main or k != 0) and (not live_only or not f.dead)]
        if not keys:
            return None, None
        k = self.rng.choice(sorted(keys))
        return k, self.fibers[k]

    def parent_cycle(self):
        for r in self.refs:
            f = r()
            if not isinstance(f, self.api.greenlet):
                continue
            seen = set()
            while f is not None:
                if id(f) in seen:
                    return True
                seen.add(id(f))
                f = f.parent
        return False

    def step(self, me):
        """One operation by fiber `me`. Returns ("return", v) / ("raise", e) to finish it."""
        if self.check_cycles and self.cycle_at is None and self.parent_cycle():
            self.cycle_at = len(self.trace)       # TOLERATED["parent-cycle"]
        self.budget[0] -= 1
        op = self.rng.choice(OPS)
        rng = self.rng
        api = self.api
        if op == "spawn":
            if len(self.fibers) >= MAX_FIBERS:
                return None
            k = self.next_id
            self.next_id += 1
            parent_k, parent = self.pick(live_only=True) if rng.random() < 0.3 else (None, None)
            g = api.greenlet(self.body(k), parent) if parent is not None else api.greenlet(self.body(k))
            self.fibers[k] = g
            self.refs.append(weakref.ref(g))
            self.rec("spawn", me, k, parent_k)
            del g, parent
        elif op == "switch":
            k, target = self.pick()
            value = rng.choice([None, k, (me, k), "v%d" % rng.randrange(100)])
            kw = rng.random() < 0.1
            self.rec("switch", me, k, value, kw)
            try:
                got = target.switch(x=value) if kw else target.switch(value)
            except BaseException as e:
                got = e
                if isinstance(e, api.GreenletExit):
                    del target
                    return ("raise", e)       # being killed: let finally run
            del target
            self.rec("got", me, got)
            del got                  # no cycle through this frame: lifetimes stay refcounted
        elif op == "throw":
            k, target = self.pick()
            if k == me:
                return None
            exc = rng.choice([ValueError, KeyError, api.GreenletExit])
            self.rec("throw", me, k, exc.__name__ if exc is not api.GreenletExit else "Exit")
            try:
                got = target.throw(exc)
            except BaseException as e:
                got = e
                if isinstance(e, api.GreenletExit):
                    del target
                    return ("raise", e)
            del target
            self.rec("got", me, got)
            del got                  # no cycle through this frame: lifetimes stay refcounted
        elif op == "reparent":
            k, target = self.pick(include_main=False)
            pk, parent = self.pick()
            if target is None:
                return None
            try:
                target.parent = parent
                outcome = "ok"
            except BaseException as e:
                outcome = e
            self.rec("reparent", me, k, pk, outcome)
            del target, parent, outcome
        elif op == "drop":
            k, _ = self.pick(include_main=False)
            if k is None or k == me:
                return None
            self.rec("drop", me, k)
            del _
            self.fibers.pop(k)               # a suspended fiber nobody else holds dies here
            self.rec("dropped", me, k)
        elif op == "gc":
            gc.collect()
            self.rec("gc", me)
        elif op == "finish":
            if me == 0:
                return None
            if rng.random() < 0.7:
                return ("return", ("ret", me))
            return ("raise", rng.choice([ValueError("v%d" % me), KeyError(me)]))
        elif op == "recurse":
            if self.depth > 3:
                return None
            n = rng.randrange(1, 60)
            self.depth += 1
            try:
                r = self._recurse(me, n)
            finally:
                self.depth -= 1
            return r
        elif op == "recursion_error":
            def down():
                return down()
            try:
                down()
                self.rec("recursion", me, "none")
            except RecursionError:
                self.rec("recursion", me, "RecursionError")
        elif op in ("del_switch", "weakref_switch"):
            k, target = self.pick()
            prog = self

            class Obj:
                if op == "del_switch":
                    def __del__(self):
                        prog.rec("del", prog.fid())
                        try:
                            target.switch("from-del")
                        except BaseException as e:
                            prog.rec("del-exc", e)
            obj = Obj()
            if op == "weakref_switch":
                def callback(ref):
                    self.rec("wrcb", self.fid())
                    try:
                        target.switch("from-weakref")
                    except BaseException as e:
                        self.rec("wrcb-exc", e)
                ref = weakref.ref(obj, callback)
            self.rec(op, me, k)
            del obj
            self.rec(op + "-done", me)
            if op == "weakref_switch":
                del ref, callback
            del target, Obj
        elif op in ("generator", "coroutine"):
            if len(self.gens) > 6:
                return None
            prog = self

            def gen():
                try:
                    while True:
                        v = yield
                        prog.rec("gen-step", prog.fid(), v)
                        if v == "switch":
                            k, t = prog.pick()
                            prog.rec("gen-switch", prog.fid(), k)
                            try:
                                t.switch("from-gen")
                            except BaseException as e:
                                prog.rec("gen-exc", e)
                                raise
                finally:
                    prog.rec("gen-finally", prog.fid())

            class Awaitable:
                def __await__(self):
                    return (yield from gen())

            async def coro():
                return await Awaitable()

            g = gen() if op == "generator" else coro()
            g.send(None)
            self.gens.append(g)
            self.refs.append(weakref.ref(g))
            self.rec(op, me, len(self.gens) - 1)
            del g
        elif op == "resume_gen":
            if not self.gens:
                return None
            i = rng.randrange(len(self.gens))
            v = rng.choice(["switch", "plain", "close"])
            self.rec("resume", me, i, v)
            g = self.gens[i]
            try:
                if v == "close":
                    g.close()
                    self.gens.pop(i)
                else:
                    g.send(v)
            except BaseException as e:
                self.rec("resume-exc", me, e)
                if isinstance(e, api.GreenletExit):
                    del g
                    return ("raise", e)
            del g
        elif op == "thread":
            if not self.main_thread:
                k, target = self.pick()
                try:
                    target.switch("x") if k is not None else None
                    out = "no error"
                except BaseException as e:
                    out = e
                self.rec("same-thread-switch", me, out)
                del target, out
                return None
            sub_trace = []
            sub = Program(api, random.Random(rng.random()), [rng.randrange(5, 40)], sub_trace,
                          tag="t.", main_thread=False, foreign=[self.fibers[k] for k in
                                                                   sorted(self.fibers)[:3]])
            t = threading.Thread(target=sub.run_thread)
            t.start()
            t.join()
            sub.foreign.clear()
            self.trace.extend(sub_trace)
            self.refs.extend(sub.refs)
            self.rec("thread-done", me, sorted(sub.started - sub.finished))
        elif op == "signal":
            if not self.main_thread:
                for f in self.foreign:
                    try:
                        f.switch("from another thread")
                        out = "switched"
                    except BaseException as e:
                        out = e
                    self.rec("cross-thread", me, out)
                    del out
                return None
            self.rec("raise-signal", me)
            signal.raise_signal(signal.SIGUSR1)
            self.rec("signal-done", me)
        elif op == "trace":
            if sys.gettrace() is None:
                counts = [0]

                def tracer(frame, event, arg):
                    counts[0] += 1
                    return None
                sys.settrace(tracer)
                sys.setprofile(tracer)
            else:
                sys.settrace(None)
                sys.setprofile(None)
            self.rec("trace", me)
        return None

    def _recurse(self, me, n):
        if n > 0:
            return self._recurse(me, n - 1)
        self.rec("bottom", me)
        return self.step(me)

    # -- driving and cleaning up -----------------------------------------------------------------
    def drive(self):
        while self.budget[0] > 0:
            r = self.step(0)
            if r is not None and r[0] == "raise" and isinstance(r[1], self.api.GreenletExit):
                break

    def cleanup(self):
        """Kill whatever is still alive (from the main fiber), drop everything, collect."""
        sys.settrace(None)
        sys.setprofile(None)
        self.budget[0] = 0
        main = self.api.getcurrent()
        for _ in range(10):
            alive = [r() for r in self.refs]
            alive = [f for f in alive if isinstance(f, self.api.greenlet) and f and f is not main]
            if not alive:
                break
            for f in alive:
                if f.dead or not f:
                    continue
                try:
                    f.parent = main
                except BaseException:
                    pass
                try:
                    f.throw(self.api.GreenletExit)
                except BaseException as e:
                    self.rec("cleanup-exc", e)
            del alive, f
        for g in self.gens:
            try:
                g.close()
            except BaseException as e:
                self.rec("gen-close-exc", e)
        self.gens.clear()
        self.fibers.clear()
        gc.collect()

    def problems(self):
        out = []
        missing = sorted(self.started - self.finished)
        if missing:
            out.append("started but no finally: %s" % missing)
        alive = []
        for r in self.refs:
            x = r()
            if x is None:
                continue
            # A fiber that caught the exit exception when it was dropped and parked again is
            # kept alive for good by the library (greenlet and loop alike) rather than strand
            # its frames; the clean-up killed it, and nothing but that kept reference holds it.
            if not (isinstance(x, self.api.greenlet) and x.dead and not gc.get_referrers(x)):
                alive.append(repr(x))
            del x
        if alive:
            out.append("still alive after clean-up: %s" % alive[:5])
        return out

    def run_thread(self):
        self.main = self.api.getcurrent()
        self.fibers = {0: self.main}
        try:
            self.drive()
        except BaseException as e:
            self.rec("thread-exc", e)
        self.cleanup()


def exc_name(api, e):
    if isinstance(e, api.GreenletExit):
        return "Exit"
    if isinstance(e, api.error):
        return "error"
    return type(e).__name__


class Api:
    def __init__(self, impl):
        if impl == "greenlet":
            import greenlet as mod
        else:
            import loop.compat.greenlet as mod
        self.mod = mod
        self.greenlet = mod.greenlet
        self.getcurrent = mod.getcurrent
        self.GreenletExit = mod.GreenletExit
        self.error = mod.error


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_seed(api, seed):
    rng = random.Random(seed)
    trace = []
    prog = Program(api, rng, [rng.randrange(20, 200)], trace)
    signal.signal(signal.SIGUSR1, lambda *a: prog.rec("signal", prog.fid()))
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(4000)
    gc.disable()
    try:
        prog.drive()
    except BaseException as e:
        prog.rec("main-exc", e)
    finally:
        prog.cleanup()
        gc.enable()
        sys.setrecursionlimit(old_limit)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    problems = prog.problems()
    if api.mod.__name__.startswith("loop"):
        from loop._switch import stack_stats
        s = stack_stats()
        in_use = s["stacks_mapped"] - s["stacks_pooled"] - s["stacks_cold"] - s["stacks_fresh"]
        if in_use != 0:
            problems.append("%d fiber stacks still in use" % in_use)
    return trace, problems, prog.cycle_at


def worker(impl, seeds):
    api = Api(impl)
    out = sys.stdout
    base_rss = None
    for i, seed in enumerate(seeds):
        out.write("START %d\n" % seed)
        out.flush()
        trace, problems, cycle_at = run_seed(api, seed)
        if i == 20:
            base_rss = rss_kb()
        if base_rss is not None and i % 50 == 49 and rss_kb() - base_rss > 64 * 1024:
            problems.append("worker RSS grew by %d KiB since seed %d" % (rss_kb() - base_rss,
                                                                       seeds[20]))
            base_rss = rss_kb()
        out.write(json.dumps({"seed": seed, "trace": trace, "problems": problems,
                              "compare_upto": cycle_at}) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# The driver: chunks of seeds in worker processes, per-seed attribution of crashes and hangs.

def run_worker(python, impl, seeds, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    if impl == "greenlet":
        env.pop("LD_PRELOAD", None)     # a checker preloaded for loop's build has no business here
    env.setdefault("PYTHONFAULTHANDLER", "1")
    args = [python, os.path.abspath(__file__), "--worker", impl, "--list",
            ",".join(map(str, seeds))]
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc = "timeout"
    results, running = {}, None
    for line in stdout.splitlines():
        if line.startswith("START "):
            running = int(line.split()[1])
        elif line.startswith("{"):
            r = json.loads(line)
            results[r["seed"]] = r
            running = None
    return results, running, rc, stderr


def check_seeds(python, seeds, compare, per_seed_timeout=30, progress=False):
    """Returns (number of seeds checked, list of failure descriptions)."""
    failures = []
    todo = list(seeds)
    checked = 0
    while todo:
        chunk, todo = todo[:50], todo[50:]
        timeout = per_seed_timeout + 2 * len(chunk)
        got, running, rc, err = run_worker(python, "loop", chunk, timeout)
        if running is not None or (rc not in (0,) and len(got) < len(chunk)):
            bad = running if running is not None else chunk[len(got)]
            alone, _, rc2, err2 = run_worker(python, "loop", [bad], per_seed_timeout)
            if bad not in alone:
                failures.append("seed %d: worker %s (alone: %s)\n%s" % (bad, rc, rc2,
                                                                      (err2 or err)[-3000:]))
            else:
                got[bad] = alone[bad]
            todo = [s for s in chunk if s not in got and s != bad] + todo
        elif rc != 0:
            failures.append("seeds %s: worker exited %s after finishing\n%s" % (chunk, rc, err[-3000:]))
        ref = {}
        if compare and got:
            ref, _, _, _ = run_worker(python, "greenlet", sorted(got), timeout)
        for seed in sorted(got):
            checked += 1
            r = got[seed]
            for p in r["problems"]:
                failures.append("seed %d: %s" % (seed, p))
            upto = ref[seed].get("compare_upto") if seed in ref else None
            if seed in ref and ref[seed]["trace"][:upto] != r["trace"][:upto]:
                a, b = r["trace"][:upto], ref[seed]["trace"][:upto]
                i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                if (0 < i < min(len(a), len(b)) and a[i][0] == b[i][0] == "got" and
                        b[i][2:] == ["<error>"] and a[i - 1][0].endswith("finally")):
                    continue                          # TOLERATED["deferred-kill-args"]
                failures.append("seed %d: differs from greenlet at entry %d: loop %s, greenlet %s"
                                % (seed, i, a[i:i + 3], b[i:i + 3]))
        if progress:
            print("progress: %d seeds checked in this job, %d failures" % (checked, len(failures)),
                  file=sys.stderr, flush=True)
    return checked, failures


def greenlet_available(python):
    return subprocess.run([python, "-c", "import greenlet"], capture_output=True).returncode == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0:200", help="range start:stop")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--no-greenlet", action="store_true", help="invariants only")
    ap.add_argument("--show", action="store_true", help="print the traces of the seeds")
    ap.add_argument("--progress", action="store_true", help="report after every batch (stderr)")
    ap.add_argument("--src", help="import loop from this directory (default: this checkout's src)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--list", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.src:
        global SRC
        SRC = a.src
    if a.worker:
        worker(a.worker, [int(s) for s in a.list.split(",")])
        return 0
    start, stop = (int(x) for x in a.seeds.split(":"))
    seeds = list(range(start, stop))
    if a.show:
        for impl in ("loop", "greenlet"):
            got, running, rc, err = run_worker(a.python, impl, seeds, 60 * len(seeds))
            for s in seeds:
                print(impl, s, json.dumps(got.get(s), indent=None) if s in got else (rc, err[-2000:]))
        return 0
    compare = not a.no_greenlet and greenlet_available(a.python)
    t0 = time.time()
    slices = [seeds[i::a.jobs] for i in range(a.jobs)]
    results = [None] * a.jobs
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, check_seeds(a.python, slices[i], compare, progress=a.progress))) for i in range(a.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checked = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]
    for f in failures:
        print("FAIL", f)
    print("fiber_fuzz: %d seeds on %s, %s, %d failures, %.0f s" % (
        checked, a.python, "compared with greenlet" if compare else "invariants only",
        len(failures), time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
