"""asyncio both ways on the hub's loop."""
import asyncio
import textwrap
import time

import pytest

from script_helpers import run_python

import loop
from loop.exceptions import BlockingSwitchOutError


def run_script(code, backend="asyncio"):
    return run_python(code, {"LOOP_BACKEND": backend})


def test_await_blocks_only_calling_green_thread():
    # The coroutine finishes only once another green thread has run three times while the
    # caller waits in await_ (no timing involved: a blocked hub would time out after 10 s).
    ticks = []
    three_ticks = asyncio.Event()

    def ticker():
        for _ in range(5):
            ticks.append(1)
            if len(ticks) == 3:
                three_ticks.set()
            loop.sleep(0.005)

    async def after_three_ticks():
        await asyncio.wait_for(three_ticks.wait(), 10)
        return "coro result"

    t = loop.spawn(ticker)
    assert loop.await_(after_three_ticks()) == "coro result"
    assert len(ticks) >= 3
    t.join()


def test_await_raises_and_accepts_futures():
    async def fail():
        raise KeyError("async")

    with pytest.raises(KeyError):
        loop.await_(fail())
    hub = loop.get_hub()
    fut = hub.loop.create_future()
    hub.loop.call_later(0.01, fut.set_result, 5)
    assert loop.await_(fut) == 5
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert loop.await_(ex.submit(lambda: "threaded")) == "threaded"


def test_timeout_cancels_awaited_task():
    cancelled = []

    async def forever():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(loop.Timeout):
        with loop.Timeout(0.02):
            loop.await_(forever())
    loop.sleep(0.01)
    assert cancelled == [True]


def test_asyncio_awaits_greenlet_and_run_green():
    def blocking_work(x):
        loop.sleep(0.01)
        return x * 3

    async def main():
        g = loop.spawn(blocking_work, 2)
        a = await g
        b = await loop.run_green(blocking_work, 5)
        return a, b

    assert loop.await_(main()) == (6, 15)


def test_cancelling_asyncio_task_kills_green_thread():
    def sleeper():
        loop.sleep(10)

    async def main():
        g = loop.spawn(sleeper)
        try:
            await asyncio.wait_for(g, 0.02)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.01)
        return g

    g = loop.await_(main())
    assert g.dead


def test_green_blocking_call_in_asyncio_code_raises():
    async def main():
        with pytest.raises(BlockingSwitchOutError):
            loop.sleep(0.01)
        with pytest.raises(BlockingSwitchOutError):
            loop.await_(asyncio.sleep(0))
        return True

    assert loop.await_(main())


def test_asyncio_run_in_green_thread_has_clear_message():
    loop.sleep(0)  # the hub runs this thread's event loop now

    async def noop():
        return 1

    def green():
        coro = noop()
        try:
            asyncio.run(coro)
        finally:
            coro.close()

    g = loop.spawn(green)
    g.join()
    assert isinstance(g.exception, RuntimeError)
    assert "loop.await_" in str(g.exception)


def test_concurrency_between_styles():
    async def async_sleep():
        await asyncio.sleep(0.1)

    start = time.monotonic()
    gs = [loop.spawn(loop.await_, async_sleep()) for _ in range(10)]
    gs += [loop.spawn(loop.sleep, 0.1) for _ in range(10)]
    loop.joinall(gs)
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_asyncio_program_adopts_loop(backend):
    r = run_script("""
        import asyncio, loop
        def green(x):
            loop.sleep(0.01)
            return loop.await_(asyncio.sleep(0.01, result=x + 1))
        async def main():
            results = await asyncio.gather(*[loop.run_green(green, i) for i in range(5)])
            assert loop.get_hub().adopted and loop.get_hub().loop is asyncio.get_running_loop()
            return results
        print(asyncio.run(main()))
    """, backend)
    assert r.returncode == 0, r.stderr
    assert "[1, 2, 3, 4, 5]" in r.stdout


# -- asyncio loops run by green code (loop._core.nesting) -----------------------------------------

@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_patched_program_may_call_asyncio_run_before_the_hub_starts(backend):
    r = run_script("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, threading, time
        ticks = []
        def worker():
            for i in range(5):
                time.sleep(0.01)
                ticks.append(i)
        before = asyncio.events._get_running_loop()  # None: the hub has not run yet
        t = threading.Thread(target=worker)
        t.start()  # waits for the thread to start: from now on the hub's loop runs
        async def main():
            await asyncio.sleep(0.15)
            got = await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)
            return list(ticks), got
        print(asyncio.run(main()))
        t.join()
        # the main green thread is not inside an event loop, before or after the run
        print(before is None, asyncio.events._get_running_loop() is None)
    """, backend)
    assert r.returncode == 0, r.stderr
    assert "([0, 1, 2, 3, 4], None)" in r.stdout
    assert r.stdout.split()[-2:] == ["True", "True"]


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_patched_green_threads_each_run_their_own_asyncio_loop(backend):
    r = run_script("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, time
        import loop
        loop.sleep(0)  # the hub runs this thread's event loop from now on
        hub_loop = loop.get_hub().loop
        async def nap(n):
            mine = asyncio.get_running_loop()
            await asyncio.sleep(0.3)
            assert asyncio.get_running_loop() is mine and mine is not hub_loop
            return n
        def green(n):
            result = asyncio.run(nap(n))
            assert asyncio.events._get_running_loop() is None  # green: no running loop
            return result
        async def on_hub():
            await asyncio.sleep(0.1)  # needs the hub's loop as running loop while nested run
            return asyncio.get_running_loop() is hub_loop
        start = time.monotonic()
        gs = [loop.spawn(green, n) for n in range(4)]
        on_hub_ok = loop.await_(on_hub())
        loop.joinall(gs, raise_error=True)
        elapsed = time.monotonic() - start
        print([g.value for g in gs], on_hub_ok, elapsed < 1.0)
    """, backend)
    assert r.returncode == 0, r.stderr
    assert "[0, 1, 2, 3] True True" in r.stdout


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_nested_loop_signal_handlers_are_delivered(backend):
    r = run_script("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, os, signal
        import loop
        loop.sleep(0)
        nested = asyncio.new_event_loop()
        got = []
        nested.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
        async def main():
            await asyncio.sleep(0.02)
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(200):
                if got:
                    return got
                await asyncio.sleep(0.01)
            return "lost"
        print(nested.run_until_complete(main()))
        nested.remove_signal_handler(signal.SIGUSR1)
        nested.close()
    """, backend)
    assert r.returncode == 0, r.stderr
    assert "['usr1']" in r.stdout


def test_uvloop_loop_in_green_thread_has_clear_message():
    uvloop = pytest.importorskip("uvloop")
    loop.sleep(0)

    async def noop():
        return 1

    def green():
        foreign = uvloop.new_event_loop()
        coro = noop()
        try:
            foreign.run_until_complete(coro)
        finally:
            coro.close()
            foreign.close()

    g = loop.spawn(green)
    g.join()
    assert isinstance(g.exception, RuntimeError)
    assert "uvloop" in str(g.exception) and "loop.await_" in str(g.exception)


def test_view_keeping_hook_goes_away_after_the_last_nested_loop():
    r = run_script("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, loop
        from loop._switch import gettrace
        loop.sleep(0)  # the hub runs; the main green thread still sees no running loop
        async def nap():
            await asyncio.sleep(0.01)
            return gettrace() is not None
        during = asyncio.run(nap())
        loop.sleep(0.01)
        print(during, gettrace() is None, asyncio.events._get_running_loop() is None)
    """, "uvloop")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]


def test_asyncio_run_as_first_call_of_a_patched_program_keeps_no_running_loop_after():
    r = run_script("""
        import loop.monkey; loop.monkey.patch_all()
        import asyncio, loop
        async def main():
            await asyncio.sleep(0.01)
            return asyncio.get_running_loop() is not loop.get_hub().loop
        print(asyncio.run(main()), asyncio.events._get_running_loop() is None)
        loop.sleep(0.01)  # the hub (started by the run) keeps working
        print(asyncio.events._get_running_loop() is None)
    """, "uvloop")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]


# -- green threads are not inside an event loop (Django's async_unsafe, asyncio.run) ----------

VIEW_CHECKS = """
import asyncio, socket, threading, loop
from django.utils.asyncio import async_unsafe

@async_unsafe
def orm_query():  # Django's guard: SynchronousOnlyOperation if a loop runs in this thread
    return "query ran"

def view():
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "get_running_loop() answered"
    if asyncio.events._get_running_loop() is not None:
        return "_get_running_loop() answered"
    return orm_query()

def after_each_wake():
    seen = [view()]
    loop.sleep(0)                     # resumed by a drain
    seen.append(view())
    loop.sleep(0.01)                  # resumed by a timer
    seen.append(view())
    a, b = socket.socketpair()
    loop.spawn_later(0.01, b.send, b"x")
    a.recv(1)                         # resumed by a readable fd
    seen.append(view())
    try:
        with loop.Timeout(0.01):      # resumed by an exception thrown from the hub
            loop.sleep(1)
    except loop.Timeout:
        seen.append(view())
    ev = loop.event.Event()
    threading.Thread(target=ev.set).start()
    ev.wait(5)                        # a wake from another OS thread (unpatched: real)
    seen.append(view())
    a.close(); b.close()
    return seen
"""


def with_view_checks(code):
    return ("import loop.monkey; loop.monkey.patch_all()\n"
            "import django; from django.conf import settings; settings.configure()\n"
            + VIEW_CHECKS + textwrap.dedent(code))


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_green_threads_see_no_running_asyncio_loop(backend):
    pytest.importorskip("django")
    r = run_script(with_view_checks("""
        print("main before the hub:", set(after_each_wake()))
        print("main:", set(after_each_wake()))
        print("green:", set(loop.spawn(after_each_wake).get()))
        async def on_the_hub():      # asyncio code still sees the hub's loop
            await asyncio.sleep(0)
            return asyncio.get_running_loop() is loop.get_hub().loop
        got = []
        loop.get_hub().loop.call_soon(lambda: got.append(
            asyncio.get_running_loop() is loop.get_hub().loop))
        print("asyncio:", loop.await_(on_the_hub()), got)
        print("await greenlet:", loop.await_(loop.run_green(view)))
    """), backend)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "main before the hub: {'query ran'}", "main: {'query ran'}",
        "green: {'query ran'}", "asyncio: True [True]", "await greenlet: query ran"]


@pytest.mark.parametrize("backend", ["asyncio", "uvloop"])
def test_wsgi_handler_sees_no_running_asyncio_loop(backend):
    pytest.importorskip("django")
    r = run_script(with_view_checks("""
        from loop.pywsgi import WSGIServer
        def app(environ, start_response):
            body = view().encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = WSGIServer(("127.0.0.1", 0), app, log=None)
        server.start()
        c = socket.create_connection(("127.0.0.1", server.server_port))
        c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        print(data.split(b"\\r\\n\\r\\n", 1)[1].decode())
        server.stop()
    """), backend)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "query ran"


def test_adopted_loop_green_threads_see_no_running_loop_and_keep_their_hub():
    r = run_script("""
        import asyncio, loop
        def green():
            hub = loop.get_hub()
            loop.sleep(0.01)
            return (asyncio.events._get_running_loop() is None, hub is loop.get_hub(),
                    hub.adopted)
        async def main():
            got = await loop.run_green(green)
            return got, asyncio.get_running_loop() is loop.get_hub().loop
        print(asyncio.run(main()))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "((True, True, True), True)"
