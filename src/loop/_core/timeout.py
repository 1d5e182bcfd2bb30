"""``Timeout``: raise an exception in the current green thread after some seconds.

A Timeout is a hub timer that, when it fires, interrupts the green thread that started it at the
point where that thread waits.  It cannot interrupt code that never waits (a busy loop never
yields to the hub).  Like gevent's, it is a ``BaseException``, so ``except Exception`` does not
swallow it, and ``with Timeout(s, False):`` silently ends the block instead of raising.
"""
from loop._core.hub import get_hub
from loop._switch import getcurrent

__all__ = ["Timeout", "with_timeout", "timeout_object"]


class Timeout(BaseException):
    """Raise ``exception`` (default: this Timeout) in the current green thread after
    ``seconds``.

    * ``Timeout(None)`` never fires; ``exception=False`` makes the ``with`` block end quietly.
    * Use as a context manager, or call :meth:`start` and :meth:`cancel` yourself.
    * Nested timeouts are independent: each raises its own instance, so an inner ``with``
      never swallows an outer timeout.
    * ``ref=False``: a pending timeout does not keep the hub from raising ``LoopExit``.
    """

    def __init__(self, seconds=None, exception=None, ref=True):
        BaseException.__init__(self, seconds)
        self.seconds = seconds
        self.exception = exception
        self.ref = ref
        self._timer = None
        self._fiber = None

    def start(self):
        """Arm the timer for the current green thread."""
        if self.pending:
            raise AssertionError("%r is already started; cancel it before restarting" % self)
        if self.seconds is None:
            return
        hub = get_hub()
        self._fiber = getcurrent()
        self._timer = hub.call_later(self.seconds, self._expire, ref=self.ref)

    @classmethod
    def start_new(cls, timeout=None, exception=None, ref=True):
        """Create and start a Timeout (or start ``timeout`` itself if it is a Timeout)."""
        if isinstance(timeout, Timeout):
            if not timeout.pending:
                timeout.start()
            return timeout
        t = cls(timeout, exception, ref)
        t.start()
        return t

    def _expire(self):
        self._timer = None
        fiber, self._fiber = self._fiber, None
        hub = get_hub()
        if fiber is None or fiber is hub.fiber or fiber.dead:
            return
        hub.interrupt(fiber, self._exception_to_raise())

    def _exception_to_raise(self):
        exception = self.exception
        if exception is None or exception is False or isinstance(exception, str):
            return self  # (a string only changes the message: see __str__)
        if isinstance(exception, BaseException):
            return exception
        if isinstance(exception, type) and issubclass(exception, BaseException):
            return exception(str(self))
        # What ``raise exception`` would say, raised where the timed-out code waits.
        return TypeError("exceptions must be classes or instances deriving from "
                         "BaseException, not %s" % type(exception).__name__)

    @classmethod
    def _start_new_or_dummy(cls, timeout, exception=None, ref=True):
        """A started Timeout for ``timeout`` seconds, or one that never fires if ``timeout``
        is None; either way the caller cancels it (gevent's spelling, used by ports)."""
        if timeout is None:
            return cls(None)
        return cls.start_new(timeout, exception, ref)

    @property
    def pending(self):
        """True while the timer is armed."""
        return self._timer is not None

    def cancel(self):
        """Disarm the timer (no-op if it is not armed)."""
        timer = self._timer
        if timer is not None:
            self._timer = None
            self._fiber = None
            timer.cancel()

    close = cancel

    def __enter__(self):
        if not self.pending:
            self.start()
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.cancel()
        if exc_value is self and self.exception is False:
            return True
        return None

    def __str__(self):
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None:
            return "%s second%s" % (self.seconds, suffix)
        if self.exception is False:
            return "%s second%s (silent)" % (self.seconds, suffix)
        return "%s second%s: %s" % (self.seconds, suffix, self.exception)

    def __repr__(self):
        return "<%s at %#x seconds=%r exception=%r pending=%s>" % (
            type(self).__name__, id(self), self.seconds, self.exception, self.pending)


_NONE = object()


def with_timeout(seconds, function, *args, **kwargs):
    """Call ``function(*args, **kwargs)``; if it takes longer than ``seconds``, raise
    ``Timeout`` -- or return ``timeout_value`` when that keyword is given."""
    timeout_value = kwargs.pop("timeout_value", _NONE)
    timeout = Timeout.start_new(seconds)
    try:
        return function(*args, **kwargs)
    except Timeout as exc:
        if exc is timeout and timeout_value is not _NONE:
            return timeout_value
        raise
    finally:
        timeout.cancel()


class timeout_object:
    """``with timeout_object(t):`` -- how a wait that was given a :class:`Timeout` instead of
    seconds uses it (gevent's waits accept both): start ``t`` unless it is already pending,
    wait without a timeout of its own (``t`` raises in the waiting green thread when it
    expires), cancel ``t`` at the end."""
    __slots__ = ("timeout",)

    def __init__(self, timeout):
        self.timeout = timeout

    def __enter__(self):
        if not self.timeout.pending:
            self.timeout.start()
        return self.timeout

    def __exit__(self, *exc_info):
        self.timeout.cancel()


# Classes show (and pickle under) their public module's name.
for _public in __all__:
    _public = globals()[_public]
    if isinstance(_public, type) and _public.__module__ == __name__:
        _public.__module__ = "loop.timeout"
del _public
