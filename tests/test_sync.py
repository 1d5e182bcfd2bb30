"""event, lock, queue, local and timeout."""
import threading
import time

import pytest

from script_helpers import run_python

import loop
from loop import Timeout
from loop.event import AsyncResult, Event
from loop.local import local
from loop.lock import BoundedSemaphore, Lock, RLock, Semaphore
from loop.queue import (Channel, Empty, Full, JoinableQueue, LifoQueue, PriorityQueue, Queue,
                        ShutDown, SimpleQueue)

# -- Event / AsyncResult ------------------------------------------------------------------------


def test_event_wakes_all_waiters():
    ev = Event()
    gs = [loop.spawn(ev.wait) for _ in range(50)]
    loop.sleep(0)
    assert not any(g.ready() for g in gs)
    ev.set()
    loop.joinall(gs)
    assert all(g.value is True for g in gs)
    assert ev.wait() is True and ev.is_set()
    ev.clear()
    assert ev.wait(timeout=0.01) is False


def test_event_set_from_other_os_thread():
    ev = Event()
    hub = loop.get_hub()
    hub.add_wakeup_source()
    try:
        threading.Timer(0.05, ev.set).start()
        assert ev.wait(timeout=5)
    finally:
        hub.remove_wakeup_source()


def test_event_repeated_timeouts_do_not_grow():
    ev = Event()
    for _ in range(100):
        ev.wait(0.0001)
    assert len(ev._waiters) < 10


def test_async_result():
    r = AsyncResult()
    loop.spawn_later(0.01, r.set, 7)
    assert r.get() == 7 and r.successful() and r.value == 7
    r2 = AsyncResult()
    loop.spawn_later(0.01, r2.set_exception, ValueError("x"))
    with pytest.raises(ValueError):
        r2.get()
    assert r2.exception is not None and not r2.successful()
    with pytest.raises(Timeout):
        AsyncResult().get(timeout=0.01)
    with pytest.raises(Timeout):
        AsyncResult().get(block=False)
    assert AsyncResult().wait(0.01) is None


# -- locks --------------------------------------------------------------------------------------


def test_semaphore_limits_concurrency():
    sem = Semaphore(3)
    active, peak = [0], [0]

    def worker():
        with sem:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            loop.sleep(0.005)
            active[0] -= 1

    loop.joinall([loop.spawn(worker) for _ in range(12)])
    assert peak[0] == 3 and sem.counter == 3


def test_semaphore_fifo_and_timeout():
    sem = Semaphore(0)
    order = []
    gs = [loop.spawn(lambda i=i: sem.acquire() and order.append(i)) for i in range(3)]
    loop.sleep(0)
    for _ in range(3):
        sem.release()
    loop.joinall(gs)
    assert order == [0, 1, 2]
    assert sem.acquire(timeout=0.01) is False
    assert sem.acquire(blocking=False) is False


def test_permit_not_lost_when_woken_waiter_is_killed():
    sem = Semaphore(0)
    g1 = loop.spawn(sem.acquire)
    g2 = loop.spawn(sem.acquire)
    loop.sleep(0)
    g1.kill(block=False)  # queued first: g1 dies before it runs again...
    sem.release()         # ...but the permit was already handed to it: it must go to g2
    g2.join(timeout=1)
    assert g1.dead and isinstance(g1.value, loop.GreenletExit)
    assert g2.successful() and g2.value is True


def test_bounded_semaphore_and_lock():
    b = BoundedSemaphore(1)
    with pytest.raises(ValueError):
        b.release()
    lock = Lock()
    assert lock.acquire() and lock.locked()
    assert not lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_rlock():
    rl = RLock()
    with rl:
        with rl:
            assert rl._count == 2
    order = []

    def holder():
        with rl:
            order.append("holder")
            loop.sleep(0.01)

    def other():
        with rl:
            order.append("other")

    loop.joinall([loop.spawn(holder), loop.spawn(other)])
    assert order == ["holder", "other"]
    g = loop.spawn(rl.release)
    g.join()
    assert isinstance(g.exception, RuntimeError)


# -- queues -------------------------------------------------------------------------------------


def test_queue_producer_consumer_and_join():
    q = JoinableQueue(maxsize=2)
    out = []

    def consumer():
        while True:
            item = q.get()
            out.append(item)
            q.task_done()

    c = loop.spawn(consumer)
    for i in range(10):
        q.put(i)
    assert q.join(timeout=2)
    assert out == list(range(10))
    c.kill()


def test_queue_empty_full_timeouts():
    q = Queue(1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.01)
    q.put(1)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(2)
    with pytest.raises(Full):
        q.put(2, timeout=0.01)
    assert q.peek() == 1 and q.qsize() == 1


def test_queue_iteration_and_kinds():
    q = Queue(items=[1, 2, StopIteration])
    assert list(q) == [1, 2]
    lq = LifoQueue()
    pq = PriorityQueue()
    for x in (2, 3, 1):
        lq.put(x)
        pq.put(x)
    assert [lq.get() for _ in range(3)] == [1, 3, 2]
    assert [pq.get() for _ in range(3)] == [1, 2, 3]
    sq = SimpleQueue()
    sq.put("a")
    assert sq.get() == "a"


def test_queue_shutdown():
    q = Queue()
    g = loop.spawn(q.get)
    loop.sleep(0)
    q.put("last")
    q.shutdown()
    g.join()
    assert g.value == "last"
    with pytest.raises(ShutDown):
        q.put(1)
    with pytest.raises(ShutDown):
        q.get()


def test_channel_rendezvous():
    ch = Channel()
    log = []

    def producer():
        for i in range(3):
            ch.put(i)
            log.append(("put", i))

    loop.spawn(producer)
    loop.sleep(0)
    assert log == []  # nobody took anything: put is still waiting
    assert [ch.get() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Empty):
        ch.get(timeout=0.01)
    with pytest.raises(Full):
        ch.put_nowait(1)


def test_channel_put_returns_only_once_a_getter_took_the_item():
    ch = Channel()
    log = []
    g = loop.spawn(lambda: log.append(("got", ch.get())))
    loop.sleep(0)
    ch.put("a")
    log.append("put returned")
    assert log == [("got", "a"), "put returned"]
    assert g.dead and ch.balance == 0


def test_channel_item_goes_to_next_getter_when_woken_getter_is_killed():
    ch = Channel()
    g1 = loop.spawn(ch.get)
    g2 = loop.spawn(ch.get)
    loop.sleep(0)
    g1.kill(block=False)  # queued before the hand-off below: g1 dies before it runs again
    ch.put("x")           # wakes g1 first; the item must still reach g2
    g2.join(timeout=1)
    assert g1.dead and isinstance(g1.value, loop.GreenletExit)
    assert g2.value == "x"
    assert ch.balance == 0


def test_channel_put_waits_for_a_getter_that_really_takes_the_item():
    ch = Channel()
    g1 = loop.spawn(ch.get)
    loop.sleep(0)
    g1.kill(block=False)
    with pytest.raises(Full):  # the only getter died before taking it: nobody received it
        ch.put("lost?", timeout=0.05)
    assert g1.dead and ch.balance == 0
    with pytest.raises(Empty):
        ch.get_nowait()

    # A blocked put is taken by a getter that comes later.
    g1 = loop.spawn(ch.get)
    loop.sleep(0)
    g1.kill(block=False)
    done = []
    p = loop.spawn(lambda: (ch.put("y"), done.append("put returned")))
    loop.sleep(0.01)
    assert g1.dead and not done and ch.balance == 1
    assert ch.get(timeout=1) == "y"
    p.join(timeout=1)
    assert done == ["put returned"]


def test_channel_timed_out_getter_after_hand_off():
    # A Timeout is delivered like a kill: raised where the getter waits, from the hub.
    ch = Channel()
    g1 = loop.spawn(ch.get)
    g2 = loop.spawn(ch.get, timeout=1)
    loop.sleep(0)
    hub = loop.get_hub()
    hub.run_callback(hub.interrupt, g1, Timeout(0))
    ch.put("t")
    loop.joinall([g1, g2], timeout=1)
    assert isinstance(g1.exception, Timeout)
    assert g2.value == "t"


def test_channel_put_nowait_item_kept_for_next_getter():
    ch = Channel()
    with pytest.raises(Full):
        ch.put_nowait(0)  # nobody waiting
    g1 = loop.spawn(ch.get)
    loop.sleep(0)
    g1.kill(block=False)
    ch.put_nowait("z")  # accepted: a getter was waiting
    loop.sleep(0.01)
    assert g1.dead
    assert ch.get_nowait() == "z"  # not lost: kept for the next getter
    # from a hub callback (which cannot wait), put hands over without waiting
    g = loop.spawn(ch.get)
    loop.sleep(0)
    loop.get_hub().run_callback(ch.put, "from hub")
    assert g.get(timeout=1) == "from hub"


def test_channel_getter_timeout_and_putter_kill():
    ch = Channel()
    with pytest.raises(Empty):
        ch.get(timeout=0.01)
    p = loop.spawn(ch.put, "k")
    loop.sleep(0)
    assert ch.balance == 1
    p.kill()
    assert ch.balance == 0
    with pytest.raises(Empty):
        ch.get_nowait()


@pytest.mark.parametrize("method", ["get", "peek"])
@pytest.mark.parametrize("kind", [Queue, LifoQueue, PriorityQueue, SimpleQueue])
def test_queue_item_not_lost_when_woken_getter_is_killed(kind, method):
    q = kind()
    g1 = loop.spawn(getattr(q, method))
    g2 = loop.spawn(q.get)
    loop.sleep(0)
    g1.kill(block=False)
    q.put(1)  # wakes g1, which dies before it runs: g2 must get the item
    g2.join(timeout=1)
    assert g1.dead and isinstance(g1.value, loop.GreenletExit)
    assert g2.value == 1 and q.qsize() == 0
    if isinstance(q, Queue):
        assert q.unfinished_tasks == 1
        q.task_done()
        assert q.join(timeout=1)


def test_queue_peek_passes_item_on_and_killed_putter_passes_its_turn():
    q = JoinableQueue()
    g1 = loop.spawn(q.peek)
    g2 = loop.spawn(q.peek)
    g3 = loop.spawn(q.get)
    loop.sleep(0)
    g1.kill(block=False)
    q.put(2)
    loop.joinall([g2, g3], timeout=1)
    assert (g2.value, g3.value) == (2, 2)
    # full queue: a putter woken by get() and killed before it runs hands its turn on
    q = Queue(1)
    q.put(0)
    p1 = loop.spawn(q.put, 1)
    p2 = loop.spawn(q.put, 2)
    loop.sleep(0)
    p1.kill(block=False)
    assert q.get() == 0
    p2.join(timeout=1)
    assert p2.successful() and q.get_nowait() == 2 and q.qsize() == 0


# -- local --------------------------------------------------------------------------------------


def test_local_is_per_green_thread():
    data = local()
    data.x = "main"

    def worker(n):
        assert not hasattr(data, "x")
        data.x = n
        loop.sleep(0)
        return data.x

    gs = [loop.spawn(worker, i) for i in range(5)]
    assert [g.get() for g in gs] == list(range(5))
    assert data.x == "main"


def test_local_subclass_init_runs_per_green_thread_and_cleanup():
    class Counter(local):
        def __init__(self, start):
            self.n = start

    c = Counter(10)
    assert loop.spawn(lambda: c.n).get() == 10
    import gc
    gs = [loop.spawn(lambda: setattr(c, "n", 1)) for _ in range(20)]
    loop.joinall(gs)
    del gs
    gc.collect()
    assert len(object.__getattribute__(c, "_local__impl").dicts) < 5


# -- Timeout ------------------------------------------------------------------------------------


def test_timeout_context_manager_raises_itself():
    with pytest.raises(Timeout) as info:
        with Timeout(0.01) as t:
            loop.sleep(1)
    assert info.value is t


def test_timeout_silent_and_none():
    start = time.monotonic()
    with Timeout(0.01, False):
        loop.sleep(1)
    assert time.monotonic() - start < 0.5
    with Timeout(None):
        loop.sleep(0.01)


def test_timeout_custom_exception():
    with pytest.raises(KeyError):
        with Timeout(0.01, KeyError("slow")):
            loop.sleep(1)
    with pytest.raises(ValueError):
        with Timeout(0.01, ValueError):
            loop.sleep(1)


def test_nested_timeouts():
    with pytest.raises(Timeout) as info:
        with Timeout(0.02) as outer:
            with Timeout(1):
                loop.sleep(1)
    assert info.value is outer
    with Timeout(1):
        with pytest.raises(Timeout):
            with Timeout(0.01):
                loop.sleep(1)
        loop.sleep(0.02)


def test_timeout_start_cancel():
    t = Timeout(0.01)
    t.start()
    assert t.pending
    t.cancel()
    assert not t.pending
    loop.sleep(0.02)  # cancelled: nothing raised
    t2 = Timeout.start_new(0.01)
    with pytest.raises(Timeout):
        loop.sleep(1)
    assert not t2.pending
    assert loop.get_hub().wakeup_sources == 0


def test_timeout_interrupts_queue_get_without_losing_items():
    q = Queue()
    with pytest.raises(Timeout):
        with Timeout(0.01):
            q.get()
    q.put(1)
    assert q.get(timeout=1) == 1


def _run_script(code, env_extra=None, timeout=60):
    return run_python(code, env_extra, timeout)


@pytest.mark.parametrize("patch_first", [False, True])
def test_local_lock_stays_real_under_patch_all(patch_first):
    r = _run_script("""
        import _thread, sys
        real_rlock = _thread.RLock
        if %r:
            from loop import monkey; monkey.patch_all()
            import loop.local
        else:
            import loop.local
            from loop import monkey; monkey.patch_all()
        import threading
        assert _thread.RLock is not real_rlock  # patched
        for obj in (loop.local.local(), threading.local(), _thread._local()):
            lock = object.__getattribute__(obj, "_local__impl").lock
            assert type(lock) is type(real_rlock()), type(lock)

        class Slow(threading.local):
            def __init__(self):
                import time
                time.sleep(0.01)  # green: switches while the local's lock is held
                self.who = threading.get_ident()
        data = Slow()
        results = []
        def worker():
            results.append(data.who == threading.get_ident())
        threads = [threading.Thread(target=worker) for _ in range(5)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("ok", results)
    """ % (patch_first,))
    assert r.returncode == 0, r.stderr
    assert "ok [True, True, True, True, True]" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_unref_timers_do_not_keep_loop_exit_away(backend):
    # The stdlib loop's timer heap holds the hub's own timers too; ref=False ones (Hub.join's
    # timeout, sleep(ref=False)) must not count as pending work there.
    r = _run_script("""
        import time, loop
        from loop.event import Event
        loop.spawn(Event().wait, timeout=0.01).join()
        start = time.monotonic()
        idle = loop.get_hub().join(timeout=5)
        g = loop.spawn(loop.sleep, 5, ref=False)
        try:
            loop.sleep(0)
            Event().wait()
        except loop.LoopExit:
            print("ok", idle, time.monotonic() - start < 2)
    """, {"LOOP_BACKEND": backend})
    assert "ok True True" in r.stdout, r.stdout + r.stderr


def test_dummy_threads_of_green_threads_clean_up_before_exit():
    # 3.13 removes a dummy Thread through a thread-local: for a green thread still referenced
    # at exit, that must happen before threading's globals are torn down.
    r = _run_script("""
        from loop import monkey; monkey.patch_all()
        import threading, loop
        g = loop.spawn(threading.current_thread)
        g.join()
        print("ok", type(g.value).__name__)
    """)
    assert r.returncode == 0 and "ok _DummyThread" in r.stdout, r.stdout + r.stderr
    assert "Exception ignored" not in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore", "Lock"])
def test_semaphore_held_by_a_green_thread_is_waited_for_by_another_os_thread(kind):
    # The other OS thread's hub has nothing else to run: its wait is still not a deadlock,
    # since the holder lives in this thread and will release.
    import threading
    import loop.lock
    sem = getattr(loop.lock, kind)()
    sem.acquire()
    got = []
    # no timeout: a timer would be a wake-up source of that hub and hide the question
    thread = threading.Thread(target=lambda: got.append(sem.acquire()), daemon=True)
    thread.start()
    loop.sleep(0.1)
    sem.release()
    thread.join(10)
    assert got == [True]


def test_deadlock_among_the_green_threads_of_one_os_thread_is_still_a_loop_exit():
    import loop.lock
    sem = loop.lock.Semaphore(0)
    with pytest.raises(loop.LoopExit):
        sem.acquire()


def test_a_semaphore_can_be_waited_for_like_a_green_thread():
    free, taken = Semaphore(), Semaphore(0)
    assert loop.wait([taken, free], count=1) == [free]
    g = loop.spawn_later(0.01, taken.release)
    with loop.iwait([taken]) as ready:
        assert next(ready) is taken
        assert taken.linkcount() == 1       # linked until the iteration ends
    assert taken.linkcount() == 0
    g.join()


def test_semaphore_links_run_when_a_permit_is_free_and_take_none():
    sem = Semaphore(0)
    seen = []
    sem.rawlink(seen.append)
    loop.sleep(0.01)
    assert seen == []                       # no permit: not called
    sem.release()
    sem.release()                           # one run for both releases
    loop.sleep(0.01)
    assert seen == [sem] and sem.counter == 2
    sem.unlink(seen.append)
    sem.acquire()
    sem.release()
    loop.sleep(0.01)
    assert seen == [sem] and sem.linkcount() == 0


def test_a_release_handed_to_a_waiter_leaves_links_waiting():
    sem = Semaphore(0)
    seen = []
    sem.rawlink(seen.append)
    waiter = loop.spawn(sem.acquire)
    loop.sleep(0)
    sem.release()                           # goes to the waiting green thread
    waiter.join()
    loop.sleep(0.01)
    assert seen == []
    sem.release()
    loop.sleep(0.01)
    assert seen == [sem]
    sem.unlink(seen.append)


def test_semaphore_rawlink_refuses_what_cannot_be_called():
    with pytest.raises(TypeError):
        Semaphore().rawlink(42)


def test_semaphore_links_run_in_the_first_hub_turn_after_the_release():
    # gevent's users wait a millisecond for them; one turn of the hub must be enough
    sem = Semaphore(0)
    seen = []
    sem.rawlink(lambda s: seen.append("a"))
    sem.release()
    loop.get_hub().loop.call_soon(seen.append, "loop turned")
    loop.sleep(0)
    loop.sleep(0)
    assert seen[:1] == ["a"], seen
    sem.unlink(seen.append)
