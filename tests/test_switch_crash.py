"""Scenarios that crash naive switchers. Each runs in a fresh interpreter that must exit 0 and
print nothing on stderr (warnings included), so a segfault or an abort fails the test."""
import subprocess
import sys
import textwrap

import pytest

from script_helpers import run_python


def run_script(code, timeout=120, expect_stdout=None, env=None):
    proc = run_python(code, env, timeout, interpreter_args=("-X", "faulthandler"))
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    if expect_stdout is not None:
        assert proc.stdout.split() == expect_stdout.split(), proc.stdout
    return proc.stdout


def test_thread_exits_with_suspended_fibers():
    run_script("""
        import threading, gc
        from loop._switch import Fiber, getcurrent
        kept = []
        def worker():
            main = getcurrent()
            def run():
                try:
                    main.switch()
                finally:
                    pass
            for _ in range(100):
                f = Fiber(run); f.switch(); kept.append(f)
        for _ in range(10):
            t = threading.Thread(target=worker); t.start(); t.join()
        gc.collect()
        # fibers of dead threads are abandoned when released, without running their code
        assert all(bool(f) is False for f in kept)
        del kept[:]
        gc.collect()
        print("ok")
    """, expect_stdout="ok")


def test_fiber_released_from_another_thread_is_killed_by_its_owner():
    run_script("""
        import threading
        from loop._switch import Fiber, getcurrent
        log = []
        box = {}
        main = getcurrent()
        def run():
            try:
                main.switch()
            finally:
                log.append(threading.current_thread().name)
        f = Fiber(run); f.switch()
        box['f'] = f; del f
        def drop():
            box.clear()          # last reference dropped in another thread
        t = threading.Thread(target=drop, name="other"); t.start(); t.join()
        assert log == [], log    # not run in the wrong thread
        getcurrent()             # the owner notices the queued fiber
        assert log == ["MainThread"], log
        print("ok")
    """, expect_stdout="ok")


def test_interpreter_shutdown_with_suspended_fibers():
    run_script("""
        import atexit
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        fibers = []
        def run(i):
            try:
                main.switch()
            finally:
                pass
        for i in range(1000):
            f = Fiber(run); f.switch(i); fibers.append(f)
        class Holder:
            pass
        Holder.fibers = fibers          # survives until module teardown
        atexit.register(lambda: Fiber(lambda: None).switch())   # switching in atexit still works
        print("ok")
    """, expect_stdout="ok")


def test_shutdown_while_daemon_thread_runs_fibers():
    run_script("""
        import threading, time
        from loop._switch import Fiber, getcurrent
        def spin():
            main = getcurrent()
            f = Fiber(lambda: [main.switch() for _ in iter(int, 1)])
            while True:
                f.switch()
        threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.2)
        print("ok")
    """, expect_stdout="ok")


def test_fork_from_inside_a_fiber():
    run_script("""
        import os
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        def child_work():
            g = Fiber(lambda: "child fiber ran")
            return g.switch()
        def run():
            pid = os.fork()
            if pid == 0:
                try:
                    ok = child_work() == "child fiber ran" and getcurrent() is not main
                    main.switch("child back in main")
                finally:
                    os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        f = Fiber(run)
        res = f.switch()
        if res == "child back in main":
            os._exit(0)
        assert res == 0, res
        print("ok")
    """, expect_stdout="ok")


def test_signal_handlers_run_while_switching():
    run_script("""
        import os, signal
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        hits = []
        signal.signal(signal.SIGUSR1, lambda *a: hits.append(getcurrent()))
        fibers = [Fiber(lambda: [main.switch() for _ in range(2000)]) for _ in range(5)]
        for round in range(2000):
            for f in fibers:
                f.switch()
            if round % 100 == 0:
                os.kill(os.getpid(), signal.SIGUSR1)
        assert len(hits) == 20, len(hits)
        print("ok")
    """, expect_stdout="ok")


def test_keyboard_interrupt_inside_fiber_reaches_parent():
    run_script("""
        import os, signal, time
        from loop._switch import Fiber, getcurrent
        def run():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**7):
                pass
        try:
            Fiber(run).switch()
        except KeyboardInterrupt:
            print("ok")
    """, expect_stdout="ok")


def test_trashcan_nested_dealloc_with_switches():
    run_script("""
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        def bouncer():
            back = main.switch()
            while True:
                back = back.switch()
        other = Fiber(bouncer); other.switch()
        class S:
            def __del__(self):
                other.switch(getcurrent())
        def make(depth):
            x = None
            for i in range(depth):
                x = (x, S() if i % 97 == 0 else None)
            return x
        fibers = []
        for n in range(20):
            def run():
                x = make(50_000)
                main.switch()
                del x
                return "done"
            f = Fiber(run); f.switch(); fibers.append(f)
        assert all(f.switch() == "done" for f in fibers)
        print("ok")
    """, expect_stdout="ok")


def test_reentrant_run_lookup():
    run_script("""
        from loop._switch import Fiber, FiberError, getcurrent
        main = getcurrent()
        class Tricky(Fiber):
            calls = 0
            def __getattribute__(self, name):
                if name == "run":
                    Tricky.calls += 1
                    if Tricky.calls == 1:
                        # start another fiber and switch around while our run is looked up
                        Fiber(lambda: main.switch()).switch()
                return object.__getattribute__(self, name)
            def run(self):
                return "ran"
        assert Tricky().switch() == "ran"
        print("ok")
    """, expect_stdout="ok")


RECURSION_CASES = {
    "repr": "repr(deep)",
    "json": "json.dumps(deep)",
    "pickle": "pickle.dumps(deep)",
    "python": "rec(0)",
    "sorted_key": "sorted([0, 1], key=key)",
}


@pytest.mark.parametrize("limit", [1000, 10_000, 100_000])
@pytest.mark.parametrize("case", sorted(RECURSION_CASES))
def test_deep_recursion_in_fiber_is_as_safe_as_on_a_thread(case, limit):
    """Whatever CPython survives on the main thread's 8 MiB stack, a fiber survives too.
    (CPython itself can segfault once the recursion limit is raised far enough.)"""
    template = """
        import sys, json, pickle
        from loop._switch import Fiber
        deep = []
        for _ in range(200_000):
            deep = [deep]
        def rec(n): return rec(n + 1)
        def key(x):
            sorted([0, 1], key=key)
            return x
        sys.setrecursionlimit(%d)
        def attempt():
            try:
                %s
            except RecursionError:
                pass
            return "survived"
        print(%s)
    """
    expr = RECURSION_CASES[case]
    on_thread = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(template % (limit, expr, "attempt()"))],
        capture_output=True, text=True, timeout=120)
    if on_thread.returncode != 0:
        pytest.skip(f"CPython itself crashes here on the main thread (exit {on_thread.returncode})")
    run_script(template % (limit, expr, "Fiber(attempt).switch()"), expect_stdout="survived")


def test_gc_of_suspended_fiber_cycles_through_frames_does_not_crash():
    run_script("""
        import gc
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        for _ in range(200):
            def run():
                me = getcurrent()       # a cycle through the suspended frame
                main.switch()
            f = Fiber(run); f.switch()
            del f
        gc.collect()
        print("ok")
    """, expect_stdout="ok")


def test_switch_error_paths_do_not_crash():
    run_script("""
        import threading
        from loop._switch import Fiber, FiberError, getcurrent
        errors = 0
        f = Fiber(lambda: None); f.switch()
        for action in (f.switch, f.throw, lambda: f.throw(ValueError)):
            try: action()
            except FiberError: errors += 1
        other = []
        t = threading.Thread(target=lambda: other.append(getcurrent())); t.start(); t.join()
        try: other[0].switch()
        except FiberError: errors += 1
        a = Fiber(lambda: None); b = Fiber(lambda: None, parent=a)
        try: a.parent = b
        except ValueError: errors += 1
        print(errors)
    """, expect_stdout="5")


def test_hundred_thousand_suspended_fibers():
    out = run_script("""
        import resource, gc
        from loop._switch import Fiber, getcurrent, stack_stats
        main = getcurrent()
        def rss_kib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4
        def park():
            main.switch()
        n = 100_000
        gc.collect()
        before = rss_kib()
        fibers = [Fiber(park) for _ in range(n)]
        for f in fibers:
            f.switch()
        after = rss_kib()
        with open("/proc/self/maps") as m:
            vmas = sum(1 for _ in m)
        for f in fibers:
            f.switch()
        assert all(f.dead for f in fibers)
        print(round((after - before) * 1024 / n), vmas, stack_stats()["guard"])
    """, timeout=300)
    per_fiber, vmas, guard = out.split()
    assert int(vmas) < 60000
    if guard == "madvise":
        assert int(vmas) < 5000        # guard pages do not split mappings


def test_rss_flat_over_a_million_spawn_finish_cycles():
    run_script("""
        from loop._switch import Fiber
        def rss_kib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4
        def run(i):
            return i
        for i in range(100_000):
            Fiber(run).switch(i)
        warm = rss_kib()
        for i in range(1_000_000):
            Fiber(run).switch(i)
        grown = rss_kib() - warm
        assert grown < 2048, grown      # KiB; a leaked 16 KiB chunk per fiber would be 15 GiB
        print("ok")
    """, expect_stdout="ok", timeout=300)
