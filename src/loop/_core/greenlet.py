"""``Greenlet``: a green thread with a result, links and gevent's API.

Design
======

A :class:`Greenlet` *is* a fiber (a subclass of ``loop._switch.Fiber``), not a wrapper around
one: one object per green thread, no indirection on every switch, and ``getcurrent()`` returns the
``Greenlet`` itself, so ``getcurrent().name`` works as gevent users expect.  Its parent is the
hub's fiber, so when the function returns, control goes back to the hub loop that started it.

Lifecycle.  ``start()`` queues the green thread in the hub's ready queue; the hub's first switch
into it calls :meth:`Greenlet.run`, which calls the user function and records the outcome.  Every
exception is caught there: an error is stored, reported once through ``Hub.handle_error``
(KeyboardInterrupt and SystemExit are forwarded to the main green thread instead), and never
reaches the hub.  ``GreenletExit`` (``FiberExit``) counts as a successful end, whose value is the
exception instance, as in gevent.

Links.  ``rawlink(callback)`` callbacks run in the hub once the green thread is done and must not
block; ``link(callback)`` runs each callback in a new green thread.  Waiting on a green thread
(``join``, ``get``, ``iwait``) is itself a link, but a cheap one: a
:class:`loop._core.waiter.Waiter` (or another type in ``DIRECT_LINK_TYPES``) only queues a
wake-up, so it is fired straight from the finishing green thread instead of through an extra hub
callback (:mod:`loop._core.links`, shared with ``Event``).

Killing.  ``kill()`` asks the hub to raise ``GreenletExit`` (or any exception) at the point where
the target waits, so the target's ``finally`` blocks and context managers run.  A green thread
that has not started yet is marked dead without ever running.

contextvars.  Each green thread starts in a *copy* of its creator's context, as an asyncio task
does: values set before ``spawn`` are visible in the child, and what the child sets stays in the
child.  (greenlet gives new greenlets an empty context instead.)  The copy is taken when the
green thread is created but made lazily (``Fiber(copy_context=True)`` keeps only the creator's
variables, which are immutable, until the fiber starts or ``.context`` is read), because a
Context object per waiting green thread was a third of the collector's work when spawning many.

Links.  A single link is stored as it is, not in a list: a join or ``joinall`` then costs no
extra GC-tracked object per green thread waited for.

Switching.  Besides the hub, this is the only module that switches fibers, and only in
``Greenlet.throw`` (an immediate throw, gevent's semantics for that method).
"""
import sys
from itertools import count as _count

from loop._core.hub import current_hub
from loop._core.links import DIRECT_LINK_TYPES, check_link, notify, notify_one, without
from loop._core.timeout import Timeout as _Timeout
from loop._core.timeout import timeout_object
from loop._core.waiter import Waiter
from loop._switch import Fiber, FiberExit, getcurrent

__all__ = ["Greenlet", "GreenletExit", "joinall", "killall", "DIRECT_LINK_TYPES"]

GreenletExit = FiberExit

_NO_KWARGS = {}  # shared by finished green threads; never mutated
_fiber_dead = Fiber.dead.__get__
_fiber_bool = Fiber.__bool__
_idents = _count(1)


class Greenlet(Fiber):
    """A green thread running ``run(*args, **kwargs)``; see the module docstring."""

    __slots__ = ("_run", "args", "kwargs", "_hub", "_done", "value", "_exception", "_links",
                 "_name", "_ident", "_start_timer", "_scheduled")

    def __init__(self, run=None, *args, **kwargs):
        hub = current_hub()
        # copy_context: run in a copy of the spawner's context as of now; the C side keeps the
        # spawner's variables and makes the Context only when the green thread starts.
        Fiber.__init__(self, None, hub.fiber, True)
        if run is not None:
            if not callable(run):
                raise TypeError("The run argument or self._run must be callable")
            self._run = run
        elif type(self)._run is _RUN_SLOT:  # neither a callable nor a subclass _run method
            self._run = _do_nothing
        self.args = args
        self.kwargs = kwargs
        self._hub = hub
        self._done = False
        self.value = None
        self._exception = None
        self._links = None
        self._name = None
        self._ident = None
        self._start_timer = None
        self._scheduled = False

    # -- creating and starting ------------------------------------------------------------

    @classmethod
    def spawn(cls, *args, **kwargs):
        """Start ``function(*args, **kwargs)`` in a new green thread of this class and return
        it: ``Greenlet.spawn(function, *args, **kwargs)``, also ``loop.spawn``."""
        g = cls(*args, **kwargs)
        g._scheduled = True
        g._hub.enqueue(g)  # a bare fiber in the ready queue is its start
        return g

    @classmethod
    def spawn_later(cls, seconds, *args, **kwargs):
        """Create a green thread that starts after ``seconds``."""
        g = cls(*args, **kwargs)
        g.start_later(seconds)
        return g

    def start(self):
        """Schedule the green thread to run soon (no-op if already scheduled or started)."""
        if not self._scheduled and not self._done:
            self._scheduled = True
            self._hub.schedule_start(self)

    def start_later(self, seconds):
        """Schedule the green thread to run after ``seconds``."""
        if not self._scheduled and not self._done:
            self._scheduled = True
            self._start_timer = self._hub.call_later(seconds, self._start_from_timer)

    def _start_from_timer(self):
        self._start_timer = None
        if not self._done:
            self._hub.schedule_start(self)

    def run(self, _unused=None):
        # The hub starts us with switch(None); that value arrives here and is ignored.
        if self._done:  # killed before it started
            return
        try:
            result = self._run(*self.args, **self.kwargs)
        except FiberExit as exc:
            self._finish(exc, None)
        except BaseException as exc:
            self._finish(None, exc)
        else:
            # _finish(result, None), inlined: this is the path of every green thread
            self._done = True
            self.args = ()
            self.kwargs = _NO_KWARGS
            self.value = result
            links = self._links
            if links is not None:
                self._links = None
                notify(self, links, self._hub)

    def _finish(self, value, exc):
        self._done = True
        self.args = ()
        self.kwargs = _NO_KWARGS
        if exc is None:
            self.value = value
        else:
            self._exception = exc
        if self._links is not None:
            self._fire_links()
        if exc is not None:
            self._hub.handle_error(self, type(exc), exc, exc.__traceback__)

    # -- state ----------------------------------------------------------------------------

    @property
    def dead(self):
        return self._done or _fiber_dead(self)

    @property
    def started(self):
        """True from ``start()`` until it finishes (gevent's meaning: the same as ``bool``)."""
        return self.__bool__()

    def __bool__(self):
        return (self._scheduled or _fiber_bool(self)) and not self._done

    def ready(self):
        """True once the green thread finished (or was killed before it started)."""
        return self._done

    def successful(self):
        """True if it finished without an error (GreenletExit counts as success)."""
        return self._done and self._exception is None

    @property
    def exception(self):
        """The exception that ended it, or None."""
        return self._exception

    @property
    def exc_info(self):
        exc = self._exception
        if exc is None:
            return None
        return type(exc), exc, exc.__traceback__

    @property
    def name(self):
        if self._name is None:
            self._name = "Greenlet-%d" % self.minimal_ident
        return self._name

    @name.setter
    def name(self, value):
        self._name = str(value)

    @property
    def minimal_ident(self):
        """A small integer that identifies this green thread in output."""
        if self._ident is None:
            self._ident = next(_idents)
        return self._ident

    def __repr__(self):
        # gevent's format: the name only once it was set or asked for, then the call.
        name = "" if self._name is None else ' "%s"' % (self._name,)
        return "<%s%s at %#x: %s>" % (type(self).__name__, name, id(self), self._describe_call())

    def _describe_call(self):
        run = getattr(self, "_run", None)
        if run is _do_nothing or getattr(run, "__self__", None) is self:
            described = "_run"  # a subclass's own _run (or none)
        elif getattr(run, "__self__", None) is not None:
            described = repr(run)  # a bound method of another object
        else:
            described = getattr(run, "__name__", None) or repr(run)
        args = [repr(a)[:50] for a in self.args]
        args += ["%s=%s" % (key, repr(value)[:50]) for key, value in self.kwargs.items()]
        return "%s(%s)" % (described, ", ".join(args)) if args else described

    # -- waiting for it -------------------------------------------------------------------

    def join(self, timeout=None):
        """Wait until it finishes or ``timeout`` passes; never raises its exception."""
        if self._done:
            return
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):  # (gevent's waits also take a Timeout)
                return self.join()
        waiter = Waiter()
        self.rawlink(waiter)
        try:
            waiter.wait(timeout)
        finally:
            if not self._done:
                self.unlink(waiter)

    def get(self, block=True, timeout=None):
        """Return its result or raise its exception; wait first when ``block``.

        Raises :class:`loop.Timeout` if it is not done in time (at once when not ``block``)."""
        if not self._done:
            if not block:
                raise _Timeout(0)
            self.join(timeout)
            if not self._done:
                raise _Timeout(timeout)
        if self._exception is not None:
            raise self._exception
        return self.value

    def __await__(self):
        # In-function import: greenlet -> interop -> api -> greenlet.
        from loop._core.interop import wait_greenlet_future
        return wait_greenlet_future(self).__await__()

    # -- killing ----------------------------------------------------------------------------

    def kill(self, exception=GreenletExit, block=True, timeout=None):
        """Raise ``exception`` in the green thread where it waits; wait for it to end if
        ``block``.  A green thread that has not started yet is marked dead without running.

        ``exception`` may be a class, an instance, or a ``(type, value, traceback)`` tuple."""
        if self._done:
            return
        if type(exception) is tuple:
            exc_type, value, tb = (tuple(exception) + (None, None))[:3]
            exception = value if value is not None else exc_type
            if tb is not None and isinstance(exception, BaseException):
                exception = exception.with_traceback(tb)
        if isinstance(exception, type):
            exception = exception()
        if not _fiber_bool(self):  # not started yet: dead at once, without running
            self._cancel_start()
            self._done = True
            self.args = ()
            self.kwargs = _NO_KWARGS
            if isinstance(exception, FiberExit):
                self.value = exception
            else:
                self._exception = exception
            if self._links is not None:
                # As when it finishes by itself, its links (group membership, joins) run after
                # the killer continues, not inside kill().
                self._hub.run_callback(self._fire_links)
            return
        if self is getcurrent():
            raise exception
        self._hub.interrupt(self, exception)
        if block and getcurrent() is not self._hub.fiber:
            self.join(timeout)

    # -- as a context manager: the green thread does not outlive the block -------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        """Leaving normally waits for the green thread, then kills it if a timeout or an
        interruption left it running; leaving by an exception kills it with that exception."""
        if exc_type is None:
            try:
                self.join()
            finally:
                self.kill()
        else:
            self.kill((exc_type, exc_value, tb))

    def throw(self, *args):
        """Raise an exception in the green thread *now* (gevent semantics: call it from the
        hub, or the calling green thread is not rescheduled)."""
        if not _fiber_bool(self) and not self._done:
            self._cancel_start()
        return Fiber.throw(self, *args)

    def _cancel_start(self):
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None

    # -- links ------------------------------------------------------------------------------

    def rawlink(self, callback):
        """Call ``callback(self)`` in the hub once it is done (soon, if it already is)."""
        if type(callback) not in DIRECT_LINK_TYPES:  # (join's Waiter skips a call)
            check_link(callback)
        if self._done:
            notify_one(self, callback, self._hub)
            return
        # One link (the common case: a join or joinall) is kept as it is, not in a list: a
        # list per waited-for green thread would be one more GC-tracked object each.
        links = self._links
        if links is None:
            self._links = callback
        elif type(links) is list:
            links.append(callback)
        else:
            self._links = [links, callback]

    def link(self, callback):
        """Run ``callback(self)`` in a new green thread once it is done."""
        self.rawlink(_SpawnedLink(callback))

    def link_value(self, callback):
        """Like :meth:`link`, only if it finishes successfully."""
        self.rawlink(_SuccessLink(callback))

    def link_exception(self, callback):
        """Like :meth:`link`, only if it fails."""
        self.rawlink(_FailureLink(callback))

    def unlink(self, callback):
        """Remove every link to ``callback``."""
        links = self._links
        if links is None:
            return
        if type(links) is not list:
            links = [links]
        self._links = without(links, callback) or None

    def unlink_all(self):
        self._links = None

    def has_links(self):
        return self._links is not None

    def _fire_links(self):
        links, self._links = self._links, None
        if links is not None:
            notify(self, links, self._hub)


_RUN_SLOT = Greenlet._run


def _do_nothing(*args, **kwargs):
    return None


class _SpawnedLink:
    __slots__ = ("callback",)

    def __init__(self, callback):
        if not callable(callback):
            raise TypeError("Expected callable: %r" % (callback,))
        self.callback = callback

    def __call__(self, source):
        Greenlet.spawn(self.callback, source)

    def __eq__(self, other):
        return self.callback == getattr(other, "callback", other)

    def __hash__(self):
        return hash(self.callback)


class _SuccessLink(_SpawnedLink):
    __slots__ = ()

    def __call__(self, source):
        if source.successful():
            Greenlet.spawn(self.callback, source)


class _FailureLink(_SpawnedLink):
    __slots__ = ()

    def __call__(self, source):
        if not source.successful():
            Greenlet.spawn(self.callback, source)


if sys.version_info < (3, 11):  # pragma: no cover
    raise ImportError("loop needs Python 3.11 or newer")


def joinall(greenlets, timeout=None, raise_error=False, count=None):
    """:func:`loop.joinall` (gevent.greenlet exports it here too)."""
    # In-function import: greenlet -> api -> greenlet (api spawns Greenlets).
    from loop._core.api import joinall
    return joinall(greenlets, timeout, raise_error, count)


def killall(greenlets, exception=GreenletExit, block=True, timeout=None):
    """:func:`loop.killall` (gevent.greenlet exports it here too)."""
    # In-function import: greenlet -> api -> greenlet (api spawns Greenlets).
    from loop._core.api import killall
    return killall(greenlets, exception, block, timeout)


# Classes show (and pickle under) their public module's name.
for _public in __all__:
    _public = globals()[_public]
    if isinstance(_public, type) and _public.__module__ == __name__:
        _public.__module__ = "loop.greenlet"
del _public
