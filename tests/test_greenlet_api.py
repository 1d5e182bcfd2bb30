"""Greenlet and the module-level green API (gevent's names and semantics)."""
import contextvars

import pytest

import loop
from loop import Greenlet, GreenletExit, Timeout
from loop.event import AsyncResult, Event


def test_spawn_get_value():
    g = loop.spawn(lambda a, b=0: a + b, 1, b=2)
    assert g.get() == 3
    assert g.ready() and g.successful() and g.value == 3 and g.exception is None
    assert g.dead and not g


def test_exception_is_stored_and_raised_by_get(capsys):
    def fail():
        raise KeyError("k")

    g = loop.spawn(fail)
    g.join()
    assert not g.successful() and isinstance(g.exception, KeyError)
    assert g.exc_info[0] is KeyError
    with pytest.raises(KeyError):
        g.get()
    capsys.readouterr()


def test_getcurrent_is_the_greenlet_and_name():
    g = loop.spawn(loop.getcurrent)
    assert g.get() is g
    assert g.name.startswith("Greenlet-")
    g.name = "worker"
    assert "worker" in repr(g)


def test_subclass_with_run_method():
    class Doubler(Greenlet):
        def __init__(self, x):
            Greenlet.__init__(self)
            self.x2 = None
            self.x = x

        def _run(self):
            return self.x * 2

    class WithAttrs(Doubler):
        pass

    g = WithAttrs(21)
    g.start()
    assert g.get() == 42
    assert Greenlet.spawn(lambda: 7).get() == 7


def test_start_later_and_spawn_later():
    out = []
    g = loop.spawn_later(0.02, out.append, 1)
    assert not g.ready()
    g.join()
    assert out == [1]
    g2 = Greenlet(out.append, 2)
    g2.start_later(0.01)
    g2.join()
    assert out == [1, 2]


def test_join_timeout_and_get_timeout():
    g = loop.spawn(loop.sleep, 1)
    g.join(timeout=0.01)
    assert not g.ready()
    with pytest.raises(Timeout):
        g.get(timeout=0.01)
    with pytest.raises(Timeout):
        g.get(block=False)
    g.kill()


def test_kill_runs_finally_and_counts_as_success():
    cleaned = []

    def worker():
        try:
            loop.sleep(10)
        finally:
            cleaned.append(True)

    g = loop.spawn(worker)
    loop.sleep(0)
    g.kill()
    assert cleaned == [True]
    assert g.dead and g.successful() and isinstance(g.value, GreenletExit)


def test_kill_with_custom_exception_and_before_start():
    g = loop.spawn(loop.sleep, 10)
    loop.sleep(0)
    g.kill(ValueError("stop"))
    assert isinstance(g.exception, ValueError)

    ran = []
    g2 = loop.spawn(ran.append, 1)
    g2.kill()
    assert g2.dead and not ran
    loop.sleep(0)
    assert not ran


def test_kill_no_block_then_join():
    g = loop.spawn(loop.sleep, 10)
    loop.sleep(0)
    g.kill(block=False)
    assert not g.dead
    g.join()
    assert g.dead


def test_throw_from_hub_callback():
    g = loop.spawn(loop.sleep, 10)
    loop.sleep(0)
    loop.get_hub().loop.call_soon(g.throw, RuntimeError("thrown"))
    g.join()
    assert isinstance(g.exception, RuntimeError)


def test_links():
    seen = []
    g = loop.spawn(lambda: 5)
    g.rawlink(lambda src: seen.append(("raw", src.value)))
    g.link(lambda src: seen.append(("link", loop.getcurrent() is not loop.get_hub().fiber)))
    g.link_value(lambda src: seen.append("value"))
    g.link_exception(lambda src: seen.append("exception"))
    g.join()
    loop.sleep(0.01)
    assert ("raw", 5) in seen and ("link", True) in seen and "value" in seen
    assert "exception" not in seen


def test_link_exception_and_unlink(capsys):
    seen = []

    def cb(src):
        seen.append("cb")

    g = loop.spawn(lambda: 1 / 0)
    g.link_exception(lambda src: seen.append(type(src.exception).__name__))
    g.rawlink(cb)
    g.unlink(cb)
    g.join()
    loop.sleep(0.01)
    assert seen == ["ZeroDivisionError"]
    capsys.readouterr()


def test_link_to_finished_greenlet_fires():
    g = loop.spawn(lambda: 1)
    g.join()
    seen = []
    g.rawlink(lambda src: seen.append(src))
    loop.sleep(0.01)
    assert seen == [g]


@pytest.mark.parametrize("kind", ["greenlet", "event", "async_result"])
def test_rawlinks_run_in_the_hub_once_with_errors_reported(kind, monkeypatch):
    """Greenlet and Event/AsyncResult share link notification (loop._core.links): direct links
    (Waiters) fire at once, others later in one hub callback, a failing one is reported and
    does not stop the rest."""
    hub = loop.get_hub()
    reported = []
    monkeypatch.setattr(hub, "print_exception",
                        lambda context, t, v, tb: reported.append((context, t)))
    calls = []

    def bad(src):
        calls.append("bad")
        raise ValueError("link failed")

    def good(src):
        calls.append(("good", loop.getcurrent() is hub.fiber))

    if kind == "greenlet":
        source = Greenlet(lambda: None)
        make_ready = source.start
    else:
        source = Event() if kind == "event" else AsyncResult()
        make_ready = source.set
    with pytest.raises(TypeError):
        source.rawlink(42)
    source.rawlink(bad)
    source.rawlink(good)
    source.rawlink(good)
    source.unlink(good)  # removes both
    source.rawlink(good)
    make_ready()
    assert calls == []  # not from inside set()/the finishing green thread
    loop.sleep(0.01)
    assert calls == ["bad", ("good", True)]
    assert reported == [((bad, source), ValueError)]
    # linking a source that is ready already: called soon, in the hub
    source.rawlink(good)
    assert calls == ["bad", ("good", True)]
    loop.sleep(0.01)
    assert calls[-1] == ("good", True)


def test_link_async_result():
    result = AsyncResult()
    g = loop.spawn(lambda: "v")
    g.rawlink(result)
    assert result.get(timeout=1) == "v"


def test_joinall_wait_iwait():
    gs = [loop.spawn(loop.sleep, d) for d in (0.03, 0.01, 0.02)]
    order = list(loop.iwait(gs))
    assert order == [gs[1], gs[2], gs[0]]
    gs = [loop.spawn(loop.sleep, d) for d in (0.01, 1)]
    done = loop.joinall(gs, timeout=0.2)
    assert done == [gs[0]]
    assert loop.wait(gs, count=1) == [gs[0]]
    loop.killall(gs)
    assert all(g.dead for g in gs)


def test_joinall_raise_error(capsys):
    gs = [loop.spawn(loop.sleep, 1), loop.spawn(lambda: 1 / 0)]
    with pytest.raises(ZeroDivisionError):
        loop.joinall(gs, raise_error=True)
    loop.killall(gs)
    capsys.readouterr()


def test_wait_on_mixed_objects():
    ev = Event()
    g = loop.spawn(loop.sleep, 0.01)
    loop.spawn_later(0.02, ev.set)
    assert set(loop.wait([ev, g])) == {ev, g}


def test_with_timeout():
    assert loop.with_timeout(0.01, loop.sleep, 1, timeout_value="late") == "late"
    with pytest.raises(Timeout):
        loop.with_timeout(0.01, loop.sleep, 1)
    assert loop.with_timeout(1, lambda: "fast") == "fast"


def test_spawn_raw():
    out = []
    f = loop.spawn_raw(out.append, 1)
    loop.sleep(0)
    assert out == [1] and f.dead


def test_contextvars_copied_from_spawner():
    var = contextvars.ContextVar("var", default="unset")
    var.set("parent")

    def child():
        before = var.get()
        var.set("child")
        return before, var.get()

    assert loop.spawn(child).get() == ("parent", "child")
    assert var.get() == "parent"

    def grandparent():
        var.set("gp")
        return loop.spawn(var.get).get()

    assert loop.spawn(grandparent).get() == "gp"


def test_many_green_threads_join():
    gs = [loop.spawn(lambda i=i: i) for i in range(2000)]
    loop.joinall(gs)
    assert [g.value for g in gs] == list(range(2000))


def test_kill_module_function_on_raw_fiber():
    f = loop.spawn_raw(loop.sleep, 10)
    loop.sleep(0)
    loop.kill(f)
    loop.sleep(0)
    assert f.dead
