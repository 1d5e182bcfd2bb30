"""The module-level green API with gevent's names: spawn, sleep, joinall, wait, iwait...

Everything here is a thin layer over :mod:`loop._core.hub` and :mod:`loop._core.waiter`
(waiting) and :mod:`loop._core.greenlet` (green threads); nothing in this module switches fibers
itself.
"""
import os

from loop._core.greenlet import DIRECT_LINK_TYPES, Greenlet, GreenletExit
from loop._core.hub import get_hub
from loop._core.hub import reinit as reinit
from loop._core.hub import sleep as sleep
from loop._core.originals import monotonic
from loop._core.timeout import Timeout
from loop._core.waiter import TIMED_OUT, Waiter
from loop._switch import Fiber, getcurrent

__all__ = ["spawn", "spawn_later", "spawn_raw", "joinall", "killall", "kill", "wait", "iwait",
           "sleep", "idle", "getcurrent", "get_hub", "signal_handler", "reinit", "fork"]


#: ``spawn(function, *args, **kwargs)``: start ``function`` in a new :class:`Greenlet` and
#: return it (the classmethod itself, as in gevent: one call, on the hot path of every spawn).
spawn = Greenlet.spawn


def spawn_later(seconds, function, *args, **kwargs):
    """Like :func:`spawn`, starting after ``seconds``."""
    g = Greenlet(function, *args, **kwargs)
    g.start_later(seconds)
    return g


def spawn_raw(function, *args, **kwargs):
    """Start ``function`` in a bare fiber: no result, no links, errors go to the hub.

    Cheapest way to run something concurrently; returns the fiber."""
    if not callable(function):
        raise TypeError("function must be callable, not %r" % (function,))
    hub = get_hub()
    # The hub starts fibers with switch(None); the lambda takes and drops that value.
    fiber = Fiber(lambda _unused=None: function(*args, **kwargs), hub.fiber)
    hub.schedule_start(fiber)
    return fiber


def idle(priority=0):
    """Block until no other green thread is ready to run."""
    get_hub().idle()


def fork():
    """``os.fork()``; the child gets a fresh working hub (this happens for any os.fork)."""
    return os.fork()


def kill(greenlet, exception=GreenletExit, block=True, timeout=None):
    """Kill a :class:`Greenlet` (or raise ``exception`` in a raw fiber from the hub)."""
    if isinstance(greenlet, Greenlet):
        greenlet.kill(exception, block=block, timeout=timeout)
    elif not greenlet.dead:
        if isinstance(exception, type):
            exception = exception()
        get_hub().interrupt(greenlet, exception)


# ---------------------------------------------------------------------------------------------
# Waiting for several objects

class _Collector:
    """Collects objects as they become ready (used as a link on each); wakes one waiter."""
    __slots__ = ("ready", "waiter")

    def __init__(self):
        self.ready = []
        self.waiter = None

    def __call__(self, source):
        self.ready.append(source)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.wake()


DIRECT_LINK_TYPES.add(_Collector)


def _iwait(objects, timeout, count):
    objects = list(objects)
    if count is None:
        count = len(objects)
    else:
        count = min(count, len(objects))
    if count <= 0:
        return
    collector = _Collector()
    for obj in objects:
        obj.rawlink(collector)
    deadline = None if timeout is None else monotonic() + timeout
    ready = collector.ready
    position = 0
    try:
        while position < count:
            if position >= len(ready):
                waiter = Waiter()
                collector.waiter = waiter
                if deadline is None:
                    waiter.wait()
                else:
                    remaining = deadline - monotonic()
                    if remaining <= 0 or waiter.wait(remaining) is TIMED_OUT:
                        collector.waiter = None
                        if position >= len(ready):
                            return
                continue
            item = ready[position]
            position += 1
            yield item
    finally:
        for obj in objects:
            obj.unlink(collector)


class _WaitIterator:
    """What :func:`iwait` returns: an iterator, and a context manager whose exit (like
    ``close()``, or the end of the iteration) removes its links from every object.  The
    iteration itself is a generator (linking on first use); ``for`` loops get it directly, so
    they pay nothing for the wrapper."""
    __slots__ = ("_iterator",)

    def __init__(self, objects, timeout, count):
        self._iterator = _iwait(objects, timeout, count)

    def __iter__(self):
        return self._iterator

    def __next__(self):
        return next(self._iterator)

    def close(self):
        self._iterator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._iterator.close()


def iwait(objects, timeout=None, count=None):
    """Iterate over ``objects`` (green threads, events, async results: anything with
    ``rawlink`` and ``unlink``) as they become ready; stop after ``count`` of them or
    ``timeout`` seconds.  Also a context manager (``with iwait(objs) as it:``) that unlinks
    on exit when the iteration is left early."""
    return _WaitIterator(objects, timeout, count)


def wait(objects=None, timeout=None, count=None):
    """Wait for ``objects`` to become ready and return the ready ones (at most ``count``).

    Without ``objects``, wait until the hub has nothing left to run (True) or ``timeout``
    passes (False)."""
    if objects is None:
        return get_hub().join(timeout)
    return list(_iwait(objects, timeout, count))


def joinall(greenlets, timeout=None, raise_error=False, count=None):
    """Wait for the green threads to finish; return the finished ones.

    With ``raise_error``, the first error of a finished green thread is raised at once."""
    if not raise_error:
        return wait(greenlets, timeout, count)
    done = []
    iterator = iwait(greenlets, timeout, count)
    try:
        for g in iterator:
            exception = getattr(g, "exception", None)
            if exception is not None:
                raise exception
            done.append(g)
    finally:
        iterator.close()
    return done


def killall(greenlets, exception=GreenletExit, block=True, timeout=None):
    """Kill every green thread in ``greenlets`` (Greenlets or raw fibers); with ``block``, wait
    for them, raising :class:`loop.Timeout` if they are not all dead after ``timeout``."""
    current = getcurrent()
    alive = [g for g in greenlets if not g.dead and g is not current]
    for g in alive:
        kill(g, exception, block=False)
    if not (block and alive) or current is get_hub().fiber:
        return
    with Timeout(timeout):  # seconds, or None: no timer
        wait([g for g in alive if isinstance(g, Greenlet)])
        while any(not g.dead for g in alive):  # raw fibers: nothing to link to
            get_hub().sleep(0.001)


# ---------------------------------------------------------------------------------------------
# Signals

class SignalHandler:
    """Runs ``handler(*args, **kwargs)`` in a new green thread each time the signal arrives; an
    exception it raises is printed and raised in the main green thread.

    Returned by :func:`signal_handler`; :meth:`cancel` removes it."""

    #: A signal handler does not keep the hub from raising LoopExit (gevent's watcher ``ref``).
    ref = False

    def __init__(self, signalnum, handler, args=(), kwargs=None):
        if not callable(handler):
            raise TypeError("signal handler must be callable, not %r" % (handler,))
        self.hub = get_hub()
        self.signalnum = signalnum
        self.handler = handler
        self.args = args
        self.kwargs = kwargs or {}
        self.hub.loop.add_signal_handler(signalnum, self._fire)

    def _fire(self):
        Greenlet.spawn(self._call)

    def _call(self):
        try:
            self.handler(*self.args, **self.kwargs)
        except Exception as exc:
            # As the exception of a Python signal handler surfaces in the main thread, this one
            # is raised in the main green thread: gevent's handle_error(None, ...) convention.
            self.hub.handle_error(None, type(exc), exc, exc.__traceback__)

    def cancel(self):
        self.hub.loop.remove_signal_handler(self.signalnum)

    def __repr__(self):
        return "<SignalHandler %s -> %r>" % (self.signalnum, self.handler)


def signal_handler(signalnum, handler, *args, **kwargs):
    """Call ``handler(*args, **kwargs)`` in a new green thread whenever ``signalnum`` arrives
    (main thread only).  Returns a :class:`SignalHandler` with ``cancel()``."""
    return SignalHandler(signalnum, handler, args, kwargs)
