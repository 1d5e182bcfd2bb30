"""threadpool.ThreadPool: real threads whose results wake green threads."""
import threading
import time

import pytest

import loop
from loop.threadpool import ThreadPool


def test_apply_runs_in_real_thread():
    pool = ThreadPool(2)
    ident = pool.apply(threading.get_ident)
    assert ident != threading.get_ident()
    pool.kill()


def test_blocking_calls_do_not_block_other_green_threads():
    pool = ThreadPool(4)
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            loop.sleep(0.01)

    t = loop.spawn(ticker)
    start = time.monotonic()
    results = [pool.spawn(time.sleep, 0.1) for _ in range(4)]
    loop.wait(results)
    assert time.monotonic() - start < 1.0  # ran in parallel
    t.join()
    assert len(ticks) == 5
    pool.kill()


def test_exceptions_are_delivered():
    pool = ThreadPool(1)
    with pytest.raises(ZeroDivisionError):
        pool.apply(lambda: 1 / 0)
    pool.kill()


def test_map_imap_and_join():
    pool = ThreadPool(3)
    assert pool.map(lambda x: x * x, range(6)) == [0, 1, 4, 9, 16, 25]
    assert sorted(pool.imap_unordered(lambda x: -x, range(3))) == [-2, -1, 0]
    for _ in range(5):
        pool.spawn(time.sleep, 0.01)
    assert pool.join(timeout=5)
    assert pool.size <= 3
    pool.kill()


def test_no_loop_exit_while_job_runs():
    pool = ThreadPool(1)
    assert pool.spawn(lambda: (time.sleep(0.1), "done")[1]).get() == "done"
    pool.kill()


def test_results_wake_green_threads_of_other_os_threads():
    pool = ThreadPool(2)
    out = []

    def in_other_thread():
        def green():
            return pool.apply(lambda: threading.get_ident())
        out.append(loop.spawn(green).get())

    threads = [threading.Thread(target=in_other_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(out) == 3
    pool.kill()


def test_hub_threadpool_property():
    hub = loop.get_hub()
    assert hub.threadpool is hub.threadpool
    assert hub.threadpool.apply(lambda: 3) == 3
