"""gevent's public names that a port imports: loop.hub, loop.events, loop.fileobject,
loop.baseserver, loop.backdoor, and the gevent behaviours of the existing modules that gevent's
own test suite relies on (tests/peers/run_gevent_suite.py runs that suite)."""
import importlib
import copy
import os
import sys
import tempfile
import weakref

import pytest

import loop
import loop.hub
from loop.event import AsyncResult, Event
from loop.pool import Group, Pool, PoolFull
from loop.queue import Channel, Queue
from script_helpers import run_python

pytestmark = pytest.mark.timeout(60)

# -- loop.hub ----------------------------------------------------------------------------------

def test_hub_module_has_gevents_names():
    for name in ("Hub", "Waiter", "get_hub", "sleep", "kill", "spawn_raw", "getcurrent",
                 "LoopExit", "GreenletExit", "reinit", "signal", "set_default_hub_class",
                 "get_hub_class"):
        assert hasattr(loop.hub, name), name
    assert issubclass(loop.hub.Hub, importlib.import_module("loop._core.hub").Hub)
    assert loop.hub.Hub.SYSTEM_ERROR == (KeyboardInterrupt, SystemExit, SystemError)
    assert loop.hub.Hub.NOT_ERROR == (loop.GreenletExit, SystemExit)


def test_hub_error_conventions_in_a_fresh_process():
    # A subclass decides what is printed (NOT_ERROR), what reaches the main green thread
    # (SYSTEM_ERROR, or no context at all), and where printing goes (exception_stream).
    proc = run_python("""
        import io, sys
        import loop
        from loop.hub import Hub, GreenletExit

        class Quiet(Hub):
            NOT_ERROR = Hub.NOT_ERROR + (LookupError,)
            stream = io.StringIO()
            @property
            def exception_stream(self):
                return self.stream

        hub = Quiet()
        hub.handle_error("ctx", KeyError, KeyError("k"), None)
        assert Quiet.stream.getvalue() == "", Quiet.stream.getvalue()
        hub.handle_error("ctx", ValueError, ValueError("v"), None)
        assert "ValueError: v" in Quiet.stream.getvalue()
        assert "'ctx' failed with ValueError" in Quiet.stream.getvalue()
        for exc_type, context in ((SystemError, "ctx"), (RuntimeError, None)):
            try:
                hub.handle_error(context, exc_type, None, None)
            except exc_type:
                pass
            else:
                raise AssertionError("%s was not raised in the main green thread" % exc_type)
        hub.handle_error("ctx", GreenletExit, GreenletExit(), None)
        assert "GreenletExit" not in Quiet.stream.getvalue()
        assert hub.parent is hub.main
        assert abs(hub.loop.now() - hub.loop.time()) < 1
        hub.loop.update_now()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_set_default_hub_class_is_used_by_get_hub():
    proc = run_python("""
        import loop, loop.hub
        class Mine(loop.hub.Hub):
            pass
        loop.hub.set_default_hub_class(Mine)
        assert type(loop.get_hub()) is Mine
        assert loop.hub.get_hub_class() is Mine
        try:
            loop.hub.set_default_hub_class(object)
        except TypeError:
            print("ok")
    """)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_hub_loop_run_callback_and_timer():
    hub = loop.get_hub()
    calls = []
    handle = hub.loop.run_callback(calls.append, 1)
    cancelled = hub.loop.run_callback(calls.append, 2)
    assert handle.pending
    cancelled.stop()
    loop.sleep(0)
    assert calls == [1] and not handle.pending

    timer = hub.loop.timer(0.01, 0.01)
    timer.start(calls.append, "tick")
    assert timer.active
    loop.sleep(0.1)
    timer.stop()
    ticks = calls.count("tick")
    assert ticks >= 2
    loop.sleep(0.05)
    assert calls.count("tick") == ticks and not timer.active


def test_waiter_with_gevents_names():
    waiter = loop.hub.Waiter()
    timer = loop.get_hub().loop.timer(0.01)
    timer.start(waiter.switch, "value")  # switched to from the hub
    assert waiter.get() == "value"
    assert waiter.ready() and waiter.successful()

    waiter = loop.hub.Waiter()
    loop.spawn(waiter.throw, KeyError, "boom")
    with pytest.raises(KeyError):
        waiter.get()

    waiter = loop.hub.Waiter()
    waiter.switch(5)  # before anybody waits: kept
    assert waiter.get() == 5


def test_exceptions_and_switch_interval():
    from loop.exceptions import HubDestroyed
    assert issubclass(HubDestroyed, loop.GreenletExit)
    assert loop.getswitchinterval() == sys.getswitchinterval()
    assert loop.setswitchinterval is sys.setswitchinterval


# -- Timeout -----------------------------------------------------------------------------------

def _put_into_full_queue(timeout):
    queue = Queue(1)
    queue.put(1)
    queue.put(2, timeout=timeout)


def _wait_for_greenlet(method):
    def wait(timeout):
        g = loop.spawn(loop.sleep, 5)
        try:
            getattr(g, method)(timeout=timeout)
        finally:
            g.kill()
    return wait


def test_timeout_object_as_the_timeout_of_waits():
    waits = [lambda t: Event().wait(timeout=t), lambda t: AsyncResult().get(timeout=t),
             lambda t: Queue().get(timeout=t), lambda t: Channel().get(timeout=t),
             _put_into_full_queue, lambda t: Channel().put(1, timeout=t),
             _wait_for_greenlet("get"), _wait_for_greenlet("join")]
    for wait in waits:
        timeout = loop.Timeout(0.01)
        with pytest.raises(loop.Timeout) as caught:
            wait(timeout)
        assert caught.value is timeout
        assert not timeout.pending  # cancelled by the wait that started it


def test_timeout_exception_kinds():
    with pytest.raises(loop.Timeout) as caught:
        with loop.Timeout(0.01, "why"):
            loop.sleep(1)
    assert str(caught.value).endswith("why")
    for bad in (object(), type("NotAnException", (), {})):
        timeout = loop.Timeout.start_new(0.01, bad)
        try:
            with pytest.raises(TypeError, match="exceptions must be"):
                loop.sleep(1)
        finally:
            timeout.cancel()
    dummy = loop.Timeout._start_new_or_dummy(None)
    assert not dummy.pending
    dummy.cancel()


def test_timeout_ref_false_does_not_keep_the_hub_alive():
    proc = run_python("""
        import loop
        from loop.event import Event
        t = loop.Timeout.start_new(30, ref=False)
        try:
            Event().wait()
        except loop.LoopExit:
            print("loopexit")
    """)
    assert proc.stdout.strip() == "loopexit", proc.stderr


# -- greenlets, pools, events, queues, locals --------------------------------------------------

def test_greenlet_started_is_false_once_finished_and_context_manager():
    g = loop.spawn(lambda: 1)
    assert g.started
    g.join()
    assert not g.started and g.dead

    with loop.spawn(loop.sleep, 0.01) as g:
        pass
    assert g.dead and g.successful()

    with pytest.raises(KeyError):
        with loop.spawn(loop.sleep, 5) as g:
            raise KeyError("body")
    assert g.dead and isinstance(g.exception, KeyError)


def test_greenlet_kill_with_exc_info_tuple():
    g = loop.spawn(loop.sleep, 5)
    loop.sleep(0)
    g.kill((ValueError, ValueError("x"), None))
    assert isinstance(g.exception, ValueError)


def test_pool_slot_is_free_when_apply_returns():
    pool = Pool(1)
    assert pool.apply(lambda: 42) == 42
    assert pool.free_count() == 1
    g = pool.spawn(lambda: 1)
    g.join()
    assert pool.free_count() == 1 and len(pool) == 0


def test_pool_apply_async_never_blocks_and_callback_runs_before_the_getter():
    pool = Pool(1)
    results = []
    first = pool.apply_async(loop.sleep, (0.05,))
    second = pool.apply_async(lambda: 7, callback=results.append)  # pool full: not blocking
    assert second not in pool
    assert second.get() == 7 or second.value == 7
    loop.sleep(0)
    assert results == [7]
    first.join()

    pool = Pool(2)
    got = pool.apply_async(lambda: 49, callback=results.append)
    assert got.get() == 49
    assert results[-1] == 49  # the callback ran before get() returned here


def test_pool_start_with_timeout_and_group_kill_once():
    pool = Pool(1)
    pool.spawn(loop.sleep, 5)
    with pytest.raises(PoolFull):
        pool.start(loop.Greenlet(lambda: None), timeout=0.01)
    pool.kill()
    assert len(pool) == 0

    shots = []

    def undead():
        while True:
            try:
                loop.sleep(5)
            except loop.GreenletExit:
                shots.append(1)

    group = Group()
    g = group.spawn(undead)
    loop.sleep(0)
    group.kill(block=False)
    group.kill(block=False)
    loop.sleep(0.01)
    assert len(shots) == 1
    g.kill(KeyError, block=True)


def test_event_weakref_linkcount_and_repeated_get_traceback():
    event = Event()
    assert weakref.ref(event)() is event
    event.rawlink(lambda e: None)
    waiter = loop.spawn(event.wait)
    loop.sleep(0)
    assert event.linkcount() == 2
    event.set()
    waiter.join()

    result = AsyncResult()
    try:
        raise ValueError("x")
    except ValueError as exc:
        result.set_exception(exc)
    lengths = []
    for _ in range(3):
        try:
            result.get()
        except ValueError as exc:
            tb, n = exc.__traceback__, 0
            while tb is not None:
                n, tb = n + 1, tb.tb_next
            lengths.append(n)
    assert lengths == [lengths[0]] * 3


def test_queues_are_generic():
    for cls in (Queue, Channel, loop.queue.LifoQueue, loop.queue.PriorityQueue,
                loop.queue.SimpleQueue):
        assert cls[int].__origin__ is cls


def test_local_copy_has_its_own_attributes():
    from loop.local import local

    class WithSlots(local):
        __slots__ = ("kept",)

    a = WithSlots()
    a.kept = "slot"
    a.path = "123"
    b = copy.copy(a)
    assert (b.kept, b.path) == ("slot", "123")
    b.path = "321"
    assert a.path == "123"
    assert a.__dict__ is not b.__dict__


# -- modules standing in for gevent's ----------------------------------------------------------

def test_os_selectors_subprocess_baseserver_names():
    import loop.baseserver
    import loop.os
    import loop.selectors
    import loop.server
    import loop.subprocess
    from loop.fileobject import FileObject
    assert loop.os.pipe is os.pipe and loop.os.waitpid is not os.waitpid
    assert loop.selectors.GeventSelector is loop.selectors.GreenSelector
    assert loop.subprocess.FileObject is FileObject
    assert loop.baseserver.BaseServer is loop.server.StreamServer


def test_fileobject_posix_waits_on_the_hub():
    from loop.fileobject import FileObjectPosix
    r, w = os.pipe()
    reader = FileObjectPosix(r, "rb")
    writer = FileObjectPosix(w, "w", close=False)
    got = []
    g = loop.spawn(lambda: got.append(reader.readline()))
    loop.sleep(0.02)
    assert got == []  # waiting, and the hub still runs us
    writer.write("line\n")
    writer.flush()
    g.join(5)
    assert got == [b"line\n"]
    writer.close()
    os.write(w, b"still open\n")  # close=False left the descriptor alone
    os.close(w)
    assert reader.read() == b"still open\n"
    reader.close()
    with pytest.raises(OSError):
        os.fstat(r)


@pytest.mark.parametrize("mode", ["rb", "r", "wb"])
def test_fileobject_posix_closes_while_another_green_thread_is_parked_in_it(mode):
    # The parked call holds the buffer's lock (an OS-thread lock): the stdlib close() would
    # refuse with "reentrant call" and leave the descriptor open.
    from loop.fileobject import FileObjectPosix
    r, w = os.pipe()
    reading = "r" in mode
    ours, other = (r, w) if reading else (w, r)
    fileobj = FileObjectPosix(ours, mode)
    failures = []

    def park():
        try:
            if reading:
                fileobj.read()
            else:
                fileobj.write(b"x" * (4 << 20))  # far above the pipe's buffer: it parks
                fileobj.flush()
        except (OSError, ValueError) as exc:
            failures.append(exc)

    g = loop.spawn(park)
    loop.sleep(0.05)
    fileobj.close()
    g.join(5)
    assert g.dead and fileobj.closed and len(failures) == 1, failures
    with pytest.raises(OSError):
        os.fstat(ours)
    os.close(other)


def test_fileobject_thread_runs_blocking_calls_in_threads():
    from loop.fileobject import FileObjectThread
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.txt")
        with FileObjectThread(path, "w") as f:
            f.write("a\nb\n")
        with FileObjectThread(path, "r") as f:
            assert list(f) == ["a\n", "b\n"]
        assert f.closed


def test_backdoor_console_session():
    from loop.backdoor import BackdoorServer
    server = BackdoorServer(locals={"answer": 41}, banner="hello")
    server.start()
    assert server.address[0] == "127.0.0.1"
    import loop.socket as green_socket
    conn = green_socket.create_connection(server.address[:2])
    try:

        def read_prompt():
            data = b""
            while not data.endswith(b">>> "):
                chunk = conn.recv(4096)
                assert chunk, data
                data += chunk
            return data

        assert read_prompt().startswith(b"hello")
        conn.sendall(b"print(answer + 1)\n")
        assert read_prompt() == b"42\n>>> "
        conn.sendall(b"1/0\n")
        assert b"ZeroDivisionError" in read_prompt()
        conn.sendall(b"exit()\n")
        assert conn.recv(100) == b""  # the session ended, the process did not
        loop.sleep(0.01)
        assert not hasattr(sys.stdout, "sessions")  # the output router is gone again
    finally:
        conn.close()
        server.stop()


def test_backdoor_binds_loopback_for_a_port_or_empty_host():
    from loop.backdoor import BackdoorServer
    for listener in (0, ("", 0)):
        server = BackdoorServer(listener)
        server.start()
        try:
            assert server.address[0] == "127.0.0.1"
        finally:
            server.stop()


# -- events and monkey -------------------------------------------------------------------------

def test_patch_events_veto_and_saved():
    proc = run_python("""
        from loop import events, monkey
        seen = []
        kwargs = []
        def subscriber(event):
            seen.append(type(event).__name__)
            if isinstance(event, events.GeventWillPatchAllEvent):
                kwargs.append(event.patch_all_kwargs)
            if isinstance(event, events.GeventWillPatchModuleEvent) and \\
                    event.module_name == "ssl":
                raise events.DoNotPatch
        events.subscribers.append(subscriber)
        assert not monkey.is_anything_patched()
        monkey.patch_all(custom_plugin_option=1)
        assert seen[0] == "GeventWillPatchAllEvent", seen
        assert kwargs == [{"custom_plugin_option": 1}]
        assert seen[-2:] == ["GeventDidPatchBuiltinModulesEvent", "GeventDidPatchAllEvent"]
        assert "GeventDidPatchModuleEvent" in seen
        assert monkey.is_anything_patched()
        assert monkey.is_module_patched("socket") and not monkey.is_module_patched("ssl")
        assert "socket" in monkey.saved
        monkey.saved = {}
        assert not monkey.is_module_patched("socket") and monkey.saved == {}
        print("ok")
    """)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_patch_module_records_originals():
    proc = run_python("""
        import types
        from loop import monkey
        target = types.ModuleType("target_mod")
        target.f = lambda: "original"
        import sys; sys.modules["target_mod"] = target
        source = types.ModuleType("green_mod")
        source.f = lambda: "green"
        source.__implements__ = ["f"]
        monkey.patch_module(target, source)
        assert target.f() == "green"
        assert monkey.get_original("target_mod", "f")() == "original"
        assert monkey.is_object_patched("target_mod", "f")
        print("ok")
    """)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_fileobject_block_and_greenlet_module_helpers():
    from loop.fileobject import FileObjectBlock
    import loop.greenlet
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.bin")
        with FileObjectBlock(path, "wb") as f:
            f.write(b"xyz")
        with FileObjectBlock(path, "rb") as f:
            assert f.read() == b"xyz"
    g = loop.spawn(lambda: 3)
    assert loop.greenlet.joinall([g]) == [g] and g.value == 3
    h = loop.spawn(loop.sleep, 5)
    loop.greenlet.killall([h])
    assert h.dead


def test_greenlet_repr_in_gevents_format():
    def work(a, b=2):
        pass

    g = loop.Greenlet(work, 1, b="x")
    assert repr(g) == "<Greenlet at %#x: work(1, b='x')>" % id(g)
    g.name = "Foo"
    assert repr(g).startswith('<Greenlet "Foo" at ')

    class Sub(loop.Greenlet):
        pass

    assert repr(Sub()).endswith(": _run>")


def test_waiter_as_a_link_gets_the_value_or_the_exception():
    waiter = loop.hub.Waiter()
    loop.spawn(lambda: 6 * 7).rawlink(waiter)
    assert waiter.get() == 42
    waiter = loop.hub.Waiter()
    failing = loop.spawn(lambda: 1 / 0)
    failing.rawlink(waiter)
    with pytest.raises(ZeroDivisionError):
        waiter.get()
