"""gevent's conventions on loop's hub: the Hub class get_hub() makes, and gevent's Waiter API.

Why a subclass
==============
:class:`loop._core.hub.Hub` is the scheduler: it knows how to run, wait and wake, and reports an
error that ended a green thread through one method, ``handle_error``.  gevent programs customise
exactly that method and the class attributes it reads -- ``SYSTEM_ERROR`` (errors that are
re-raised in the main green thread instead of printed), ``NOT_ERROR`` (exits that are not printed
at all) -- usually by subclassing the hub, and they reach the main green thread as ``hub.parent``
and the loop's clock as ``hub.loop.now()``.  Those are conventions of a public API, not of
scheduling, so they live here, on a subclass, and the scheduler stays free of them.  get_hub()
creates this class unless ``set_default_hub_class`` chose a subclass of it.

The rules ``handle_error(context, type, value, tb)`` follows, like gevent's:

* an error whose type is in ``NOT_ERROR`` is not printed;
* any other is printed by ``print_exception`` to ``exception_stream`` (stderr);
* an error in ``SYSTEM_ERROR``, or one without a context (nobody owns it), is then raised in the
  main green thread (``handle_system_error``), which is how Ctrl-C in a green thread stops the
  program.

gevent's loop methods
---------------------
``hub.loop`` is the hub's asyncio event loop.  Code written for gevent also calls a few methods
of gevent's libev/libuv loop object on it; the hub gives its loop those, built on the hub:

* ``now()`` / ``update_now()``: gevent's loop caches its time once per iteration and refreshes
  it on request.  asyncio reads its clock on each ``time()`` call, so ``now()`` is ``time()``
  and ``update_now()`` has nothing to do.
* ``run_callback(fn, *args)``: call ``fn`` in the hub soon, in order with the ready green
  threads; returns a handle with ``stop()`` and ``pending``.
* ``timer(after, repeat=0.0, ref=True)``: a timer watcher with ``start(callback, *args)``,
  ``stop()``/``close()``, ``again()``, ``active`` and ``pending``; ``ref=False`` does not keep
  the hub from raising ``LoopExit``.

Other libev watchers (``io``, ``signal``, ``child``, ``prepare``...) have no counterpart: use
``loop.wait_readable``/``wait_writable``, ``loop.signal_handler`` and ``loop.os.waitpid``.
"""
import sys
import threading
import traceback

from loop._core import hub as _hub
from loop._core import waiter as _waiter
from loop._core.exceptions import safe_repr
from loop._switch import FiberExit

__all__ = ["Hub", "Waiter", "get_hub_class", "set_default_hub_class"]


def _update_now():
    """asyncio's loop reads its clock on every call: nothing to refresh."""


class _Callback:
    """What ``hub.loop.run_callback`` returns: ``stop()`` before it ran cancels it."""
    __slots__ = ("callback", "args")

    def __init__(self, callback, args):
        self.callback = callback
        self.args = args

    def _run(self):
        callback, args = self.callback, self.args
        if callback is not None:
            self.callback = self.args = None
            callback(*args)

    @property
    def pending(self):
        return self.callback is not None

    def stop(self):
        self.callback = self.args = None

    close = stop

    def __repr__(self):
        return "<callback %r%r%s>" % (self.callback, self.args or (),
                                      "" if self.pending else " done")


class _Timer:
    """What ``hub.loop.timer(after, repeat)`` returns: a timer watcher on the hub."""

    def __init__(self, hub, after, repeat, ref):
        if after < 0 or repeat < 0:
            raise ValueError("timer delays must not be negative: %r, %r" % (after, repeat))
        self.hub = hub
        self.after = after
        self.repeat = repeat
        self.ref = ref
        self._handle = None
        self.callback = None
        self.args = ()

    @property
    def active(self):
        return self._handle is not None

    pending = active

    def start(self, callback, *args, update=None):
        """Call ``callback(*args)`` in the hub after ``after`` seconds (then every ``repeat``
        seconds if that is not 0) until stopped."""
        self.stop()
        self.callback = callback
        self.args = args
        self._handle = self.hub.call_later(self.after, self._fire, ref=self.ref)

    def again(self, callback, *args, update=True):
        """Restart the timer from now."""
        self.start(callback, *args)

    def _fire(self):
        self._handle = None
        callback, args = self.callback, self.args
        if self.repeat:
            self._handle = self.hub.call_later(self.repeat, self._fire, ref=self.ref)
        callback(*args)

    def stop(self):
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def close(self):
        self.stop()
        self.callback = None
        self.args = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<timer after=%r repeat=%r%s>" % (self.after, self.repeat,
                                                  " active" if self.active else "")


def _add_gevent_loop_methods(hub):
    asyncio_loop = hub.loop
    if getattr(asyncio_loop, "run_callback", None) is not None:
        return

    def run_callback(callback, *args):
        handle = _Callback(callback, args)
        hub.run_callback(handle._run)
        return handle

    def timer(after, repeat=0.0, ref=True, priority=None):
        return _Timer(hub, after, repeat, ref)

    try:
        asyncio_loop.now = asyncio_loop.time
        asyncio_loop.update_now = _update_now
        asyncio_loop.run_callback = run_callback
        asyncio_loop.timer = timer
    except AttributeError:  # a loop type without instance attributes (an adopted uvloop)
        pass


class Hub(_hub.Hub):
    """The per-thread hub, with gevent's error-handling conventions (see the module docstring).

    Subclass it to change how errors are reported, and install the subclass with
    :func:`set_default_hub_class` before the thread's hub is created.
    """

    #: Raised in the main green thread (after printing) rather than only printed.
    SYSTEM_ERROR = (KeyboardInterrupt, SystemExit, SystemError)
    #: Not printed: ways to end a green thread that are not failures.
    NOT_ERROR = (FiberExit, SystemExit)

    def __init__(self, adopt_loop=None):
        super().__init__(adopt_loop)
        _add_gevent_loop_methods(self)

    @property
    def parent(self):
        """The thread's main green thread (gevent's hub is a child of it)."""
        return self.main

    @property
    def name(self):
        return type(self).__name__

    @property
    def backend(self):
        """``'uvloop'`` or ``'asyncio'``: which event loop this hub runs."""
        return "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"

    @property
    def loop_class(self):
        return type(self.loop)

    @property
    def main_hub(self):
        """True for the hub of the process's main thread."""
        return self.thread_ident == threading.main_thread().ident

    @property
    def exception_stream(self):
        """Where print_exception writes (sys.stderr, looked up each time)."""
        return sys.stderr

    def _normalize_exception(self, t, v, tb):
        """(type, value, traceback) from whatever of the three a caller had at hand."""
        if isinstance(t, BaseException) and v is None:
            t, v = type(t), t
        if v is None and isinstance(t, type):
            v = t()
        elif v is not None and not isinstance(v, BaseException) and isinstance(t, type):
            v = t(v)
        if t is None and v is not None:
            t = type(v)
        if tb is None and v is not None:
            tb = v.__traceback__
        return t, v, tb

    def handle_error(self, context, type, value, tb):
        """Report an error that ended a green thread or a hub callback (see the module
        docstring for the rules); never raises except to deliver a system error."""
        type, value, tb = self._normalize_exception(type, value, tb)
        if not issubclass(type, self.NOT_ERROR):
            self.print_exception(context, type, value, tb)
        if context is None or issubclass(type, self.SYSTEM_ERROR):
            self.handle_system_error(type, value, tb)

    def handle_system_error(self, type, value=None, tb=None):
        """Raise ``value`` in the main green thread (at once if that is the current one)."""
        type, value, tb = self._normalize_exception(type, value, tb)
        super().handle_system_error(value)

    def print_exception(self, context, type, value, tb):
        """Print the traceback and ``<context> failed with <type name>`` to
        ``exception_stream``."""
        stream = self.exception_stream
        if stream is None:
            return
        type, value, tb = self._normalize_exception(type, value, tb)
        try:
            traceback.print_exception(type, value, tb, file=stream)
            stream.write("%s failed with %s\n\n" % (safe_repr(context),
                                                    getattr(type, "__name__", type)))
            stream.flush()
        except Exception:  # a closed or broken stream must not break the hub
            pass

    def _reinit_after_fork(self):
        super()._reinit_after_fork()
        _add_gevent_loop_methods(self)


class Waiter(_waiter.Waiter):
    """One wait of one green thread, with gevent's names: ``get()`` waits, ``switch(value)``
    and ``throw(exc)`` wake it (from the hub or another green thread), once."""
    __slots__ = ()

    def switch(self, value=None):
        """Wake the waiting green thread with ``value``."""
        self.wake(value)

    def switch_args(self, *args):
        """Wake the waiting green thread with the tuple ``args``."""
        self.wake(args)

    def throw(self, *throw_args):
        """Wake the waiting green thread by raising ``throw_args`` (an exception instance or
        class, optionally with a value) in it."""
        if not throw_args:
            raise TypeError("throw() needs an exception")
        t = throw_args[0]
        value = throw_args[1] if len(throw_args) > 1 else None
        if isinstance(t, BaseException):
            exc = t
        elif value is not None and isinstance(value, BaseException):
            exc = value
        elif value is not None:
            exc = t(value)
        else:
            exc = t()
        self.wake_error(exc)

    def get(self):
        """Wait until switched to; return the value (or raise what was thrown)."""
        return self.wait()

    def __call__(self, source):
        """As a link (``greenlet.rawlink(waiter)``): wake with the source's value, or raise
        its exception in the waiting green thread (gevent's meaning; loop's own waiters wake
        with the source itself)."""
        exception = getattr(source, "exception", None)
        if exception is None:
            self.wake(getattr(source, "value", None))
        else:
            self.wake_error(exception)

    def ready(self):
        """True once a value or an exception was delivered."""
        return self.woken or self.error is not None

    def successful(self):
        return self.woken and self.error is None

    def clear(self):
        """Forget a delivered value so the waiter can be used again (not while waited on)."""
        if self.state == _waiter.WAITING:
            raise AssertionError("cannot clear a Waiter that a green thread waits on")
        self.state = _waiter.IDLE
        self.fiber = None
        self.value = _waiter.NOTHING
        self.error = None


def get_hub_class():
    """The class get_hub() creates in a thread that has no hub yet."""
    return _hub.get_hub_class()


def set_default_hub_class(cls):
    """Make get_hub() create ``cls`` (a subclass of :class:`Hub`) for threads that do not have
    a hub yet."""
    if not (isinstance(cls, type) and issubclass(cls, Hub)):
        raise TypeError("the hub class must be a subclass of loop.hub.Hub, not %r" % (cls,))
    _hub.set_hub_class(cls)
