"""Regressions the green-thread fuzzer (tests/fuzz/) found in the C core.

Each scenario runs in a fresh interpreter that must exit 0 with nothing on stderr, so a segfault,
an abort ("Cannot recover from stack overflow") or a silent corruption that an assertion notices
fails the test instead of the run."""
import pytest

from script_helpers import run_python


def run_script(code, timeout=120, env=None):
    proc = run_python(code, env, timeout, interpreter_args=("-X", "faulthandler"))
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.split()[-1:] == ["ok"], proc.stdout
    return proc.stdout


def test_parent_run_property_that_switches_is_not_run_on_the_finished_childs_stack():
    """A finished fiber starts its never-started parent; looking up the parent's run (a property
    here) is Python code that switches away. Its frames must not live on the finished fiber's
    stack, which goes back to the pool and is handed to the next fiber."""
    run_script("""
        import gc, sys
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        seen = {}
        class Parent(Fiber):
            @property
            def run(self):
                secret = "getter local"
                seen["frame"] = sys._getframe()
                main.switch("getter switched away")
                return lambda *args: ("parent ran", args, secret)
        parent = Parent()
        child = Fiber(lambda: "child result", parent=parent)
        assert child.switch() == "getter switched away"
        del child
        gc.collect()
        # hand the freed stacks to other fibers that park with locals of their own
        def park(tag):
            secret = tag
            main.switch()
        others = [Fiber(park) for _ in range(20)]
        for i, f in enumerate(others):
            f.switch("other %d" % i)
        frame = seen.pop("frame")
        assert frame.f_code.co_name == "run", frame.f_code
        assert frame.f_locals.get("secret") == "getter local", frame.f_locals
        del frame
        assert parent.switch() == ("parent ran", ("child result",), "getter local")
        for f in others:
            f.switch()
        print("ok")
    """)


def test_suspended_subclass_with_del_is_killed_on_last_reference():
    run_script("""
        import gc
        from loop._switch import Fiber, getcurrent, stack_stats
        main = getcurrent()
        log = []
        class WithDel(Fiber):
            def __del__(self):
                log.append("del")
        class Resource:
            def __enter__(self): return self
            def __exit__(self, *exc): log.append("exit")
        def run():
            with Resource():
                try:
                    main.switch()
                finally:
                    log.append("finally")
        f = WithDel(run)
        f.switch()
        del f
        gc.collect()
        assert log == ["del", "finally", "exit"], log
        # no frames or stack mapping left behind per fiber
        Fiber(lambda: None).switch()
        before = stack_stats()["stacks_mapped"]
        for _ in range(2000):
            f = WithDel(run)
            f.switch()
            del f
        gc.collect()
        assert log.count("finally") == 2001, log.count("finally")
        assert stack_stats()["stacks_mapped"] <= before + 16, (before, stack_stats())
        print("ok")
    """)


THROW_INTO_DEAD = """
    import sys
    {imports}
    main = getcurrent()
    out = []
    # throw() into a finished greenlet from its parent: GreenletExit comes back as a value
    done = greenlet(lambda: "finished")
    assert done.switch() == "finished"
    r = done.throw()
    out.append(isinstance(r, GreenletExit))
    r = done.throw(GreenletExit("bye"))
    out.append((isinstance(r, GreenletExit), str(r)))
    try:
        done.throw(ValueError("boom"))
    except ValueError as e:
        out.append(("raised", str(e)))
    # from a third greenlet: the value goes to the dead one's nearest live parent
    def parent_run():
        child = greenlet(lambda: "child done")
        child.switch()
        holder.append(child)
        got = main.switch("parent parked")
        return ("parent got", isinstance(got, GreenletExit))
    holder = []
    parent = greenlet(parent_run)
    assert parent.switch() == "parent parked"
    def thrower():
        return holder[0].throw()
    out.append(greenlet(thrower, parent=parent).switch())
    print(out)
    print("ok")
"""


def test_throw_into_finished_greenlet_returns_exit_to_live_parent():
    proc = run_script(THROW_INTO_DEAD.format(
        imports="from loop.compat.greenlet import greenlet, getcurrent, GreenletExit"))
    try:
        import greenlet  # noqa: F401
    except ImportError:
        return
    real = run_script(THROW_INTO_DEAD.format(
        imports="from greenlet import greenlet, getcurrent, GreenletExit"))
    assert proc == real, (proc, real)


def test_throw_into_finished_fiber_still_raises_fiber_error():
    run_script("""
        from loop._switch import Fiber, FiberError
        f = Fiber(lambda: 1)
        f.switch()
        try:
            f.throw()
        except FiberError:
            print("ok")
    """)


def test_recursion_headroom_is_per_fiber():
    """CPython raises recursion_headroom while it normalizes an exception; an exception __init__
    that switches must not leave the other fibers without RecursionError."""
    run_script("""
        import sys, warnings
        from loop._switch import Fiber, getcurrent
        warnings.simplefilter("ignore", DeprecationWarning)   # throw(type, value) on 3.12+
        main = getcurrent()
        class SwitchingError(Exception):
            def __init__(self, *args):
                main.switch("inside __init__")
                super().__init__(*args)
        def gen():
            yield
        g = gen()
        next(g)
        def run():
            try:
                g.throw(SwitchingError, "x")
            except SwitchingError:
                return "normalized"
        f = Fiber(run)
        assert f.switch() == "inside __init__"
        def rec(n):
            return rec(n + 1)
        for _ in range(3):
            try:
                rec(0)
            except RecursionError:
                pass
            else:
                raise AssertionError("no RecursionError")
        assert f.switch() == "normalized"
        print("ok")
    """)


def test_trace_function_that_switches_does_not_silence_tracing_elsewhere():
    run_script("""
        import sys
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        calls = []
        def tracer(frame, event, arg):
            if event == "call":
                calls.append((frame.f_code.co_name, getcurrent() is main))
                if frame.f_code.co_name == "parks_in_tracer" and not main_busy:
                    main.switch()
            return None
        main_busy = False
        def parks_in_tracer():
            return "traced"
        def in_main():
            return 1
        f = Fiber(parks_in_tracer)
        sys.settrace(tracer)
        f.switch()                 # the fiber is now suspended inside the trace function
        main_busy = True
        in_main()                  # must be traced: main is not inside a trace function
        main_busy = False
        r = f.switch()
        sys.settrace(None)
        assert r == "traced", r
        assert ("in_main", True) in calls, calls
        print("ok")
    """)


def test_lowered_recursion_limit_below_suspended_depth_raises_recursion_error():
    run_script("""
        import sys
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        def dig(n):
            if n == 0:
                try:
                    raise ValueError("being handled")
                except ValueError:
                    # resumed inside an except block: 3.11 builds the RecursionError at once
                    main.switch()
                    return helper()
            return dig(n - 1)
        def helper():
            return len(repr([1, 2, 3]))
        sys.setrecursionlimit(1000)
        f = Fiber(dig)
        f.switch(800)
        sys.setrecursionlimit(200)
        try:
            f.switch()
        except RecursionError:
            pass
        else:
            raise AssertionError("no RecursionError")
        # the limit keeps its meaning for a fresh fiber and for main
        def count(n=0):
            try:
                return count(n + 1)
            except RecursionError:
                return n
        assert 150 < Fiber(count).switch() < 200
        assert count() < 200
        print("ok")
    """)


def test_resumed_fiber_deeper_than_lowered_limit_can_unwind_and_recurse_again():
    run_script("""
        import sys
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        def dig(n):
            if n == 0:
                main.switch()
                return "unwound"
            return dig(n - 1)
        def run():
            r = dig(700)
            main.switch()          # the lowered limit applies again from the next switch on
            def count(n=0):
                try:
                    return count(n + 1)
                except RecursionError:
                    return n
            return r, count()
        f = Fiber(run)
        f.switch()
        sys.setrecursionlimit(300)
        f.switch()
        r, depth = f.switch()
        assert r == "unwound"
        assert 250 < depth < 300, depth
        print("ok")
    """)


STACK_SIZE_CASES = {
    "sorted_key": """
        def key(x):
            sorted([0, 1], key=key)
            return x
        sorted([0, 1], key=key)""",
    "repr": "repr(deep)",
    "json": "json.dumps(deep)",
    "pickle": "pickle.dumps(deep)",
    "eq": "deep == deep2",
    "python": """
        def rec(n): return rec(n + 1)
        rec(0)""",
    "getattr": """
        class A:
            def __getattr__(self, name): return getattr(self, name + "x")
        A().a""",
    "map": """
        def f(x): return list(map(f, [x]))
        f(0)""",
    "reduce": """
        def f(a, b): return functools.reduce(f, [a, b])
        functools.reduce(f, [1, 0])""",
    "isinstance": """
        class M(type):
            def __instancecheck__(cls, obj): return isinstance(obj, cls)
        class X(metaclass=M): pass
        isinstance(1, X)""",
    "init": """
        class C:
            def __init__(self): C()
        C()""",
    "compile": "compile('-' * 50_000 + '1', 's', 'eval')",
}


@pytest.mark.parametrize("limit", [None, 100_000])
@pytest.mark.parametrize("size", ["1m", "1536k", "3m", "8m", "16m"])
def test_every_stack_size_raises_recursion_error_on_deep_recursion(size, limit):
    """Deep C recursion in a fiber raises RecursionError at every stack size, whatever the
    recursion limit (the main thread's own stack may still overflow with a raised limit)."""
    run_script("""
        import functools, json, pickle, sys, textwrap
        from loop._switch import Fiber, get_stack_size
        if %r:
            sys.setrecursionlimit(%r)
        deep = []
        deep2 = []
        for _ in range(100_000):
            deep = [deep]
            deep2 = [deep2]
        cases = %r
        def run():
            results = {}
            for name, body in sorted(cases.items()):
                try:
                    exec(textwrap.dedent(body), {"json": json, "pickle": pickle, "deep": deep,
                                                 "deep2": deep2, "functools": functools})
                    results[name] = "worked"
                except RecursionError:
                    results[name] = "RecursionError"
                except MemoryError:          # the parser's own nesting limit
                    results[name] = "MemoryError"
            return results
        got = Fiber(run).switch()
        assert len(got) == len(cases), got
        print(get_stack_size(), got)
        print("ok")
    """ % (limit, limit, STACK_SIZE_CASES), env={"LOOP_STACK_SIZE": size})


STUBBORN = """
    import gc, sys, weakref
    {imports}
    main = getcurrent()
    log = []
    class Stubborn(greenlet):
        pass
    def parent_run():
        try:
            main.switch()
        finally:
            log.append("parent finally")
    parent = greenlet(parent_run)
    parent.switch()
    def stubborn():
        while True:
            try:
                main.switch()
            except GreenletExit:
                log.append("exit")
                if log.count("exit") > 1:
                    raise
    type_refs = sys.getrefcount(Stubborn)
    g = Stubborn(stubborn, parent=parent)
    g.switch()
    ref = weakref.ref(g)
    del g                          # thrown into once; it parks again and is kept alive
    kept = ref()
    assert kept is not None and not kept.dead
    print(log, kept.parent is parent)   # its own parent back, and that parent alive
    del kept
    gc.collect()
    print(sys.getrefcount(Stubborn) - type_refs)    # the kept instance holds its class
    ref().throw()                  # dies now; its parent gets the exit and finishes
    print(log, ref().dead)
    parent.throw()                 # finished: the exit comes back as a value
    print(log)
    gc.collect()
    print("ok")
"""


def test_fiber_that_survives_being_dropped_is_kept_with_its_parent_and_class():
    """Fuzzer finds: a fiber that catches the exit exception when its last reference goes
    was thrown into twice, its borrowed parent was dropped (killing the parent too), it was then
    freed with its frames and stack stranded, and a subclass instance kept alive lost the
    reference to its class (a crash at the next full collection)."""
    outs = []
    impls = ["from loop.compat.greenlet import greenlet, getcurrent, GreenletExit"]
    try:
        import greenlet  # noqa: F401
        impls.append("from greenlet import greenlet, getcurrent, GreenletExit")
    except ImportError:
        pass
    for imports in impls:
        proc = run_python(STUBBORN.format(imports=imports), None, 120,
                          interpreter_args=("-X", "faulthandler"))
        assert proc.returncode == 0, proc.stderr
        assert "did not" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        outs.append(proc.stdout)
    assert outs[0].split("\n")[:4] == [
        "['exit'] True", "1", "['exit', 'exit', 'parent finally'] True",
        "['exit', 'exit', 'parent finally']"], outs[0]
    assert len(set(outs)) == 1, outs


def test_stack_sizes_below_the_parsers_need_are_refused():
    """CPython's parser recurses up to a fixed depth of its own (~800 KB of C stack), which no
    recursion budget bounds; smaller stacks are refused rather than left to crash."""
    proc = run_python("import loop._switch", {"LOOP_STACK_SIZE": "256k"}, 60)
    assert proc.returncode != 0 and "below the minimum" in proc.stderr, proc.stderr
    run_script("""
        from loop._switch import Fiber, set_stack_size
        try:
            set_stack_size(512 * 1024)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted")
        set_stack_size(1 << 20)
        nested = "1 if 1 else " * 50_000 + "1"
        def run():
            try:
                compile(nested, "s", "eval")
            except (RecursionError, MemoryError, SyntaxError) as e:
                return type(e).__name__
            return "compiled"
        print(Fiber(run).switch())
        print("ok")
    """)


DEFERRED_STUBBORN = """
    import threading
    {imports}
    main = getcurrent()
    log = []
    def stubborn():
        while True:
            try:
                main.switch()
            except GreenletExit:
                log.append("exit")
    box = [greenlet(stubborn)]
    box[0].switch()
    threading.Thread(target=box.clear).start()   # the last reference goes in another thread
    import time; time.sleep(0.2)
    getcurrent()                                  # the owner kills it now: once
    print(log)
    print("ok")
"""


def test_fiber_released_in_another_thread_is_thrown_into_once():
    """Fuzzer find: the owner's queue of fibers released by other threads killed each one while
    still holding it, so one that survived was killed a second time when the queue let go."""
    outs = []
    impls = ["from loop.compat.greenlet import greenlet, getcurrent, GreenletExit"]
    try:
        import greenlet  # noqa: F401
        impls.append("from greenlet import greenlet, getcurrent, GreenletExit")
    except ImportError:
        pass
    for imports in impls:
        proc = run_python(DEFERRED_STUBBORN.format(imports=imports), None, 120,
                          interpreter_args=("-X", "faulthandler"))
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0].split() == ["['exit']", "ok"], outs
    assert len(set(outs)) == 1, outs


def test_survivor_gets_its_parent_back_even_if_it_set_another():
    run_script("""
        from loop._switch import Fiber, FiberExit, getcurrent
        main = getcurrent()
        parent = Fiber(lambda: main.switch())
        parent.switch()
        other = Fiber(lambda: main.switch())
        other.switch()
        def stubborn():
            me = None
            while True:
                try:
                    main.switch()
                except FiberExit:
                    getcurrent().parent = other    # changed while being killed
                    holder.append(getcurrent())    # resurrected
        holder = []
        f = Fiber(stubborn, parent=parent)
        f.switch()
        del f
        survivor = holder.pop()
        assert survivor.parent is parent, survivor.parent
        # a parent that would close a cycle is not given back
        a = Fiber(lambda: main.switch())
        a.switch()
        def stubborn2():
            while True:
                try:
                    main.switch()
                except FiberExit:
                    a.parent = getcurrent()        # a -> me, while my parent is the killer
                    holder.append(getcurrent())
        g = Fiber(stubborn2, parent=a)
        g.switch()
        del g
        survivor2 = holder.pop()
        assert survivor2.parent is main and a.parent is survivor2
        print("ok")
    """)
