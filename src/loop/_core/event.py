"""``Event`` and ``AsyncResult``: one green thread (or OS thread) tells others that something
happened.

Both wait through :class:`loop._core.waiter.Waiter` and wake by queueing their waiters in the hub,
so ``set()`` never switches: the caller keeps running and the waiters run after it yields.  Both can
be set from another OS thread (the wake-ups then go through the waiting hub's thread-safe
callback) and both support ``rawlink``/``unlink``, so ``loop.wait`` and ``loop.iwait`` accept
them.
"""
from loop._core.hub import get_hub
from loop._core.links import DIRECT_LINK_TYPES, check_link, notify, notify_one, without
from loop._core.timeout import Timeout as _Timeout
from loop._core.timeout import timeout_object
from loop._core.waiter import TIMED_OUT, Waiter

__all__ = ["Event", "AsyncResult"]


class _Linkable:
    __slots__ = ("_waiters", "_links", "_link_hub", "_abandoned", "__weakref__")

    def __init__(self):
        self._waiters = []
        self._links = None
        self._link_hub = None
        self._abandoned = 0

    def _wait_for_notify(self, timeout):
        """Block until notified; True if woken, False if ``timeout`` passed.

        ``timeout`` may be a :class:`loop.Timeout`, as in gevent: it is started if it is not
        yet, raises its exception in here when it expires, and is cancelled afterwards."""
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):
                return self._wait_for_notify(None)
        waiter = Waiter()
        self._waiters.append(waiter)
        try:
            result = waiter.wait(timeout)
        except BaseException:
            self._forget(waiter)
            raise
        if result is TIMED_OUT:
            self._forget(waiter)
            return False
        return True

    def _forget(self, waiter):
        # Leaving the list entry in place is O(1); compact once half of it is abandoned, so a
        # loop of short timed waits on an event that is never set does not grow it forever.
        self._abandoned += 1
        if self._abandoned * 2 > len(self._waiters):
            self._waiters = [w for w in self._waiters if w.waiting]
            self._abandoned = 0

    def _notify(self):
        waiters = self._waiters
        if waiters:
            self._waiters = []
            self._abandoned = 0
            for waiter in waiters:
                waiter.wake(True)
        links = self._links
        if links:
            notify(self, links, self._link_hub)  # the links stay for the next set()

    def rawlink(self, callback):
        """Call ``callback(self)`` in the hub whenever this becomes ready (soon, if it is)."""
        if type(callback) not in DIRECT_LINK_TYPES:  # (join's Waiter skips a call)
            check_link(callback)
        if self._link_hub is None:
            self._link_hub = get_hub()
        if self._links is None:
            self._links = []
        self._links.append(callback)
        if self.ready():
            notify_one(self, callback, self._link_hub)

    def unlink(self, callback):
        links = self._links
        if links:
            self._links = without(links, callback)

    def ready(self):
        raise NotImplementedError

    def linkcount(self):
        """How many callbacks (rawlink) and waiting green threads will be notified."""
        links = len(self._links) if self._links else 0
        return links + sum(1 for waiter in self._waiters if waiter.waiting)


class Event(_Linkable):
    """A flag that green threads can wait for: ``set()``, ``clear()``, ``wait()``."""
    __slots__ = ("_flag",)

    def __init__(self):
        _Linkable.__init__(self)
        self._flag = False

    def __repr__(self):
        return "<%s %s waiters=%d>" % (type(self).__name__, "set" if self._flag else "clear",
                                       sum(1 for w in self._waiters if w.waiting))

    def is_set(self):
        return self._flag

    isSet = is_set
    ready = is_set

    def set(self):
        """Set the flag and wake every waiting green thread."""
        self._flag = True
        self._notify()

    def clear(self):
        self._flag = False

    def wait(self, timeout=None):
        """Block until the flag is set; return True, or the flag (False) after ``timeout``.

        A green thread woken by ``set()`` returns True even if the flag was cleared again
        before it ran."""
        if self._flag:
            return True
        if self._wait_for_notify(timeout):
            return True
        return self._flag


class AsyncResult(_Linkable):
    """A value (or an exception) that will be available later: ``set()`` / ``set_exception()``
    once, ``get()`` as often as you like."""
    __slots__ = ("_value", "_exception", "_traceback", "_ready")

    def __init__(self):
        _Linkable.__init__(self)
        self._value = None
        self._exception = None
        self._traceback = None
        self._ready = False

    def __repr__(self):
        if not self._ready:
            state = "unset"
        elif self._exception is not None:
            state = "exception=%r" % (self._exception,)
        else:
            state = "value=%r" % (self._value,)
        return "<%s %s>" % (type(self).__name__, state)

    def ready(self):
        return self._ready

    def successful(self):
        return self._ready and self._exception is None

    @property
    def value(self):
        """The value, or None if not set or failed."""
        return self._value

    @property
    def exception(self):
        return self._exception

    @property
    def exc_info(self):
        exc = self._exception
        return (type(exc), exc, self._traceback) if exc is not None else ()

    def set(self, value=None):
        """Store ``value`` and wake every waiter."""
        self._value = value
        self._exception = None
        self._traceback = None
        self._ready = True
        self._notify()

    def set_exception(self, exception, exc_info=None):
        """Store ``exception``: ``get()`` will raise it."""
        if isinstance(exception, type):
            exception = exception()
        if exc_info is not None and exc_info[2] is not None:
            exception = exception.with_traceback(exc_info[2])
        self._exception = exception
        self._traceback = exception.__traceback__
        self._ready = True
        self._notify()

    def get(self, block=True, timeout=None):
        """Return the value or raise the exception; wait first when ``block``.  Raises
        :class:`loop.Timeout` if not set in time (at once when not ``block``)."""
        if not self._ready:
            if not block or not self._wait_for_notify(timeout):
                if not self._ready:
                    raise _Timeout(timeout if block else 0)
        exception = self._exception
        if exception is not None:
            # Re-raise with the traceback it was stored with: raising the same object again
            # would otherwise grow its traceback by this frame on every get().
            raise exception.with_traceback(self._traceback)
        return self._value

    def get_nowait(self):
        return self.get(block=False)

    def wait(self, timeout=None):
        """Block until ready (or ``timeout``); return the value (None if not ready/failed)."""
        if not self._ready:
            self._wait_for_notify(timeout)
        return self._value

    def __call__(self, source):
        """Use an AsyncResult as a link: ``greenlet.rawlink(result)`` copies its outcome."""
        if source.successful():
            self.set(source.value)
        else:
            self.set_exception(source.exception)

    # asyncio-style names, handy for code that treats it like a future
    def result(self, timeout=None):
        return self.get(timeout=timeout)

    def done(self):
        return self._ready


# Classes show (and pickle under) their public module's name.
for _public in __all__:
    _public = globals()[_public]
    if isinstance(_public, type) and _public.__module__ == __name__:
        _public.__module__ = "loop.event"
del _public
