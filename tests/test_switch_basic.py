"""The fiber type's contract: values both ways, exceptions, parents, lifecycle, misuse."""
import gc
import sys
import threading
import weakref

import pytest

from loop._switch import Fiber, FiberError, FiberExit, getcurrent, gettrace, settrace


def test_getcurrent_is_stable_main_fiber():
    main = getcurrent()
    assert getcurrent() is main
    assert bool(main)
    assert not main.dead
    assert main.parent is None


def test_switch_passes_values_both_ways():
    main = getcurrent()
    seen = []

    def run(a, b=0):
        seen.append((a, b))
        seen.append(main.switch("first"))
        seen.append(main.switch())
        return "result"

    f = Fiber(run)
    assert f.switch(1, b=2) == "first"
    assert f.switch(10, 20) == ()
    assert f.switch(x=1) == "result"
    assert seen == [(1, 2), (10, 20), {"x": 1}]
    assert f.dead and not f


def test_switch_packing_rules():
    main = getcurrent()
    got = []

    def run():
        while True:
            got.append(main.switch())

    f = Fiber(run)
    f.switch()
    f.switch(1)
    f.switch(1, 2)
    f.switch(a=1)
    f.switch(1, a=2)
    f.switch()
    assert got == [1, (1, 2), {"a": 1}, ((1,), {"a": 2}), ()]
    f.throw()
    assert f.dead


def test_return_value_and_exception_go_to_parent():
    f = Fiber(lambda: 42)
    assert f.switch() == 42

    def boom():
        raise KeyError("k")

    g = Fiber(boom)
    with pytest.raises(KeyError):
        g.switch()
    assert g.dead


def test_fiberexit_ends_quietly_and_returns_instance():
    main = getcurrent()

    def run():
        main.switch()

    f = Fiber(run)
    f.switch()
    res = f.throw()
    assert isinstance(res, FiberExit)
    assert f.dead
    assert issubclass(FiberExit, BaseException)
    assert not issubclass(FiberExit, Exception)


def test_throw_forms_and_traceback():
    main = getcurrent()
    caught = []

    def run():
        while True:
            try:
                main.switch("waiting")
            except Exception as e:
                caught.append(e)

    f = Fiber(run)
    f.switch()
    f.throw(ValueError)
    f.throw(ValueError, "msg")
    f.throw(ValueError, ("a", "b"))
    inst = KeyError("x")
    f.throw(inst)
    try:
        raise IndexError("tb")
    except IndexError as e:
        tb = e.__traceback__
    f.throw(IndexError, IndexError("tb2"), tb)
    assert [type(e) for e in caught] == [ValueError, ValueError, ValueError, KeyError, IndexError]
    assert caught[1].args == ("msg",)
    assert caught[2].args == ("a", "b")
    assert caught[3] is inst
    with pytest.raises(TypeError):
        f.throw(inst, "value")
    with pytest.raises(TypeError):
        f.throw(42)
    with pytest.raises(TypeError):
        f.throw(ValueError, None, "not a traceback")
    f.throw()


def test_throw_into_unstarted_fiber_never_runs_it():
    ran = []
    f = Fiber(lambda: ran.append(1))
    res = f.throw()
    assert isinstance(res, FiberExit) and f.dead and ran == []
    g = Fiber(lambda: ran.append(1))
    with pytest.raises(ZeroDivisionError):
        g.throw(ZeroDivisionError)
    assert ran == []


def test_dead_fiber_switch_and_throw_raise():
    f = Fiber(lambda: None)
    f.switch()
    with pytest.raises(FiberError):
        f.switch()
    with pytest.raises(FiberError):
        f.throw(ValueError)


def test_throw_into_current_raises_here():
    with pytest.raises(ValueError):
        getcurrent().throw(ValueError)


def test_switch_to_self_returns_args():
    assert getcurrent().switch(5) == 5


def test_parent_rules():
    main = getcurrent()
    a = Fiber(lambda: "a")
    b = Fiber(lambda: "b", parent=a)
    assert b.parent is a and a.parent is main
    with pytest.raises(ValueError):
        a.parent = b               # cycle
    with pytest.raises(ValueError):
        a.parent = a
    with pytest.raises(TypeError):
        a.parent = object()
    with pytest.raises(AttributeError):
        del a.parent
    # b's result goes to a, which starts with it as argument
    received = []

    def run_a(x):
        received.append(x)
        return "from a"

    a.run = run_a
    assert b.switch() == "from a"
    assert received == ["b"]


def test_parent_in_other_thread_rejected():
    other = []
    t = threading.Thread(target=lambda: other.append(Fiber(lambda: None)))
    t.start()
    t.join()
    f = Fiber(lambda: None)
    with pytest.raises(ValueError):
        f.parent = other[0]


def test_switch_into_other_threads_fiber_raises():
    main = getcurrent()
    box = {}

    def in_thread():
        def run():
            main_t.switch()
        main_t = getcurrent()
        box["f"] = Fiber(run)
        box["f"].switch()
        box["main"] = main_t
        box["ready"].set()
        box["go"].wait()

    box["ready"] = threading.Event()
    box["go"] = threading.Event()
    t = threading.Thread(target=in_thread)
    t.start()
    box["ready"].wait()
    try:
        with pytest.raises(FiberError):
            box["f"].switch()
        with pytest.raises(FiberError):
            box["main"].switch()
        with pytest.raises(FiberError):
            Fiber.switch(box["f"])
    finally:
        box["go"].set()
        t.join()
    assert getcurrent() is main


def test_run_attribute_and_subclass():
    class Worker(Fiber):
        def run(self, x):
            return x * 2

    assert Worker().switch(21) == 42
    f = Fiber()
    with pytest.raises(AttributeError):
        f.run
    with pytest.raises(AttributeError):
        f.switch()
    f.run = lambda: "set later"
    assert f.switch() == "set later"
    with pytest.raises(AttributeError):
        f.run = lambda: None


def test_run_lookup_that_starts_fiber_is_rejected():
    main = getcurrent()

    class Sneaky(Fiber):
        @property
        def run(self):
            # starting the same fiber while its run is being looked up
            Fiber.run.__set__(self, lambda: main.switch("inner"))
            self.switch()
            return lambda: "outer"

    s = Sneaky()
    with pytest.raises(FiberError):
        s.switch()


def test_bool_and_dead_lifecycle():
    main = getcurrent()
    f = Fiber(lambda: main.switch())
    assert not f and not f.dead
    f.switch()
    assert f and not f.dead
    f.switch()
    assert not f and f.dead


def test_frame_of_suspended_fiber():
    main = getcurrent()

    def inner():
        main.switch()

    def outer():
        inner()

    f = Fiber(outer)
    assert f.frame is None
    f.switch()
    fr = f.frame
    assert fr.f_code.co_name == "inner"
    assert fr.f_back.f_code.co_name == "outer"
    assert fr.f_back.f_back is None
    assert getcurrent().frame is None      # the running fiber has no saved frame
    f.switch()
    assert f.frame is None
    # the frame object outlives the fiber and stays readable
    assert fr.f_code.co_name == "inner"


def test_context_attribute():
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    main = getcurrent()
    seen = []

    def run():
        seen.append(var.get())
        var.set("inside")
        main.switch()
        seen.append(var.get())

    f = Fiber(run)
    assert f.context is None
    f.switch()
    assert var.get() == "unset"
    assert f.context[var] == "inside"
    ctx = contextvars.Context()
    ctx.run(var.set, "replaced")
    f.context = ctx
    f.switch()
    assert seen == ["unset", "replaced"]
    g = Fiber(lambda: var.get())
    preset = contextvars.copy_context()
    preset.run(var.set, "preset")
    g.context = preset
    assert g.switch() == "preset"
    with pytest.raises(TypeError):
        g.context = {}
    with pytest.raises(ValueError):
        g.context = None   # finished


def test_settrace_sees_switches_and_throws():
    main = getcurrent()
    events = []

    def trace(event, args):
        origin, target = args
        events.append((event, origin, target))

    f = Fiber(lambda: main.switch())
    old = settrace(trace)
    try:
        assert gettrace() is trace
        f.switch()
        f.throw()
    finally:
        assert settrace(old) is trace
    assert gettrace() is old
    assert events[0] == ("switch", main, f)
    assert events[1] == ("switch", f, main)
    assert events[2] == ("throw", main, f)
    assert events[3][0] == "switch" and events[3][2] is main


def test_failing_trace_is_removed_and_error_propagates():
    def bad(event, args):
        raise RuntimeError("trace failed")

    f = Fiber(lambda: "never")
    settrace(bad)
    try:
        with pytest.raises(RuntimeError, match="trace failed"):
            f.switch()
    finally:
        assert gettrace() is None
        settrace(None)
    assert f.dead


def test_trace_runs_with_tracing_disabled():
    calls = []
    prev = sys.gettrace()

    def tracer(frame, event, arg):
        calls.append(frame.f_code.co_name)
        return tracer

    def hook(event, args):
        def inside_hook():
            return 1
        inside_hook()

    f = Fiber(lambda: None)
    settrace(hook)
    sys.settrace(tracer)
    try:
        f.switch()
    finally:
        sys.settrace(prev)
        settrace(None)
    assert "inside_hook" not in calls


def test_garbage_collected_suspended_fiber_runs_finally():
    main = getcurrent()
    log = []

    def run():
        try:
            main.switch()
        finally:
            log.append("finally")

    f = Fiber(run)
    f.switch()
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert log == ["finally"]
    assert ref() is None


def test_unstarted_and_finished_fibers_are_collectable_in_cycles():
    f = Fiber(lambda: None)
    f.cycle = f
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None


def test_many_switches_keep_state():
    main = getcurrent()
    fibers = []
    totals = {}

    def worker(n):
        total = 0
        for i in range(100):
            total += i * n
            main.switch()
        totals[n] = total

    for n in range(50):
        f = Fiber(worker)
        fibers.append(f)
        f.switch(n)
    while any(not f.dead for f in fibers):
        for f in fibers:
            if not f.dead:
                f.switch()
    assert totals == {n: sum(range(100)) * n for n in range(50)}


def test_greenlet_facade():
    from loop.compat import greenlet as gmod

    main = gmod.getcurrent()
    assert isinstance(main, gmod.greenlet)
    g = gmod.greenlet(lambda: main.switch("x"))
    assert g.switch() == "x"
    assert g.gr_frame is not None and g.gr_context is None
    g.switch()
    assert g.dead
    # greenlet rule: a dead greenlet forwards to its parent (here: ourselves)
    assert g.switch("to parent") == "to parent"
    assert issubclass(gmod.GreenletExit, BaseException)
    assert gmod.error is FiberError
    child = gmod.greenlet(lambda: 1)
    assert child.parent is main and child.gr_parent is main
