"""asyncio event loops run by green code: the "running loop" slot, per green thread.

Design
======

asyncio keeps one *running loop* per OS thread (``asyncio.get_running_loop()``, and the check
that refuses to start a second loop while one runs).  The hub's loop runs in this thread too, on
the hub fiber, but green threads are not asyncio tasks: they must not look as if they ran inside
an event loop.  Libraries decide on that view (Django's ``async_unsafe`` refuses to run the ORM
when ``get_running_loop()`` answers; ``asyncio.run()`` refuses to start), and under gevent,
whose hub is not an asyncio loop, they see none.  So the hub clears the slot whenever it resumes
green threads and puts its loop back when it returns to the event loop (``Hub._drain``,
``Hub.resume``, ``Hub.interrupt``: the only places it switches into them).  Only code that
asyncio itself runs -- a task, a callback, a coroutine under ``loop.await_`` -- sees the hub's
loop.  That is two writes of the slot per drain, not a hook on every switch.

What a green thread may do:

* Without monkey patching, a second asyncio loop in a green thread would block the whole OS
  thread in its selector, so ``asyncio.run()`` / ``run_until_complete()`` / ``run_forever()``
  there fail at once with a message that names ``loop.await_`` instead.
* After ``patch_all()`` (precisely: once ``selectors`` is patched), loops that the program
  creates wait in the green selector, i.e. through the hub, so they are cooperative.  Such a
  *nested* loop may run in any green thread, the main one included, before or after the hub
  started.  While it runs, that green thread's view of the running loop is the nested loop and
  every other fiber's view is unchanged.

How the views are kept apart: the first nested loop in an OS thread installs a switch hook
(``loop._switch.settrace``, chained to any hook already there).  On each switch it stores the
leaving green thread's running loop if it has one and restores the arriving green thread's
stored view, or None; arriving at the hub fiber it clears the slot, which the hub sets back to
its own loop when it returns to the event loop.  Green threads without a view -- nearly all of
them -- cost no memory.  A green thread gets back the view it had before it ran a loop.  Once no
loop is nested and no fiber has a stored view the hook removes itself, so the per-switch cost
is only paid while nested loops exist.

A running nested loop is also never *adopted* as the hub's loop (the hub adopts the loop of a
plain asyncio program that calls ``loop.run_green``), because its selector waits on the hub:
:data:`loop._core.hub.nested_loops` tells the hub which running loops are nested.

Signals: a process has one signal wake-up fd, and asyncio loops deliver signals through it; the
hub's loop takes it while it runs (uvloop always does in the main thread), so a nested loop
would never see its signals.  A nested loop's ``add_signal_handler`` therefore installs a
Python-level handler that hands the signal to that loop (the interpreter runs it in whatever
fiber is current; it only writes to the loop's self-pipe), leaves the wake-up fd to whoever had
it, and treats its self-pipe bytes as wake-ups only.

uvloop's loop waits inside libuv, never in a Python selector, so it cannot be nested; starting
one in a green thread raises with that explanation.
"""
import functools
import selectors
import signal
import weakref

from loop._core import hub as _hub
from loop._core import originals
from loop._switch import getcurrent, gettrace, settrace

__all__ = ["install"]

NOT_PATCHED_MESSAGE = (
    "{what} cannot be called from a green thread: this thread's loop hub already runs an "
    "asyncio event loop, and without monkey patching a second loop would block every green "
    "thread.  Use loop.await_(coro) to wait for a coroutine from green code (it blocks only the "
    "calling green thread), or call loop.monkey.patch_all() first to let green threads run "
    "their own (cooperative) asyncio loops.")

UVLOOP_MESSAGE = (
    "A uvloop event loop cannot run inside a green thread: it waits in libuv, outside the hub. "
    "Use loop.await_(coro) to run the coroutine on the hub's loop (uvloop already, when "
    "installed), or the stdlib loop (asyncio.new_event_loop()) after loop.monkey.patch_all().")

_thread_state = originals.thread_local()


class _ThreadViews:
    """One OS thread's view keeping: green thread -> the running loop it sees (when it sees
    one), and how many nested loops run now."""
    __slots__ = ("views", "depth", "hook", "chained")

    def __init__(self):
        self.views = {}
        self.depth = 0
        self.hook = None
        self.chained = None


def _make_view_keeper(state, get_running, set_running):
    stored = state.views
    get_hub_if_exists = _hub.get_hub_if_exists

    def keep_views(event, fibers):
        origin, target = fibers
        view = get_running()
        hub = get_hub_if_exists()
        hub_fiber = hub.fiber if hub is not None else None
        if origin is not hub_fiber:  # the hub's own view is the hub's to restore
            if origin.dead or view is None:
                stored.pop(origin, None)
            else:
                stored[origin] = view
        arriving = None if target is hub_fiber else stored.pop(target, None)
        if arriving is not view:
            set_running(arriving)
        chained = state.chained
        if chained is not None:
            chained(event, fibers)
        if not stored and not state.depth and arriving is None \
                and gettrace() is state.hook:
            settrace(chained)  # nothing left to keep apart: stop paying for the hook
            state.hook = state.chained = None

    return keep_views


def _enter_nested():
    state = getattr(_thread_state, "views", None)
    if state is None:
        state = _thread_state.views = _ThreadViews()
    state.depth += 1
    if state.hook is None:
        events = originals.prepare()["asyncio"].events
        state.hook = _make_view_keeper(state, events._get_running_loop, events._set_running_loop)
        state.chained = gettrace()
        settrace(state.hook)


def _leave_nested(events):
    state = _thread_state.views
    state.depth -= 1
    if not state.depth and not state.views and gettrace() is state.hook \
            and events._get_running_loop() is None:
        settrace(state.chained)
        state.hook = state.chained = None


def _selectors_patched():
    # Monkey patching replaces the selector classes in the stdlib module; the core holds the
    # original one.
    return selectors.DefaultSelector is not originals.DefaultSelector


def _green_caller(hub):
    """True when called from a green thread of ``hub`` while the hub's loop runs."""
    return hub is not None and getcurrent() is not hub.fiber and hub.loop.is_running()


class _Nesting:
    """Clears the caller's running-loop slot while ``what`` runs a loop of its own, or refuses.

    ``loop`` is the loop about to run, or None for asyncio.run()/Runner.run(), which make
    their loop later (and call run_until_complete, which comes back here)."""
    __slots__ = ("events", "previous", "loop", "active")

    def __init__(self, events, what, loop):
        self.events = events
        self.loop = loop
        self.active = False
        self.previous = view = events._get_running_loop()
        hub = _hub.get_hub_if_exists()
        if hub is not None and (getcurrent() is hub.fiber or loop is hub.loop):
            return  # asyncio's own rules apply: code on the hub, or the hub's loop itself
        if view is not None:
            return  # a loop already runs in this green thread (or thread): asyncio refuses
        if not _selectors_patched():
            if _green_caller(hub):
                raise RuntimeError(NOT_PATCHED_MESSAGE.format(what=what))
            return
        _hub.get_hub()  # an owned hub, made before the nested loop could be adopted
        _enter_nested()
        self.active = True
        if loop is not None:
            _hub.nested_loops.add(loop)

    def close(self):
        if self.active:
            self.active = False
            if self.loop is not None:
                _hub.nested_loops.discard(self.loop)
            self.events._set_running_loop(self.previous)
            _leave_nested(self.events)


def _nestable(method, what, takes_loop):
    if getattr(method, "__loop_nesting__", False):
        return method

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        nesting = _Nesting(_events, what, self if takes_loop else None)
        try:
            return method(self, *args, **kwargs)
        finally:
            nesting.close()

    run.__loop_nesting__ = True
    return run


def _nestable_function(function, what):
    if getattr(function, "__loop_nesting__", False):
        return function

    @functools.wraps(function)
    def run(*args, **kwargs):
        nesting = _Nesting(_events, what, None)
        try:
            return function(*args, **kwargs)
        finally:
            nesting.close()

    run.__loop_nesting__ = True
    return run


def _refuse_in_green_thread(method):
    if getattr(method, "__loop_nesting__", False):
        return method

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        hub = _hub.get_hub_if_exists()
        if hub is not None and self is not hub.loop and _green_caller(hub):
            raise RuntimeError(UVLOOP_MESSAGE)
        return method(self, *args, **kwargs)

    run.__loop_nesting__ = True
    return run


def _current_wakeup_fd(signal):
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd


def _deliver_signal(loop_ref, signum, frame):
    loop = loop_ref()
    if loop is not None and not loop.is_closed():
        loop._handle_signal(signum)


def _ignore_self_pipe_data(data):
    return None


def _signals_by_handler(add, remove):
    """A nested loop's signal handlers, delivered by a Python-level signal handler instead of
    the process's one wake-up fd (which the hub's loop owns while it runs)."""
    if getattr(add, "__loop_nesting__", False):
        return add, remove

    def nested(loop):
        if not _selectors_patched():
            return False
        hub = _hub.get_hub_if_exists()
        return hub is None or (not hub.adopted and hub.loop is not loop)

    @functools.wraps(add)
    def add_signal_handler(self, sig, callback, *args):
        if not nested(self):
            return add(self, sig, callback, *args)
        previous_fd = _current_wakeup_fd(signal)
        add(self, sig, callback, *args)  # asyncio's checks and bookkeeping
        signal.signal(sig, functools.partial(_deliver_signal, weakref.ref(self)))
        # The self-pipe's bytes only wake the loop now; the handler above already delivered.
        self._process_self_data = _ignore_self_pipe_data
        if previous_fd != -1:
            signal.set_wakeup_fd(previous_fd)  # leave the hub's wake-up fd in place

    @functools.wraps(remove)
    def remove_signal_handler(self, sig):
        if not nested(self):
            return remove(self, sig)
        previous_fd = _current_wakeup_fd(signal)
        removed = remove(self, sig)
        if previous_fd not in (-1, self._csock.fileno()):
            signal.set_wakeup_fd(previous_fd)
        return removed

    add_signal_handler.__loop_nesting__ = True
    return add_signal_handler, remove_signal_handler


_events = None


def install(asyncio, uvloop=None):
    """Wrap asyncio's entry points that start a loop (idempotent); called by
    :func:`loop._core.originals.prepare`, before any monkey patch."""
    global _events
    # asyncio's modules are imported here, not at the top: only prepare() imports asyncio,
    # so that ``import loop`` stays cheap.
    import asyncio.base_events as base_events
    import asyncio.runners as runners
    _events = asyncio.events
    run = _nestable_function(asyncio.run, "asyncio.run()")
    asyncio.run = run
    runners.run = run
    runners.Runner.run = _nestable(runners.Runner.run, "asyncio.Runner.run()", False)
    loop_class = base_events.BaseEventLoop
    loop_class.run_forever = _nestable(loop_class.run_forever, "loop.run_forever()", True)
    loop_class.run_until_complete = _nestable(loop_class.run_until_complete,
                                              "loop.run_until_complete()", True)
    import asyncio.unix_events as unix_events
    selector_loop = unix_events._UnixSelectorEventLoop
    selector_loop.add_signal_handler, selector_loop.remove_signal_handler = _signals_by_handler(
        selector_loop.add_signal_handler, selector_loop.remove_signal_handler)
    if uvloop is not None:
        uv_class = uvloop.Loop
        uv_class.run_forever = _refuse_in_green_thread(uv_class.run_forever)
        uv_class.run_until_complete = _refuse_in_green_thread(uv_class.run_until_complete)
