"""os.fork() with green threads: what keeps running in the child.

Every test forks in a subprocess of its own (forking the pytest process would duplicate it).
A child that does not exit 0 fails the test; the parent checks the child's exit code too.
"""
import os
import textwrap

import pytest

from script_helpers import run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

BACKENDS = ["asyncio", "uvloop"]


# Parent and child write to the same pipe: one write per line keeps lines whole.  settle():
# the child reports and exits (3 unless ok), the parent waits for it and reports its exit code.
SAY = ("def say(*args):\n"
       "    __import__('os').write(1, (' '.join(map(str, args)) + '\\n').encode())\n"
       "def settle(pid, ok, *details):\n"
       "    import os\n"
       "    if pid == 0:\n"
       "        say('child', ok, *details)\n"
       "        os._exit(0 if ok else 3)\n"
       "    _, status = os.waitpid(pid, 0)\n"
       "    say('parent', ok, 'child exit', os.waitstatus_to_exitcode(status))\n")


def run_script(code, backend, timeout=60):
    return run_python(SAY + textwrap.dedent(code), {"LOOP_BACKEND": backend}, timeout)


def check(r, *expected):
    output = r.stdout + r.stderr
    assert r.returncode == 0, output
    for line in expected:
        assert line in r.stdout, output
    assert "Traceback" not in r.stderr, output


# -- timers (no monkey patching) ------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_green_threads_waiting_with_timers_continue_in_child(backend):
    r = run_script("""
        import os, sys, loop
        from loop.event import Event
        from loop.timeout import Timeout

        log = []
        def sleeper(n):
            loop.sleep(0.05 + 0.01 * n)
            log.append("slept %d" % n)
        def unref_sleeper():
            loop.sleep(0.05, ref=False)
            log.append("unref slept")
        ev = Event()
        def timed_wait():
            log.append("waited %s" % ev.wait(timeout=0.08))
        def timeout_user():
            try:
                with Timeout(0.07):
                    loop.sleep(10)
            except Timeout:
                log.append("timed out")
        def long_sleeper():
            try:
                loop.sleep(30)
            except loop.GreenletExit:
                log.append("killed")
                raise

        gs = [loop.spawn(sleeper, i) for i in range(3)]
        gs += [loop.spawn(unref_sleeper), loop.spawn(timed_wait), loop.spawn(timeout_user)]
        gs.append(loop.spawn_later(0.06, log.append, "started later"))
        long = loop.spawn(long_sleeper)
        loop.sleep(0.01)
        forked = {}
        loop.spawn(lambda: forked.setdefault("pid", os.fork())).join()
        loop.joinall(gs, timeout=5)
        long.kill()
        hub = loop.get_hub()
        expected = sorted(["slept 0", "slept 1", "slept 2", "unref slept", "waited False",
                           "timed out", "started later", "killed"])
        ok = sorted(log) == expected and hub.wakeup_sources == 0
        who = "child" if forked["pid"] == 0 else "parent"
        say(who, ok, sorted(log), hub.wakeup_sources)
        if forked["pid"] == 0:
            assert hub.join(timeout=5) is True  # nothing left that could wake anybody
            os._exit(0 if ok else 3)
        _, status = os.waitpid(forked["pid"], 0)
        say("child exit", os.waitstatus_to_exitcode(status))
    """, backend)
    check(r, "child True", "parent True", "child exit 0")


@pytest.mark.parametrize("backend", BACKENDS)
def test_timers_due_when_forking_fire_once_in_child(backend):
    # The fork happens in a green thread resumed by a timer; the other timers with the same
    # deadline are due in the same loop iteration, which the old loop finishes in the child.
    r = run_script("""
        import os, loop
        from loop.exceptions import InvalidSwitchError
        log = []
        def sleeper(n):
            for _ in range(3):
                loop.sleep(0.03)
                log.append(n)
        forked = {}
        def forker():
            loop.sleep(0.03)
            forked["pid"] = os.fork()
        f = loop.spawn(forker)
        gs = [loop.spawn(sleeper, i) for i in range(5)]
        f.join()
        loop.joinall(gs, timeout=5)
        hub = loop.get_hub()
        ok = (sorted(log) == sorted(list(range(5)) * 3) and hub.wakeup_sources == 0
              and all(g.successful() for g in gs))
        settle(forked["pid"], ok, hub.wakeup_sources)
    """, backend)
    check(r, "child True", "parent True child exit 0")


# -- threading under patch_all -------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_patched_threads_keep_running_after_fork_in_a_thread(backend):
    r = run_script("""
        from loop import monkey; monkey.patch_all()
        import os, sys, threading, time
        main = threading.main_thread()
        done = []
        def sleeper(n):
            time.sleep(0.05 + 0.02 * n)
            done.append((n, threading.current_thread().name))
        threads = [threading.Thread(target=sleeper, args=(i,), name="s%d" % i)
                   for i in range(3)]
        daemon = threading.Thread(target=sleeper, args=(3,), name="d", daemon=True)
        def last():
            sleeper(4)
            say("last finished in", "child" if info["pid"] == 0 else "parent")
        unjoined = threading.Thread(target=last, name="unjoined")  # non-daemon
        for t in threads + [daemon, unjoined]:
            t.start()
        time.sleep(0.01)
        info = {}
        def forker():
            info["pid"] = os.fork()
            if info["pid"] == 0:
                info["alive"] = [t.is_alive() for t in threads + [daemon, unjoined]]
                info["enumerate"] = sorted(t.name for t in threading.enumerate())
                info["main"] = threading.main_thread() is main and main.is_alive()
                info["current"] = threading.current_thread().name
        f = threading.Thread(target=forker, name="forker")
        f.start()
        f.join()  # in the child too: the forker keeps running there
        for t in threads + [daemon]:
            t.join(5)
        if info["pid"] == 0:
            ok = (info["alive"] == [True] * 5 and info["main"]
                  and info["current"] == "forker"
                  and info["enumerate"] == ["MainThread", "d", "forker", "s0", "s1", "s2",
                                            "unjoined"]
                  and not any(t.is_alive() for t in threads + [daemon, f])
                  and sorted(done) == [(0, "s0"), (1, "s1"), (2, "s2"), (3, "d")]
                  and threading.active_count() == 2)
            say("child", ok, info, sorted(done), threading.active_count())
            if not ok:
                os._exit(3)
            sys.exit(0)  # a normal exit: threading waits for "unjoined"
        _, status = os.waitpid(info["pid"], 0)
        say("child exit", os.waitstatus_to_exitcode(status))
    """, backend)
    check(r, "child True", "last finished in child", "last finished in parent", "child exit 0")


@pytest.mark.parametrize("backend", BACKENDS)
def test_patched_threads_keep_running_after_fork_in_main_thread(backend):
    r = run_script("""
        from loop import monkey; monkey.patch_all()
        import os, threading, time
        done = []
        threads = [threading.Thread(target=lambda n=n: (time.sleep(0.03 * n), done.append(n)))
                   for n in range(1, 4)]
        for t in threads:
            t.start()
        time.sleep(0.01)
        pid = os.fork()
        alive = [t.is_alive() for t in threads]
        for t in threads:
            t.join(5)
        ok = alive == [True] * 3 and sorted(done) == [1, 2, 3]
        settle(pid, ok, alive, done)
    """, backend)
    check(r, "child True", "parent True child exit 0")


@pytest.mark.parametrize("backend", BACKENDS)
def test_patched_fork_while_a_thread_is_starting(backend):
    # The fork happens while the main thread waits in Thread.start() for the new thread to
    # run: the thread is in threading._limbo, and the starter waits on its _started event.
    r = run_script("""
        from loop import monkey; monkey.patch_all()
        import os, threading, time, loop
        forked = {}
        loop.spawn(lambda: forked.setdefault("pid", os.fork()))
        t = threading.Thread(target=time.sleep, args=(0.02,))
        t.start()  # the fork runs first, then t
        alive = t.is_alive()
        t.join(5)
        ok = "pid" in forked and alive and not t.is_alive()
        settle(forked["pid"], ok)
    """, backend)
    check(r, "child True", "parent True child exit 0")


@pytest.mark.parametrize("backend", BACKENDS)
def test_patched_fork_ends_green_threads_of_other_os_threads(backend):
    # Green threads started in another OS thread do not exist in the child: they count as
    # ended there (join returns, exit does not wait for them), as CPython's own threads do.
    r = run_script("""
        from loop import monkey; monkey.patch_all()
        import os, sys, threading, time
        start_os_thread = monkey.get_original("_thread", "start_new_thread")
        started = []
        stop = []  # set only in the parent, at the end
        def wait_for_stop():
            while not stop:
                time.sleep(0.01)
        def in_other_os_thread():
            ts = [threading.Thread(target=wait_for_stop) for _ in range(2)]  # non-daemon
            for t in ts:
                t.start()
            started.extend(ts)
            wait_for_stop()  # this OS thread's hub runs its green threads meanwhile
        start_os_thread(in_other_os_thread, ())
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            for t in started:
                t.join(5)
            ok = len(started) == 2 and not any(t.is_alive() for t in started)
            say("child", ok, threading.active_count())
            if not ok:
                os._exit(3)
            sys.exit(0)  # must not wait for the vanished non-daemon threads
        _, status = os.waitpid(pid, 0)
        say("child exit", os.waitstatus_to_exitcode(status))
        say("parent alive", [t.is_alive() for t in started])
        stop.append(True)
        for t in started:
            t.join(5)
    """, backend, timeout=60)
    check(r, "child True", "child exit 0", "parent alive [True, True]")
