"""The hub: scheduling, LoopExit, misuse errors, error reporting, signals, fork."""
import os
import time

import pytest

from script_helpers import run_python

import loop
from loop._core import hub as _hub
from loop.event import Event
from loop.exceptions import (BlockingSwitchOutError, ConcurrentObjectUseError,
                             InvalidSwitchError, LoopExit)

BACKENDS = ["asyncio", "uvloop"]


def run_script(code, env_extra=None, timeout=30):
    return run_python(code, env_extra, timeout)


def test_one_hub_per_thread_and_backend_choice():
    hub = loop.get_hub()
    assert loop.get_hub() is hub
    seen = []
    import threading
    t = threading.Thread(target=lambda: seen.append(loop.get_hub()))
    t.start()
    t.join()
    assert seen[0] is not hub and seen[0].thread_ident != hub.thread_ident


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_env_var(backend):
    r = run_script("""
        import loop, asyncio
        hub = loop.get_hub()
        loop.sleep(0.01)
        print(type(hub.loop).__module__)
    """, {"LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert ("uvloop" in r.stdout) == (backend == "uvloop")


def test_sleep_zero_is_fair():
    order = []

    def worker(n):
        for i in range(3):
            order.append(n)
            loop.sleep(0)

    loop.joinall([loop.spawn(worker, n) for n in range(3)])
    assert order == [0, 1, 2] * 3


def test_sleeps_run_concurrently():
    start = time.monotonic()
    loop.joinall([loop.spawn(loop.sleep, 0.2) for _ in range(20)])
    assert time.monotonic() - start < 2.0


def test_loop_exit_in_main():
    ev = Event()
    with pytest.raises(LoopExit):
        ev.wait()


def test_loop_exit_when_green_thread_waits_forever():
    ev = Event()
    g = loop.spawn(ev.wait)
    with pytest.raises(LoopExit):
        g.join()
    g.kill()


def test_no_loop_exit_while_timer_pending():
    ev = Event()
    loop.spawn_later(0.05, ev.set)
    assert ev.wait() is True


def test_hub_join_returns_when_idle():
    loop.spawn(loop.sleep, 0.01)
    assert loop.wait() is True


def test_blocking_in_hub_callback_raises():
    errors = []

    def callback():
        try:
            loop.sleep(0.01)
        except BlockingSwitchOutError as exc:
            errors.append(exc)

    hub = loop.get_hub()
    hub.loop.call_soon(callback)
    loop.sleep(0.01)
    assert errors and "hub" in str(errors[0])


def test_invalid_switch_detected():
    def rogue(target):
        target.switch("not from the hub")  # only the hub may resume a waiting green thread

    g = loop.spawn(rogue, loop.getcurrent())
    with pytest.raises(InvalidSwitchError):
        loop.sleep(0.5)
    g.kill()  # it is stuck where it switched; kill it there
    assert g.dead
    assert loop.get_hub().wakeup_sources == 0


def test_concurrent_fd_wait_raises():
    r, w = os.pipe()
    try:
        g = loop.spawn(_hub.wait_readable, r)
        loop.sleep(0)
        with pytest.raises(ConcurrentObjectUseError):
            _hub.wait_readable(r)
        os.write(w, b"x")
        g.join(timeout=2)
        assert g.successful()
    finally:
        os.close(r)
        os.close(w)


def test_wait_readable_and_writable_with_timeout():
    r, w = os.pipe()
    try:
        with pytest.raises(TimeoutError):
            _hub.wait_readable(r, timeout=0.05)
        _hub.wait_writable(w, timeout=1)
        loop.spawn_later(0.02, os.write, w, b"x")
        _hub.wait_readable(r, timeout=2)
        assert os.read(r, 1) == b"x"
        assert loop.get_hub().wakeup_sources == 0
    finally:
        os.close(r)
        os.close(w)


def test_cancel_wait_wakes_with_error():
    r, w = os.pipe()
    try:
        g = loop.spawn(_hub.wait_readable, r)
        loop.sleep(0)
        _hub.cancel_wait(r, OSError(9, "closed"))
        g.join()
        assert isinstance(g.exception, OSError)
    finally:
        os.close(r)
        os.close(w)


def test_errors_reported_once_and_hub_survives(capsys):
    def boom():
        raise ValueError("boom")

    g = loop.spawn(boom)
    g.join()
    with pytest.raises(ValueError):
        g.get()
    err = capsys.readouterr().err
    assert err.count("ValueError: boom") == 1
    assert "failed with ValueError" in err
    assert loop.spawn(lambda: 5).get() == 5


def test_system_exit_reaches_main():
    def stop():
        raise SystemExit(3)

    loop.spawn(stop)
    with pytest.raises(SystemExit):
        loop.sleep(1)


def test_keyboard_interrupt_reaches_main_from_raw_fiber():
    def interrupt():
        raise KeyboardInterrupt

    loop.spawn_raw(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.sleep(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_stops_joinall_promptly(backend):
    r = run_script("""
        import os, signal, threading, time, loop
        def slow():
            loop.sleep(30)
        def send():
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=send, daemon=True).start()
        start = time.monotonic()
        try:
            loop.joinall([loop.spawn(slow) for _ in range(3)])
        except KeyboardInterrupt:
            print("interrupted after %.1f" % (time.monotonic() - start))
    """, {"LOOP_BACKEND": backend}, timeout=20)
    assert "interrupted after" in r.stdout, r.stderr
    assert float(r.stdout.split()[-1]) < 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_signal_handler_runs_in_green_thread(backend):
    r = run_script("""
        import os, signal, loop
        from loop.event import Event
        got = Event()
        def handler(tag):
            print("handled", tag, isinstance(loop.getcurrent(), loop.Greenlet))
            got.set()
        h = loop.signal_handler(signal.SIGUSR1, handler, "usr1")
        loop.spawn_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
        assert got.wait(timeout=5)
        h.cancel()
    """, {"LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert "handled usr1 True" in r.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_signal_before_the_hub_first_runs_is_handled_once(backend):
    # A process registers its handlers first and starts serving later (a gunicorn worker
    # loads its application in between).  A signal that comes in between must be handled once
    # the hub runs, once.  (uvloop's own add_signal_handler drops such a signal: its wake-up fd
    # is only in place while the loop runs.)
    r = run_script("""
        import os, signal, time, loop
        calls = []
        loop.signal_handler(signal.SIGUSR1, calls.append, "usr1")
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)            # the hub has not run yet
        loop.sleep(0.2)
        print("before", calls)
        calls.clear()
        loop.spawn_later(0.05, os.kill, os.getpid(), signal.SIGUSR1)
        loop.sleep(0.3)
        print("running", calls)
    """, {"LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["before ['usr1']", "running ['usr1']"], r.stdout + r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_child_gets_working_hub(backend):
    r = run_script("""
        import os, loop
        from loop.event import Event
        loop.sleep(0.01)
        ticker = []
        def tick():
            while True:
                ticker.append(os.getpid())
                loop.sleep(0.01)
        g = loop.spawn(tick)
        loop.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            try:
                results = [loop.spawn(lambda i=i: (loop.sleep(0.01), i)[1]) for i in range(5)]
                loop.joinall(results, timeout=5)
                r, w = os.pipe()
                loop.spawn_later(0.02, os.write, w, b"x")
                loop.get_hub().wait_readable(r, timeout=5)
                print("child ok", [x.value for x in results])
                os._exit(0)
            except BaseException as exc:
                print("child failed", repr(exc))
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        loop.sleep(0.05)
        before = len(ticker)
        loop.sleep(0.05)
        print("parent ok", os.waitstatus_to_exitcode(status), len(ticker) > before)
    """, {"LOOP_BACKEND": backend})
    assert "child ok [0, 1, 2, 3, 4]" in r.stdout, r.stdout + r.stderr
    assert "parent ok 0 True" in r.stdout, r.stdout + r.stderr


def test_hub_keeps_original_selector_and_self_pipe():
    r = run_script("""
        import socket, selectors, loop
        from loop._core import hub as _hub
        class Broken:
            def __init__(self, *a, **k):
                raise AssertionError("patched object used by the hub")
        selectors.DefaultSelector = Broken
        socket.socketpair = Broken
        socket.socket = Broken
        loop.sleep(0.01)
        print("ok", type(loop.get_hub().loop).__name__)
    """, {"LOOP_BACKEND": "asyncio"})
    assert r.returncode == 0, r.stderr
    assert "ok HubSelectorEventLoop" in r.stdout


def test_idle_waits_for_ready_threads():
    order = []
    loop.spawn(lambda: [order.append(i) or loop.sleep(0) for i in range(3)])
    loop.idle()
    order.append("idle")
    assert order == [0, 1, 2, "idle"]


def test_run_callback_threadsafe_from_other_thread():
    import threading
    hub = loop.get_hub()
    ev = Event()
    threading.Thread(target=lambda: hub.run_callback_threadsafe(ev.set)).start()
    hub.add_wakeup_source()  # the thread is invisible to LoopExit accounting
    try:
        assert ev.wait(timeout=5)
    finally:
        hub.remove_wakeup_source()


# -- fd waits: kept registrations, fork; raw handles on the hub's loop ------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_carries_kept_socket_registrations(backend):
    r = run_script("""
        import os, loop
        from loop import socket
        a, b = socket.socketpair()
        a.settimeout(5)
        def ping():
            loop.spawn_later(0.01, b.send, b"x")
            return a.recv(1)
        ping()
        hub = loop.get_hub()
        assert hub._readers[a.fileno()].registered  # kept between waits
        pid = os.fork()
        if pid == 0:
            try:
                print("child", ping(), ping(), hub.wakeup_sources)
                os._exit(0)
            except BaseException as exc:
                print("child failed", repr(exc))
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("parent", os.waitstatus_to_exitcode(status), ping())
    """, {"LOOP_BACKEND": backend})
    assert "child b'x' b'x' 0" in r.stdout, r.stdout + r.stderr
    assert "parent 0 b'x'" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_handles_on_the_hub_loop_keep_loop_exit_away(backend):
    r = run_script("""
        import os, loop
        from loop.event import Event
        hub = loop.get_hub()
        ev = Event()
        hub.loop.call_later(0.05, ev.set)
        print("call_later", ev.wait())
        ev.clear()
        hub.loop.call_at(hub.loop.time() + 0.05, ev.set)
        print("call_at", ev.wait())
        ev.clear()
        r, w = os.pipe()
        def readable():
            os.read(r, 1)
            hub.loop.remove_reader(r)
            ev.set()
        hub.loop.add_reader(r, readable)
        hub.loop.call_soon_threadsafe(os.write, w, b"x")  # not counted, but add_reader is
        print("add_reader", ev.wait())
        ev.clear()
        hub.loop.call_later(0.05, ev.set).cancel()  # cancelled: nothing can wake us
        try:
            ev.wait()
            print("no LoopExit")
        except loop.LoopExit:
            print("LoopExit after cancel")
        print("join", hub.join(5))  # ref=False timeout: does not keep LoopExit away either
    """, {"LOOP_BACKEND": backend}, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n")[:5] == ["call_later True", "call_at True", "add_reader True",
                                       "LoopExit after cancel", "join True"], r.stdout + r.stderr


def test_timeouts_and_thrown_errors_of_waits_leave_no_garbage_cycles():
    # A wait that raises from a local (the timeout exception handed in, a waiter's stored
    # error) made exception -> traceback -> frame -> local -> exception: a cycle per timed-out
    # wait that only the cyclic collector frees.
    r = run_script("""
        import gc, socket
        import loop
        from loop._core.hub import get_hub
        from loop._core.waiter import Waiter

        hub = get_hub()
        a, b = socket.socketpair()
        gc.collect()
        gc.disable()
        for _ in range(50):
            try:
                hub.wait_fd(a.fileno(), True, 0.001, TimeoutError("fd wait timed out"))
            except TimeoutError:
                pass
            waiter = Waiter(hub)
            loop.spawn(waiter.wake_error, KeyError("thrown"))
            try:
                waiter.wait()
            except KeyError:
                pass
        print("unreachable", gc.collect())
    """)
    assert r.returncode == 0, r.stderr
    assert "unreachable 0" in r.stdout, r.stdout


def test_an_exception_of_a_signal_handler_is_raised_in_the_main_green_thread():
    r = run_script("""
        import signal
        import loop

        class Expected(Exception):
            pass

        def handler():
            raise Expected("from the handler")

        loop.signal_handler(signal.SIGALRM, handler)
        for _ in range(2):          # and the handler stays installed
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            try:
                loop.sleep(5)
            except Expected as exc:
                print("main got", exc)
            else:
                print("slept through")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main got from the handler"] * 2, r.stdout + r.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_hub_timers_never_fire_early(backend):
    # gevent's contract, and what code timing itself with time.monotonic() relies on: a sleep
    # or a timeout ends no sooner than asked.  uvloop's clock counts whole milliseconds from a
    # coarse clock, so a timer armed on it could fire up to a couple of milliseconds early.
    r = run_script("""
        import random, socket, time, loop, loop.socket
        from loop.event import Event
        from loop.timeout import Timeout
        early = []
        rng = random.Random(7)

        def check(kind, asked, started):
            took = time.monotonic() - started
            if took < asked:
                early.append((kind, asked, round(took, 6)))

        a, b = loop.socket.socketpair()
        for _ in range(150):
            asked = rng.choice([0.0004, 0.001, 0.0015, 0.002, 0.003])
            t0 = time.monotonic(); loop.sleep(asked); check("sleep", asked, t0)
            t0 = time.monotonic(); Event().wait(asked); check("event", asked, t0)
            t0 = time.monotonic()
            with Timeout(asked, False):
                loop.sleep(1)
            check("timeout", asked, t0)
            a.settimeout(asked)
            t0 = time.monotonic()
            try:
                a.recv(10)
            except socket.timeout:
                pass
            check("recv", asked, t0)
            done = Event()
            t0 = time.monotonic(); loop.spawn_later(asked, done.set); done.wait()
            check("spawn_later", asked, t0)
        print(len(early), early[:5])
    """, {"LOOP_BACKEND": backend}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("0 "), r.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_infinite_sleep_or_timeout_waits_until_interrupted(backend):
    # gevent and the stdlib accept float("inf") as "for ever"; the punctual timers must too.
    r = run_script("""
        import loop
        from loop.event import Event
        from loop.timeout import Timeout
        for wait in (lambda: loop.sleep(float("inf")),
                     lambda: Event().wait(float("inf"))):
            with Timeout(0.05, False):
                wait()
        with Timeout(float("inf")):
            loop.sleep(0.01)
        timer = loop.get_hub().call_later(float("inf"), print, "never")
        timer.cancel()
        print("ended by the timeout")
    """, {"LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ended by the timeout"
