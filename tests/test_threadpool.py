"""threadpool.ThreadPool: real threads whose results wake green threads."""
import threading
import time

import pytest

from script_helpers import run_python

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


# -- ThreadPoolExecutor and the hub's default executor -------------------------------------

def test_executor_futures_wait_only_the_calling_green_thread():
    from loop.threadpool import ThreadPoolExecutor
    executor = ThreadPoolExecutor(4)
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(1)
            loop.sleep(0.01)

    t = loop.spawn(ticker)
    futures = [executor.submit(time.sleep, 0.1) for _ in range(4)]
    start = time.monotonic()
    assert [f.result() for f in futures] == [None] * 4
    assert time.monotonic() - start < 0.35  # four 0.1 s sleeps ran side by side
    assert len(ticks) >= 3  # the ticker kept running while we waited
    assert list(executor.map(abs, [-1, -2, 3])) == [1, 2, 3]

    def boom():
        raise ValueError("boom")

    assert isinstance(executor.submit(boom).exception(), ValueError)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(abs, 1)
    t.join()


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_hub_default_executor_uses_real_threads_after_patch_thread(backend):
    r = run_python("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, time, loop
        real_sleep = loop.monkey.get_original("time", "sleep")
        import _thread
        async def on_hub():
            ev = asyncio.get_running_loop()
            start = time.monotonic()
            idents = await asyncio.gather(*[ev.run_in_executor(None, lambda: (real_sleep(0.2),
                                           _thread.get_ident())[1]) for _ in range(4)])
            return len(set(idents)), time.monotonic() - start
        distinct, elapsed = loop.await_(on_hub())
        print(distinct >= 2, elapsed < 0.7)
    """, {"LOOP_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]
