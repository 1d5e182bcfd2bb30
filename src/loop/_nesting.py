"""asyncio event loops run by green code: the "running loop" slot, per green thread.

Design
======

asyncio keeps one *running loop* per OS thread (``asyncio.get_running_loop()``, and the check
that refuses to start a second loop while one runs).  The hub's loop runs in this thread too, on
the hub fiber, so without help every green thread sees the hub's loop as running: fine for
``loop.await_`` and for asyncio code that schedules onto the hub, fatal for a green thread that
wants to run an asyncio loop of its own -- ``asyncio.run()`` in a program that called
``patch_all()``, or CPython's ``test_asyncio`` under the patch.  gevent never meets this because
its hub is not an asyncio loop.

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
leaving fiber's running loop if it differs from the *ambient* one (the hub's loop while it runs,
else None) and restores the arriving fiber's stored view, or the ambient one.  Fibers with the
ambient view -- nearly all of them -- cost no memory.  The hook stays for the thread's lifetime:
removing it while some fiber still has a stored view would leak that view into the hub.  Programs
that never nest loops never pay for it.

A running nested loop is also never *adopted* as the hub's loop (the hub adopts the loop of a
plain asyncio program that calls ``loop.run_green``), because its selector waits on the hub:
:data:`loop._hub.nested_loops` tells the hub which running loops are nested.

Signals: a process has one signal wake-up fd, and the hub's loop takes it while it runs (uvloop
always does in the main thread).  A signal handler that a nested loop adds with
``add_signal_handler`` is therefore also registered on the hub's loop, whose callback hands the
signal to the nested loop; whichever loop owns the wake-up fd at that moment sees the signal,
so it is delivered once.

uvloop's loop waits inside libuv, never in a Python selector, so it cannot be nested; starting
one in a green thread raises with that explanation.
"""
import _thread
import functools

from loop import _hub
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

_thread_state = _thread._local()
_stored_views = {}  # fiber -> its running loop, only where it differs from the ambient one
_originals = {}


def _ambient_view():
    hub = _hub.get_hub_if_exists()
    if hub is None:
        return None
    loop = hub.loop
    return loop if loop.is_running() else None


def _make_view_keeper(get_running, set_running, chained):
    stored = _stored_views
    ambient_view = _ambient_view

    def keep_views(event, fibers):
        origin, target = fibers
        view = get_running()
        ambient = ambient_view()
        if origin.dead or view is ambient:
            stored.pop(origin, None)
        else:
            stored[origin] = view
        arriving = stored.pop(target, ambient)
        if arriving is not view:
            set_running(arriving)
        if chained is not None:
            chained(event, fibers)

    return keep_views


def _install_view_keeper():
    if getattr(_thread_state, "installed", False):
        return
    events = _hub.prepare()["asyncio"].events
    settrace(_make_view_keeper(events._get_running_loop, events._set_running_loop, gettrace()))
    _thread_state.installed = True


def _selectors_patched():
    from loop._patch_registry import is_object_patched
    return is_object_patched("selectors", "DefaultSelector")


def _green_caller(hub):
    """True when called from a green thread of ``hub`` while the hub's loop runs."""
    return (hub is not None and not hub.adopted and getcurrent() is not hub.fiber
            and hub.loop.is_running())


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
        if hub is not None and (getcurrent() is hub.fiber or hub.adopted or loop is hub.loop):
            return  # asyncio's own rules apply: the hub fiber or an adopted program
        if view is not None and (hub is None or view is not hub.loop):
            return  # a nested loop already runs in this green thread: asyncio refuses itself
        if not _selectors_patched():
            if view is not None and _green_caller(hub):
                raise RuntimeError(NOT_PATCHED_MESSAGE.format(what=what))
            return
        _hub.get_hub()  # an owned hub, made before the nested loop could be adopted
        _install_view_keeper()
        self.active = True
        if view is not None:
            events._set_running_loop(None)
        if loop is not None:
            _hub.nested_loops.add(loop)

    def close(self):
        if self.active:
            self.active = False
            if self.loop is not None:
                _hub.nested_loops.discard(self.loop)
            self.events._set_running_loop(self.previous)


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
        if hub is not None and self is not hub.loop and getcurrent() is not hub.fiber \
                and not hub.adopted and _events._get_running_loop() is not None:
            raise RuntimeError(UVLOOP_MESSAGE)
        return method(self, *args, **kwargs)

    run.__loop_nesting__ = True
    return run


def _forward_signals(add, remove):
    if getattr(add, "__loop_nesting__", False):
        return add, remove

    def hub_for(loop):
        if not _selectors_patched():
            return None
        hub = _hub.get_hub_if_exists()
        if hub is None:
            hub = _hub.get_hub()
        if hub.adopted or hub.loop is loop:
            return None
        return hub

    @functools.wraps(add)
    def add_signal_handler(self, sig, callback, *args):
        add(self, sig, callback, *args)
        hub = hub_for(self)
        if hub is not None:
            try:
                hub.loop.add_signal_handler(sig, self._handle_signal, sig)
            except (RuntimeError, ValueError):
                pass  # not the main thread, or a closed hub: the nested loop's own fd serves

    @functools.wraps(remove)
    def remove_signal_handler(self, sig):
        removed = remove(self, sig)
        hub = _hub.get_hub_if_exists()
        if removed and hub is not None and not hub.adopted and hub.loop is not self:
            try:
                hub.loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
        return removed

    add_signal_handler.__loop_nesting__ = True
    return add_signal_handler, remove_signal_handler


_events = None


def install(asyncio, uvloop=None):
    """Wrap asyncio's entry points that start a loop (idempotent); called by the hub's
    :func:`loop._hub.prepare`, before any monkey patch."""
    global _events
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
    selector_loop.add_signal_handler, selector_loop.remove_signal_handler = _forward_signals(
        selector_loop.add_signal_handler, selector_loop.remove_signal_handler)
    if uvloop is not None:
        uv_class = uvloop.Loop
        uv_class.run_forever = _refuse_in_green_thread(uv_class.run_forever)
        uv_class.run_until_complete = _refuse_in_green_thread(uv_class.run_until_complete)
