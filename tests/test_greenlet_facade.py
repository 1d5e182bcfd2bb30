"""loop.compat.greenlet follows greenlet's rules, and the core rules that greenlet code relies on.

Each scenario runs in its own interpreter: several go through a fiber's finishing path, a
thread's end or interpreter finalization, where a mistake in the C core is a crash, and a crash
must fail one test, not the run. greenlet's own suite runs against the facade too
(tests/peers/run_greenlet_suite.py); these tests pin the differences found there and in
issue 14's list of smaller greenlet differences.
"""
from script_helpers import run_python


def run_ok(code, timeout=60):
    """Run ``code``, which prints an OK line when done, in a fresh interpreter with faulthandler
    on; it must also exit cleanly."""
    proc = run_python(code, timeout=timeout, interpreter_args=("-X", "faulthandler"))
    assert proc.returncode == 0 and "OK" in proc.stdout.splitlines(), (
        proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


# -- issue 14, item 8: smaller greenlet differences in the core ---------------------------------

def test_parent_started_by_a_child_that_dies_of_the_exit_exception_gets_no_arguments():
    run_ok("""
        from loop._switch import Fiber, FiberExit
        seen = []
        parent = Fiber(lambda *args, **kwargs: seen.append((args, kwargs)))
        def die():
            raise FiberExit("bye")
        child = Fiber(die, parent)
        child.switch()
        assert seen == [((), {})], seen      # greenlet calls run() with nothing
        # a live parent still gets the exception instance as the value of its switch
        got = Fiber(die).switch()
        assert type(got) is FiberExit and got.args == ("bye",), got
        print("OK")
    """)


def test_assigning_a_parent_to_a_main_fiber_raises_attribute_error():
    run_ok("""
        import threading
        from loop._switch import Fiber, getcurrent
        main = getcurrent()
        other = Fiber(lambda: None)
        try:
            main.parent = other
        except AttributeError as exc:
            assert "main" in str(exc), exc
        else:
            raise AssertionError("a main fiber took a parent")
        assert main.parent is None
        errors = []
        def in_thread():
            try:
                getcurrent().parent = Fiber(lambda: None)
            except AttributeError:
                errors.append("refused")
        t = threading.Thread(target=in_thread); t.start(); t.join()
        assert errors == ["refused"], errors
        import loop.compat.greenlet as greenlet
        try:
            greenlet.getcurrent().parent = greenlet.greenlet()
        except AttributeError as exc:
            assert str(exc) == "cannot set the parent of a main greenlet", exc
        else:
            raise AssertionError("a main greenlet took a parent")
        print("OK")
    """)


def test_context_of_a_finished_greenlet_can_be_set_but_not_that_of_a_finished_fiber():
    run_ok("""
        import contextvars
        from loop._switch import Fiber
        import loop.compat.greenlet as greenlet
        ctx = contextvars.Context()
        g = greenlet.greenlet(lambda: None)
        g.switch()
        assert g.dead
        g.gr_context = ctx
        assert g.gr_context is ctx
        g.gr_context = None
        assert g.gr_context is None
        f = Fiber(lambda: None)
        f.switch()
        try:
            f.context = ctx
        except ValueError:
            pass
        else:
            raise AssertionError("loop's own rule: a finished fiber's context is final")
        print("OK")
    """)


def test_switch_hook_reports_a_switch_to_the_running_fiber_itself():
    run_ok("""
        from loop._switch import Fiber, getcurrent, settrace
        events = []
        settrace(lambda event, pair: events.append((event, pair)))
        main = getcurrent()
        assert main.switch(5) == 5
        settrace(None)
        assert events == [("switch", (main, main))], events
        # a failing hook is removed and its error is what the switch raises
        def bad(event, pair):
            raise KeyError("hook")
        settrace(bad)
        try:
            main.switch(1)
        except KeyError:
            pass
        else:
            raise AssertionError("the hook's error was lost")
        from loop._switch import gettrace
        assert gettrace() is None
        print("OK")
    """)


def test_suspended_fiber_of_an_exited_thread_is_dead_and_can_be_reparented():
    run_ok("""
        import threading
        from loop._switch import Fiber, getcurrent
        kept = []
        def worker():
            main = getcurrent()
            f = Fiber(lambda: main.switch())
            f.switch()
            kept.append(f)
        t = threading.Thread(target=worker); t.start(); t.join()
        f = kept[0]
        assert f.dead and not f
        here = Fiber(lambda: None)
        f.parent = here                     # never runs again: any parent will do
        assert f.parent is here
        # while its thread lives, a started fiber still refuses a parent of another thread
        started, release = threading.Event(), threading.Event()
        def holder():
            main = getcurrent()
            g = Fiber(lambda: main.switch())
            g.switch()
            kept.append(g)
            started.set()
            release.wait(10)
        t = threading.Thread(target=holder); t.start(); started.wait(10)
        try:
            kept[1].parent = here
        except ValueError as exc:
            assert str(exc) == "parent cannot be on a different thread", exc
        else:
            raise AssertionError("a live thread's fiber took a foreign parent")
        assert not kept[1].dead
        release.set(); t.join()
        del kept[:]
        print("OK")
    """)


def test_greenlet_takes_at_most_run_and_parent():
    run_ok("""
        from loop._switch import Fiber, getcurrent
        import loop.compat.greenlet as greenlet
        try:
            greenlet.greenlet(lambda: None, greenlet.getcurrent(), True)
        except TypeError:
            pass
        else:
            raise AssertionError("a third positional argument was accepted")
        g = greenlet.greenlet(run=lambda x: x * 2, parent=greenlet.getcurrent())
        assert g.switch(21) == 42
        # loop's own Fiber keeps its documented third parameter, copy_context
        assert Fiber(lambda: 7, getcurrent(), True).switch() == 7
        print("OK")
    """)


# -- greenlet's rules and words in the facade ---------------------------------------------------

def test_main_greenlet_is_a_greenlet_and_repr_shows_each_state():
    run_ok("""
        import threading
        import loop.compat.greenlet as greenlet
        main = greenlet.getcurrent()
        assert type(main) is greenlet.greenlet and isinstance(main, greenlet.greenlet)
        assert repr(main).endswith(" current active started main>"), repr(main)
        g = greenlet.greenlet(lambda: repr(main))
        assert repr(g).endswith(" suspended pending>"), repr(g)
        assert g.switch().endswith(" suspended active started main>")
        assert repr(g).endswith(" dead>") and "(thread exited)" not in repr(g), repr(g)
        mains = []
        t = threading.Thread(target=lambda: mains.append(greenlet.getcurrent()))
        t.start(); t.join()
        assert type(mains[0]) is greenlet.greenlet         # threads started later too
        assert mains[0].dead and repr(mains[0]).endswith(" (thread exited) dead>"), mains
        # every fiber passes isinstance(x, greenlet), subclasses check as usual
        from loop._switch import Fiber
        class Sub(greenlet.greenlet):
            pass
        assert isinstance(Fiber(), greenlet.greenlet) and not isinstance(main, Sub)
        print("OK")
    """)


def test_abstract_subclass_cannot_be_instantiated():
    run_ok("""
        from abc import ABCMeta, abstractmethod
        import loop.compat.greenlet as greenlet
        Abstract = ABCMeta("Abstract", (greenlet.greenlet,), {"run": abstractmethod(lambda s: 0)})
        class Bad(Abstract):
            pass
        class Good(Abstract):
            def run(self):
                return 5
        assert Good().switch() == 5
        try:
            Bad()
        except TypeError as exc:
            assert "abstract" in str(exc), exc
        else:
            raise AssertionError("an abstract greenlet class was instantiated")
        print("OK")
    """)


def test_recursive_start_during_run_lookup_becomes_an_ordinary_switch():
    run_ok("""
        import loop.compat.greenlet as greenlet
        class Convoluted(greenlet.greenlet):
            def __init__(self):
                greenlet.greenlet.__init__(self)
                self.count = 0
            def __getattribute__(self, name):
                if name == "run" and self.count == 0:
                    self.count = 1
                    self.switch(43)
                return greenlet.greenlet.__getattribute__(self, name)
            def run(self, value):
                while True:
                    self.parent.switch(value)
        g = Convoluted()
        assert g.switch(42) == 43
        g.throw()                           # let it end
        assert g.dead
        print("OK")
    """)


def test_run_none_parent_and_context_assignment_rules():
    run_ok("""
        import contextvars, threading
        import loop.compat.greenlet as greenlet
        assert greenlet.greenlet(run=None).run is None
        g = greenlet.greenlet(lambda: None)
        for bad in (None, 1, "42"):
            try:
                g.parent = bad
            except TypeError as exc:
                assert str(exc) == ("GreenletChecker: Expected any type of greenlet, not "
                                    + type(bad).__name__), exc
            else:
                raise AssertionError("parent took %r" % (bad,))
        for target, attr, message in ((g, "parent", "can't delete attribute"),
                                      (g, "gr_context", "can't delete context attribute")):
            try:
                delattr(target, attr)
            except AttributeError as exc:
                assert str(exc) == message, exc
            else:
                raise AssertionError("deleted " + attr)
        try:
            g.gr_context = {}
        except TypeError as exc:
            assert "greenlet context must be a contextvars.Context or None" in str(exc)
        else:
            raise AssertionError("context took a dict")
        # another thread's greenlet: its context is out of reach only while it runs
        var = contextvars.ContextVar("var")
        running, suspend, suspended, finish = (threading.Event() for _ in range(4))
        holder = []
        def in_thread():
            def body():
                var.set(1)
                running.set(); suspend.wait(10)
                greenlet.getcurrent().parent.switch()
            g2 = greenlet.greenlet(body)
            holder.append(g2)
            g2.switch()
            suspended.set(); finish.wait(10)
        t = threading.Thread(target=in_thread); t.start(); running.wait(10)
        for action in (lambda: holder[0].gr_context,
                       lambda: setattr(holder[0], "gr_context", None)):
            try:
                action()
            except ValueError as exc:
                assert "running in a different thread" in str(exc), exc
            else:
                raise AssertionError("reached the context of a running greenlet")
        suspend.set(); suspended.wait(10)
        assert holder[0].gr_context[var] == 1
        holder[0].gr_context = None
        assert holder[0].gr_context is None
        finish.set(); t.join()
        del holder[:]
        print("OK")
    """)


def test_unstarted_greenlet_moves_to_its_new_parents_thread():
    run_ok("""
        import threading
        import loop.compat.greenlet as greenlet
        from loop._switch import Fiber, getcurrent
        other = []
        t = threading.Thread(target=lambda: other.append(greenlet.greenlet(lambda: None)))
        t.start(); t.join()
        g = greenlet.greenlet(lambda: None)
        g.parent = other[0]                       # greenlet's rule: allowed until started...
        try:
            g.switch()
        except greenlet.error as exc:             # ...and starting it here is refused
            assert str(exc) == ("cannot switch to a different thread (which happens to have "
                                "exited)"), exc
        else:
            raise AssertionError("started a greenlet of another thread")
        f = Fiber(lambda: None)                   # loop's rule for plain fibers: refused at once
        try:
            f.parent = other[0]
        except ValueError:
            pass
        else:
            raise AssertionError("a plain fiber took a parent of another thread")
        del other[:]
        print("OK")
    """)


def test_throw_rules_and_stack_saved():
    run_ok("""
        import threading
        import loop.compat.greenlet as greenlet
        main = greenlet.getcurrent()
        try:
            main.throw("abc")
        except TypeError as exc:
            assert str(exc) == "exceptions must be classes, or instances, not str", exc
        else:
            raise AssertionError("threw a str")
        # throw into a finished greenlet of a thread that exited: the thread is what's wrong
        kept = []
        def creator():
            g = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
            g.switch(); kept.append(g); g.switch()
        t = threading.Thread(target=creator); t.start(); t.join()
        try:
            kept[0].throw(KeyError)
        except greenlet.error as exc:
            assert "different thread (which happens to have exited)" in str(exc), exc
        else:
            raise AssertionError("threw into another thread")
        assert main._stack_saved == 0
        g = greenlet.greenlet(lambda: main.switch(main._stack_saved))
        assert g.switch() > 0 and g._stack_saved > 0
        g.switch()
        assert g._stack_saved == 0
        print("OK")
    """)


def test_getcurrent_is_refused_while_the_interpreter_finalizes_but_not_in_atexit():
    proc = run_ok("""
        import atexit, gc, os
        import loop.compat.greenlet as greenlet
        gc.disable()
        class AtShutdown:
            def __del__(self):
                try:
                    greenlet.getcurrent()
                except RuntimeError:
                    os.write(1, b"refused in final gc\\n")
        a = AtShutdown(); a.cycle = {"a": a}; del a
        def at_exit():
            print("atexit got", type(greenlet.getcurrent()).__name__, flush=True)
        atexit.register(at_exit)
        print("OK")
    """)
    assert "atexit got greenlet" in proc.stdout and "refused in final gc" in proc.stdout, \
        proc.stdout


def test_fiber_dropped_by_another_thread_is_killed_when_its_thread_ends():
    run_ok("""
        import threading
        from loop._switch import Fiber, getcurrent
        finished, ready, dropped = [], threading.Event(), threading.Event()
        holder = []
        def worker():
            main = getcurrent()
            def body():
                try:
                    main.switch()
                finally:
                    finished.append("finally ran")
            f = Fiber(body)
            f.switch()
            holder.append(f)
            del f
            ready.set()
            dropped.wait(10)      # no fiber call after this: the kill waits for the thread's end
        t = threading.Thread(target=worker); t.start(); ready.wait(10)
        del holder[:]             # last reference dropped from the main thread
        assert finished == []
        dropped.set(); t.join()
        assert finished == ["finally ran"], finished
        print("OK")
    """)


def test_parent_whose_run_cannot_be_looked_up_stays_never_started():
    # greenlet's rule: a finishing child starts its never-started parent; when the parent's run
    # cannot even be looked up, the error goes on to the parent's parent and the parent stays
    # never started, so switching to it later tries again.  The lookup runs on the parent's own
    # stack (never on the finished child's), which is given back like a finished fiber's.
    run_ok("""
        import gc
        from loop.compat.greenlet import greenlet, getcurrent
        from loop._switch import stack_stats

        class SomeError(Exception):
            pass

        broken = [True]

        class Parent(greenlet):
            def __getattribute__(self, name):
                if name == "run" and broken[0]:
                    raise SomeError
                return greenlet.__getattribute__(self, name)

            def run(self, *args):
                return ("parent ran", args)

        for round in range(300):   # stacks are reused: a stale one would show
            broken[0] = True
            parent = Parent()
            seen = []
            child = greenlet(lambda: seen.append(42), parent)
            for attempt in range(2):
                try:
                    child.switch()
                except SomeError:
                    pass
                else:
                    raise AssertionError("no SomeError on attempt %d" % attempt)
                assert seen == [42], seen
                assert child.dead and not parent.dead and not parent, (child, parent)
            broken[0] = False
            assert parent.switch("now") == ("parent ran", ("now",))
            assert parent.dead
        gc.collect()
        print("OK")
    """)
