"""Interpreter state that must stay per fiber across switches, on every supported CPython."""
import contextvars
import json
import sys
import traceback

import pytest

from loop._switch import Fiber, getcurrent


def test_switch_inside_generator():
    main = getcurrent()

    def gen():
        for i in range(3):
            main.switch(("gen", i))
            yield i

    def run():
        return list(gen())

    f = Fiber(run)
    out = [f.switch()]
    while not f.dead:
        out.append(f.switch())
    assert out == [("gen", 0), ("gen", 1), ("gen", 2), [0, 1, 2]]


def test_generator_resumed_in_another_fiber():
    main = getcurrent()

    def gen():
        x = yield 1
        main.switch("paused in gen")
        yield x * 2

    g = gen()
    assert next(g) == 1
    f = Fiber(lambda: g.send(21))
    assert f.switch() == "paused in gen"
    assert f.switch() == 42


def test_exc_info_is_per_fiber():
    main = getcurrent()
    seen = {}

    def a():
        try:
            raise KeyError("a")
        except KeyError:
            main.switch()
            seen["a"] = sys.exc_info()[0]

    def b():
        try:
            raise ValueError("b")
        except ValueError:
            main.switch()
            seen["b"] = sys.exc_info()[0]

    fa, fb = Fiber(a), Fiber(b)
    fa.switch()
    assert sys.exc_info() == (None, None, None)
    fb.switch()
    try:
        raise IndexError("main")
    except IndexError:
        fa.switch()
        assert sys.exc_info()[0] is IndexError
        fb.switch()
        assert sys.exc_info()[0] is IndexError
    assert seen == {"a": KeyError, "b": ValueError}


def test_new_fiber_starts_with_clean_exception_state():
    try:
        raise OSError("outer")
    except OSError:
        assert Fiber(sys.exc_info).switch() == (None, None, None)


def test_exception_chaining_per_fiber():
    main = getcurrent()

    def run():
        try:
            raise KeyError("first")
        except KeyError:
            main.switch()
            raise ValueError("second")

    f = Fiber(run)
    f.switch()
    try:
        raise TypeError("unrelated in main")
    except TypeError:
        with pytest.raises(ValueError) as info:
            f.switch()
    assert isinstance(info.value.__context__, KeyError)


def test_try_finally_and_with_across_switches():
    main = getcurrent()
    log = []

    class CM:
        def __enter__(self):
            log.append("enter")
            main.switch("entered")

        def __exit__(self, *exc):
            log.append(("exit", exc[0]))
            main.switch("exiting")
            return True

    def run():
        try:
            with CM():
                main.switch("in body")
                raise RuntimeError("suppressed")
        finally:
            log.append("finally")
        return "done"

    f = Fiber(run)
    results = [f.switch()]
    while not f.dead:
        results.append(f.switch())
    assert results == ["entered", "in body", "exiting", "done"]
    assert log == ["enter", ("exit", RuntimeError), "finally"]


def test_contextvars_isolated_and_cache_invalidated():
    var = contextvars.ContextVar("v", default=0)
    main = getcurrent()

    def run(n):
        ctx_var_value = []
        var.set(n)
        for _ in range(3):
            main.switch()
            ctx_var_value.append(var.get())
        return ctx_var_value

    fibers = [Fiber(run) for _ in range(3)]
    for n, f in enumerate(fibers, 1):
        f.switch(n)
    var.set(100)
    results = {}
    while fibers:
        for f in list(fibers):
            assert var.get() == 100       # a stale ContextVar cache would show another fiber's value
            r = f.switch()
            if f.dead:
                results[id(f)] = r
                fibers.remove(f)
    assert sorted(map(tuple, results.values())) == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]


def test_context_run_inside_fiber():
    var = contextvars.ContextVar("w", default="d")
    main = getcurrent()
    ctx = contextvars.copy_context()

    def body():
        var.set("in ctx")
        main.switch()
        return var.get()

    f = Fiber(lambda: ctx.run(body))
    f.switch()
    assert var.get() == "d"
    assert f.switch() == "in ctx"


def test_settrace_across_switches_sees_fiber_frames():
    main = getcurrent()
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name in ("traced_a", "traced_b"):
            events.append((frame.f_code.co_name, event))
        return tracer

    def traced_a():
        main.switch()
        return 1

    def traced_b():
        return 2

    f = Fiber(traced_a)
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        f.switch()
        Fiber(traced_b).switch()
        f.switch()
    finally:
        sys.settrace(old)
    assert ("traced_a", "call") in events
    assert ("traced_a", "return") in events
    assert ("traced_b", "call") in events and ("traced_b", "return") in events


def test_settrace_set_inside_fiber_applies_after_switch():
    main = getcurrent()
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name == "later":
            events.append(event)
        return tracer

    def later():
        return 3

    def run():
        sys.settrace(tracer)
        main.switch()

    f = Fiber(run)
    old = sys.gettrace()
    try:
        f.switch()
        later()
    finally:
        sys.settrace(old)
    f.switch()
    assert "call" in events


def test_setprofile_across_switches():
    main = getcurrent()
    calls = []

    def prof(frame, event, arg):
        if event == "call" and frame.f_code.co_name.startswith("prof_"):
            calls.append(frame.f_code.co_name)

    def prof_fiber():
        main.switch()
        prof_after()

    def prof_after():
        pass

    f = Fiber(prof_fiber)
    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        f.switch()
        f.switch()
    finally:
        sys.setprofile(old)
    assert calls == ["prof_fiber", "prof_after"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_sys_monitoring_across_switches():
    mon = sys.monitoring
    tool = 3
    mon.use_tool_id(tool, "loop-test")
    starts = []
    main = getcurrent()

    def on_start(code, offset):
        if code.co_name.startswith("mon_"):
            starts.append(code.co_name)

    def mon_a():
        main.switch()
        mon_b()

    def mon_b():
        pass

    try:
        mon.register_callback(tool, mon.events.PY_START, on_start)
        mon.set_events(tool, mon.events.PY_START)
        f = Fiber(mon_a)
        f.switch()
        f.switch()
        g = Fiber(mon_b)
        g.switch()
    finally:
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.free_tool_id(tool)
    assert starts == ["mon_a", "mon_b", "mon_b"]


def test_traceback_and_f_back_of_suspended_fiber():
    main = getcurrent()

    def level3():
        main.switch()

    def level2():
        level3()

    def level1():
        level2()

    f = Fiber(level1)
    f.switch()
    names = []
    fr = f.frame
    while fr is not None:
        names.append(fr.f_code.co_name)
        fr = fr.f_back
    assert names == ["level3", "level2", "level1"]
    text = "".join(traceback.format_stack(f.frame))
    assert "level1" in text and "level3" in text
    assert "test_traceback_and_f_back" not in text     # the spawner is not part of the chain
    f.switch()


def test_current_frames_and_format_stack_with_suspended_fibers():
    main = getcurrent()

    def deep(n):
        if n:
            return deep(n - 1)
        main.switch()
        return [entry.name for entry in traceback.extract_stack()]

    fibers = [Fiber(deep) for _ in range(20)]
    for f in fibers:
        f.switch(30)
    frames = sys._current_frames()
    import threading
    me = frames[threading.get_ident()]
    assert me.f_code.co_name == "test_current_frames_and_format_stack_with_suspended_fibers"
    for f in fibers:
        stack = f.switch()
        assert stack.count("deep") == 31 and stack[0] == "deep"


def test_recursion_limit_inside_fiber():
    def recurse(n):
        return recurse(n + 1)

    def run():
        try:
            recurse(0)
        except RecursionError:
            return "RecursionError"

    assert Fiber(run).switch() == "RecursionError"


def test_recursion_depth_is_per_fiber_and_limit_changes_are_honoured():
    main = getcurrent()
    limit = sys.getrecursionlimit()

    def dig(n):
        if n == 0:
            main.switch()
            return 0
        return dig(n - 1)

    # a fiber parked deep in recursion does not eat the main fiber's budget
    f = Fiber(dig)
    f.switch(limit - 100)

    def count(n=0):
        try:
            return count(n + 1)
        except RecursionError:
            return n

    assert count() > limit - 200
    sys.setrecursionlimit(limit + 500)
    try:
        f.switch()
        g = Fiber(count)
        assert g.switch() > limit + 300
    finally:
        sys.setrecursionlimit(limit)


def _nested_list(depth):
    x = []
    for _ in range(depth):
        x = [x]
    return x


def _nested_dict(depth):
    x = {}
    for _ in range(depth):
        x = {"k": x}
    return x


@pytest.mark.parametrize("case", ["repr", "json", "json_dict", "pickle", "eq", "sorted_key"])
def test_deep_c_recursion_raises_or_works(case):
    import pickle

    def run():
        try:
            if case == "repr":
                repr(_nested_list(100_000))
            elif case == "json":
                json.dumps(_nested_list(100_000))
            elif case == "json_dict":
                json.dumps(_nested_dict(100_000))
            elif case == "pickle":
                pickle.dumps(_nested_list(100_000))
            elif case == "eq":
                _nested_list(100_000) == _nested_list(100_000)
            elif case == "sorted_key":
                def key(x, n=[0]):
                    n[0] += 1
                    sorted([1, 2], key=key)
                    return x
                sorted([1, 2], key=key)
        except RecursionError:
            return "RecursionError"
        return "worked"

    assert Fiber(run).switch() in ("RecursionError", "worked")


def test_deep_recursion_in_many_fibers_at_once():
    main = getcurrent()
    limit = sys.getrecursionlimit()
    nested = _nested_list(20_000)

    def dig(n):
        if n == 0:
            main.switch()
            try:
                json.dumps(nested)
            except RecursionError:
                pass
            return "ok"
        return dig(n - 1)

    fibers = [Fiber(dig) for _ in range(1000)]
    for f in fibers:
        f.switch(limit // 4)
    assert [f.switch() for f in fibers] == ["ok"] * 1000


def test_trashcan_deep_dealloc_switching_in_del():
    """Deallocating a deep nested container runs __del__ that switches (gevent#1909)."""
    main = getcurrent()
    def bouncer():
        back_to = main.switch()
        while True:
            back_to = back_to.switch()

    other = Fiber(bouncer)
    other.switch()
    switched = [0]

    class Switcher:
        def __del__(self):
            switched[0] += 1
            other.switch(getcurrent())

    def build_and_drop():
        x = None
        for i in range(20_000):
            x = [x, Switcher() if i % 1000 == 0 else None]
        del x
        return "dropped"

    f = Fiber(build_and_drop)
    assert f.switch() == "dropped"
    assert switched[0] == 20
    other.throw()
