"""contextvars and green threads: a green thread runs in a copy of its spawner's context as of
spawn time.  The copy is made lazily (the fiber keeps the spawner's variables until it starts or
``.context`` is read, and a finished one whose Context nobody else holds keeps only its
variables), so these tests pin down that none of that is visible."""
import contextvars
import gc
import weakref

import loop
from loop import Greenlet
from loop._switch import Fiber, getcurrent

var = contextvars.ContextVar("var", default="unset")


def _in_fresh_context(fn):
    """Run ``fn`` in an empty context so tests do not see each other's values."""
    return contextvars.Context().run(fn)


def test_child_sees_values_as_of_spawn_not_later_sets():
    def body():
        var.set("before")
        g = loop.spawn(var.get)
        var.set("after")          # the child has not run yet
        assert g.get() == "before"
        assert var.get() == "after"
    _in_fresh_context(body)


def test_what_the_child_sets_stays_in_the_child():
    def body():
        var.set("parent")

        def child():
            var.set("child")
            loop.sleep(0)
            return var.get()
        g = loop.spawn(child)
        loop.sleep(0)
        assert var.get() == "parent"
        assert g.get() == "child"
        assert var.get() == "parent"
        # the finished green thread keeps its last context
        assert g.context[var] == "child"
        assert g.context is g.context
    _in_fresh_context(body)


def test_start_later_than_creation_uses_creation_time_values():
    def body():
        var.set("created")
        g = Greenlet(var.get)
        var.set("started")
        g.start()
        assert g.get() == "created"
    _in_fresh_context(body)


def test_reading_context_before_start_gives_the_context_the_child_runs_in():
    def body():
        var.set("spawner")
        g = loop.spawn(var.get)
        ctx = g.context
        assert isinstance(ctx, contextvars.Context)
        assert ctx[var] == "spawner"
        assert g.context is ctx
        var.set("later")
        assert ctx[var] == "spawner"
        ctx.run(var.set, "through the context")
        assert g.get() == "through the context"
        assert var.get() == "later"
    _in_fresh_context(body)


def test_setting_context_before_start_wins():
    def body():
        var.set("spawner")
        preset = contextvars.Context()
        preset.run(var.set, "preset")
        g = loop.spawn(var.get)
        g.context = preset
        assert g.context is preset
        assert g.get() == "preset"

        g = loop.spawn(var.get)
        g.context = None           # an empty context
        assert g.get() == "unset"
    _in_fresh_context(body)


def test_spawner_without_a_context_yet():
    # A raw fiber starts with no Context at all; a green thread spawned from it gets an empty
    # copy, and the spawner gets its own Context, as with contextvars.copy_context().
    main = getcurrent()
    out = []

    def spawner():
        assert getcurrent().context is None
        g = Greenlet(var.get)
        assert getcurrent().context is not None
        out.append(g)
        main.switch()

    f = Fiber(spawner)
    f.switch()
    g = out[0]
    g.start()
    assert g.get() == "unset"
    f.switch()
    assert f.dead


def test_child_holding_its_own_context_keeps_it_after_finishing():
    def body():
        var.set("spawner")
        seen = []

        def child():
            var.set("child")
            seen.append(getcurrent().context)
        g = loop.spawn(child)
        g.join()
        assert g.context is seen[0]
        assert seen[0][var] == "child"
    _in_fresh_context(body)


def test_weak_reference_to_a_finished_childs_context_stays_valid():
    def body():
        refs = []

        def child():
            var.set("child")
            refs.append(weakref.ref(getcurrent().context))
        g = loop.spawn(child)
        g.join()
        ctx = refs[0]()
        assert ctx is not None and ctx is g.context
        assert ctx[var] == "child"
    _in_fresh_context(body)


def test_cycle_through_the_spawners_variables_is_collected():
    class Box:
        pass

    def body():
        box = Box()
        var.set(box)
        box.g = Greenlet(var.get)      # not started: holds the variables, which hold it
        ref = weakref.ref(box.g)
        return ref
    ref = _in_fresh_context(body)
    gc.collect()
    assert ref() is None


def test_cycle_through_a_finished_childs_variables_is_collected():
    class Box:
        pass

    def body():
        box = Box()

        def child():
            var.set(box)
        box.g = loop.spawn(child)
        box.g.join()
        return weakref.ref(box.g)
    ref = _in_fresh_context(body)
    loop.sleep(0)      # the hub's last resume (join's waiter, which holds g) is then forgotten
    gc.collect()
    assert ref() is None


def test_killed_before_start_and_raw_fiber_copy():
    def body():
        var.set("x")
        g = loop.spawn(var.get)
        g.kill()
        assert g.dead and g.context[var] == "x"

        f = Fiber(var.get, copy_context=True)
        var.set("y")
        assert f.switch() == "x"
        assert Fiber(var.get).switch() == "unset"
    _in_fresh_context(body)


def test_many_children_each_see_their_own_snapshot():
    def body():
        gs = []
        for i in range(300):
            var.set(i)
            gs.append(loop.spawn(var.get))
        loop.joinall(gs)
        assert [g.value for g in gs] == list(range(300))
        assert [g.context[var] for g in gs[:5]] == [0, 1, 2, 3, 4]
    _in_fresh_context(body)
