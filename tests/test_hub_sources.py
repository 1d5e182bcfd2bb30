"""Wakeup sources and LoopExit: no false LoopExit when another OS thread will wake a wait, no
leftover registrations, and a seeded stress of everything that can wake a green thread."""
import os
import subprocess
import sys

import pytest

from script_helpers import SRC, run_python

import loop
from loop._core import hub as _hub

BACKENDS = ["asyncio", "uvloop"]


def run(code, backend, timeout=60):
    r = run_python(code, {"LOOP_BACKEND": backend}, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


LOOKUPS = """
    from loop import monkey; monkey.patch_all()
    import socket, loop
    gs = [loop.spawn(socket.getaddrinfo, "localhost", 80 + i, type=socket.SOCK_STREAM)
          for i in range(50)]
    loop.joinall(gs, raise_error=True)
    assert all(g.successful() and g.value for g in gs)
    print("ok")
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_lookups_from_many_green_threads_never_loopexit(backend):
    # Fast lookups of "localhost" (from /etc/hosts) in the resolver's worker threads: the
    # first one imports the idna codec under importlib's module lock, which after patch_all is
    # a green lock; the other workers waited on it in their own (empty) hubs and got LoopExit.
    # A fresh interpreter each time: the codec is imported once per process.
    for _ in range(6):
        assert run(LOOKUPS, backend).strip() == "ok"


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_job_waits_for_a_lock_a_green_thread_holds(backend):
    out = run("""
        from loop import monkey; monkey.patch_all()
        import threading, time, loop
        hub = loop.get_hub()
        lock = threading.Lock()
        rlock = threading.RLock()
        cond = threading.Condition()
        log = []

        def holder(what):
            with what:
                loop.sleep(0.2)
                log.append("released")

        def in_pool(what):
            with what:
                return "pool got it"

        for what in (lock, rlock, cond):
            log.clear()
            g = loop.spawn(holder, what)
            loop.sleep(0.01)
            assert not what.acquire(blocking=False)  # the green thread holds it
            result = hub.threadpool.spawn(in_pool, what)
            assert result.get(timeout=10) == "pool got it"
            g.join()
            assert log == ["released"], log

        # a Condition waited on in a pool job, notified by a green thread
        def waiter():
            with cond:
                return cond.wait(timeout=10)

        result = hub.threadpool.spawn(waiter)
        loop.sleep(0.2)
        with cond:
            cond.notify()
        assert result.get(timeout=10) is True
        print("ok", hub.wakeup_sources)
    """, backend)
    assert "ok 0" in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_real_deadlock_in_the_main_thread_still_raises_loopexit(backend):
    out = run("""
        from loop import monkey; monkey.patch_all()
        import socket, threading, loop
        socket.getaddrinfo("localhost", 80)   # the resolver's threads exist now
        lock = threading.Lock()
        lock.acquire()
        try:
            lock.acquire()
        except loop.LoopExit:
            print("LoopExit")
    """, backend)
    assert "LoopExit" in out


def test_registrations_are_owned_and_released_once():
    hub = loop.get_hub()
    before = hub.wakeup_sources
    token = hub.add_wakeup_source()
    owner = object()
    assert hub.add_wakeup_source(owner) is owner
    hub.add_wakeup_source(owner)  # the same owner is one registration
    assert hub.wakeup_sources == before + 2
    assert owner in hub.wakeup_registrations() and token in hub.wakeup_registrations()
    hub.remove_wakeup_source(owner)
    hub.remove_wakeup_source(owner)  # ending it twice ends it once
    hub.remove_wakeup_source()       # the anonymous one
    assert hub.wakeup_sources == before
    with pytest.raises(RuntimeError):
        hub.remove_wakeup_source()   # unpaired: refused, not a count below zero


@pytest.mark.parametrize("backend", BACKENDS)
def test_foreign_wake_of_a_waiter_left_by_an_exception_does_not_switch_into_it(backend):
    # Another OS thread wakes a waiting green thread, and in the same loop iteration a Timeout
    # throws into it first (the hub was busy, so both were due).  The wake, delivered through
    # the hub's thread-safe call, must then be dropped, not switch into the green thread later.
    out = run("""
        import threading, time, loop
        from loop._core.waiter import Waiter
        hub = loop.get_hub()
        for _ in range(3):
            waiter = Waiter(hub)
            def other():
                time.sleep(0.03)
                waiter.wake("late")
            threading.Thread(target=other).start()
            hub.loop.call_later(0.005, time.sleep, 0.08)  # the hub is stuck while both come
            try:
                with loop.Timeout(0.01):
                    waiter.wait()
            except loop.Timeout:
                pass
            loop.sleep(0.05)   # a stale wake would end this sleep with InvalidSwitchError
            ev = loop.event.Event()
            loop.spawn_later(0.01, ev.set)
            assert ev.wait(5) is True
        print("ok")
    """, backend)
    assert out.strip() == "ok"


STRESS = r"""
import os, random, sys, threading, time
import loop
import loop.socket as socket
import loop.lock
import loop.thread
from loop.event import Event
from loop.exceptions import LoopExit

seed = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SEED", "1"))
deadline = time.monotonic() + float(os.environ.get("STRESS_SECONDS", "6"))
rng = random.Random(seed)
hub = loop.get_hub()
pool = hub.threadpool
rounds = 0
lock = loop.lock.Lock()

def job(kind, arg):
    if kind == "pool":
        time.sleep(arg)
        return arg
    if kind == "timer":
        loop.sleep(arg)
        return arg
    if kind == "fd":
        a, b = socket.socketpair()
        sender = loop.spawn_later(arg, b.send, b"x")
        try:
            return a.recv(1)
        finally:
            sender.kill()
            a.close(); b.close()
    if kind == "event":
        ev = Event()
        loop.spawn_later(arg, ev.set)
        return ev.wait(5)
    if kind == "lock":
        with lock:
            loop.sleep(arg)
        return True
    if kind == "pool+event":
        ev = Event()
        pool.spawn(time.sleep, arg).rawlink(lambda r: ev.set())
        return ev.wait(5)
    if kind == "xthread":   # a pool job takes a _thread lock that this green thread holds
        shared = loop.thread.allocate_lock()
        shared.acquire()
        try:
            result = pool.spawn(lambda: shared.acquire() and shared.release() is None)
            loop.sleep(arg)
        finally:
            shared.release()
        return result.get()
    if kind == "timeout":
        with loop.Timeout(arg, False):
            loop.sleep(arg * 3)
        return True
    raise ValueError(kind)

kinds = ["pool", "timer", "fd", "event", "lock", "pool+event", "timeout", "xthread"]
while time.monotonic() < deadline:
    rounds += 1
    gs = [loop.spawn(job, rng.choice(kinds), rng.choice([0, 0.0005, 0.002, 0.01]))
          for _ in range(rng.randint(1, 30))]
    victims = rng.sample(gs, rng.randint(0, len(gs) // 3))
    if rng.random() < 0.5:
        loop.sleep(rng.choice([0, 0.001]))
    for g in victims:
        g.kill(block=rng.random() < 0.5)
    try:
        loop.joinall(gs, timeout=20)
    except LoopExit as exc:
        print("FALSE LOOPEXIT seed=%d round=%d: %s" % (seed, rounds, exc))
        sys.exit(1)
    for g in gs:
        if not g.ready():
            print("HANG seed=%d round=%d %r" % (seed, rounds, g)); sys.exit(1)
        if g not in victims and not g.successful():
            print("FAILED seed=%d round=%d %r %r" % (seed, rounds, g, g.exception)); sys.exit(1)
for _ in range(20):
    loop.sleep(0.01)
    if not hub.wakeup_sources and not hub.ready_entries():
        break
left = hub.wakeup_registrations()
print("rounds", rounds, "left", left)
sys.exit(1 if left else 0)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_stress_of_every_wakeup_kind(backend, tmp_path):
    script = tmp_path / "stress.py"
    script.write_text(STRESS)
    env = dict(os.environ, LOOP_BACKEND=backend, STRESS_SECONDS="6", PYTHONPATH=SRC)
    for seed in (1, 2):
        r = subprocess.run([sys.executable, str(script), str(seed)], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (seed, r.stdout[-3000:], r.stderr[-3000:])
        assert "left []" in r.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_started_before_fork_keeps_the_forked_child_alive(backend):
    # The pre-fork server pattern: bind and start, fork, serve in the child.  A fork used to
    # recount the wakeup sources from what the hub could see, which dropped the server's.
    out = run("""
        import os, signal, socket, loop
        from loop.server import StreamServer
        def handle(sock, address):
            sock.sendall(b"served by %d" % os.getpid())
            sock.close()
        server = StreamServer(("127.0.0.1", 0), handle)
        server.start()
        loop.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            try:
                server.serve_forever()
            finally:
                os._exit(3)
        # The parent blocks in plain sockets: its own hub does not run, only the child serves.
        try:
            c = socket.create_connection(("127.0.0.1", server.server_port), timeout=10)
            c.settimeout(10)
            print(c.recv(100).decode() == "served by %d" % pid)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    """, backend)
    assert out.strip() == "True"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pool_job_in_flight_at_fork_fails_in_the_child(backend):
    out = run("""
        import os, time, loop
        hub = loop.get_hub()
        result = hub.threadpool.spawn(time.sleep, 0.5)
        loop.sleep(0.05)  # the worker runs it now
        pid = os.fork()
        if pid == 0:
            try:
                result.get(timeout=5)
                code = 1
            except RuntimeError as exc:
                code = 0 if "forked child" in str(exc) and not hub.wakeup_sources else 2
            except BaseException as exc:
                print("child:", repr(exc))
                code = 3
            os._exit(code)
        result.get(timeout=5)
        print("child exit", os.waitpid(pid, 0)[1] >> 8)
    """, backend)
    assert out.strip() == "child exit 0"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_thread_pool_works_in_a_forked_child(backend):
    # Not only the hub's pool: a pool of the program's own had counted worker threads that a
    # child does not have, and queued its jobs to nobody.
    out = run("""
        import os, loop
        from loop.threadpool import ThreadPool
        pool = ThreadPool(4)
        pool.apply(os.getpid)
        pid = os.fork()
        if pid == 0:
            try:
                with loop.Timeout(5):
                    ok = pool.apply(os.getpid) == os.getpid()
                    ok = ok and loop.get_hub().threadpool.apply(os.getpid) == os.getpid()
            except BaseException as exc:
                print("child:", repr(exc))
                ok = False
            os._exit(0 if ok else 1)
        print("child exit", os.waitpid(pid, 0)[1] >> 8)
    """, backend)
    assert out.strip() == "child exit 0"
