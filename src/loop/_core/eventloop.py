"""The hub's event loops: asyncio's, subclassed so the hub can see what others schedule on them.

The hub runs a stock event loop -- uvloop's when it is installed, the stdlib's otherwise
(``LOOP_BACKEND=asyncio`` or ``uvloop`` chooses) -- with three changes, made by subclassing:

Raw-call accounting.  asyncio never says that it has nothing left to do, and the hub must know
it to raise ``LoopExit`` (see :mod:`loop._core.hub`).  The hub's own timers and fd callbacks
register themselves there; code other than the hub may also schedule on the hub's loop
(``hub.loop.call_later``, ``add_reader``).  The loop classes here record those calls through
the public methods, while the hub reaches the base methods through ``_hub_*`` aliases that cost
nothing extra.  uvloop's timers cannot be inspected afterwards, so its ``call_later`` is hooked;
the stdlib loop's timer heap is read directly (:func:`has_pending_work`).

The unpatched stdlib.  The stdlib loop is built on the original selector class and a raw
``_socket`` pair for its self-pipe (see :mod:`loop._core.originals`): after monkey patching,
asyncio's own ``socket.socketpair()`` would make green sockets that wait on the hub they serve.
A forked child rebuilds the selector and the self-pipe instead of touching the parent's.

Signals before the first run (uvloop).  uvloop points the signal wake-up fd at its own pipe only
while it runs; a signal that arrives before the hub first runs (a gunicorn worker loading its
application after registering its handlers) reaches only the Python-level handler uvloop
installed, which merely records it, and the callback never runs.  The stdlib loop sets its
wake-up fd when the handler is added and has no such gap.  The hub's uvloop class therefore
wraps that Python-level handler: while the loop runs it defers to uvloop's, otherwise it queues
the callback with ``call_soon_threadsafe``, to run once the loop does.

Timers never early (uvloop).  uvloop counts time in whole milliseconds of libuv's clock, which
reads a coarse kernel clock when that one ticks at least every millisecond, and rounds a delay
to the nearest millisecond (below half of one it is a ``call_soon``).  So a timer could fire up
to about two milliseconds before its delay had passed by ``time.monotonic()``, and a
``sleep(0.001)`` could return after a tenth of that.  gevent's contract, and code that times
itself, need a sleep or a timeout to end no sooner than asked.  The hub's own timers on uvloop
(``_hub_call_later``) therefore note their due time on the precise clock, are armed for the
delay rounded up to a whole millisecond, and when the loop runs one too early it is armed again
for the rest.  Timers other code schedules keep uvloop's behaviour.  The stdlib loop's clock is
``time.monotonic()`` itself and needs none of this.
"""
import math
import os
import signal

from loop._core import originals
from loop._core.exceptions import safe_repr

__all__ = ["new_event_loop", "has_pending_work"]


def new_event_loop():
    """A new event loop for a hub, of the class ``LOOP_BACKEND`` chooses."""
    originals.prepare()
    backend = os.environ.get("LOOP_BACKEND", "").strip().lower()
    uvloop = originals.uvloop
    if backend == "uvloop":
        if uvloop is None:
            raise ImportError("LOOP_BACKEND=uvloop but uvloop is not installed")
        return _hub_uvloop_class()()
    if backend in ("", "auto") and uvloop is not None:
        return _hub_uvloop_class()()
    if backend not in ("", "auto", "asyncio"):
        raise ValueError("LOOP_BACKEND must be 'asyncio' or 'uvloop', not %r" % backend)
    return _hub_selector_loop_class()()


_HubUVLoop = None


def _hub_uvloop_class():
    """uvloop's loop with user-scheduled handles counted (see _with_raw_accounting)."""
    global _HubUVLoop
    if _HubUVLoop is None:
        originals.prepare()
        uvloop = originals.uvloop
        # uvloop's call_at calls self.call_later: hooking call_later sees both.  The module
        # name stays uvloop's, for code that recognises uvloop by type(loop).__module__.
        _HubUVLoop = _with_raw_accounting(uvloop.Loop, "call_later", "HubUVLoop",
                                          uvloop.Loop.__module__)
        _HubUVLoop.add_signal_handler = _add_signal_handler_kept_before_run
        _HubUVLoop._hub_call_later = _punctual_call_later
    return _HubUVLoop


def _punctual_call_later(self, delay, callback, *args):
    # The hub's own timers on uvloop: see "Timers never early" above.
    return _PunctualTimer(self, delay, callback, args)


class _PunctualTimer:
    """A uvloop timer that runs ``callback(*args)`` no sooner than ``delay`` seconds after it
    was armed, by ``time.monotonic()``; it has the ``cancel``/``cancelled``/``when`` of the
    handle it wraps."""
    __slots__ = ("loop", "due", "callback", "args", "handle")

    def __init__(self, loop, delay, callback, args):
        self.loop = loop
        self.callback = callback
        self.args = args
        self.due = _monotonic() + delay
        self.handle = _uvloop_call_later(loop, _whole_milliseconds(delay), self._fire)

    def _fire(self):
        remaining = self.due - _monotonic()
        if remaining > 0:
            self.handle = _uvloop_call_later(self.loop, _whole_milliseconds(remaining),
                                             self._fire)
            return
        self.callback(*self.args)

    def cancel(self):
        self.handle.cancel()

    def cancelled(self):
        return self.handle.cancelled()

    def when(self):
        return self.handle.when()

    def __repr__(self):
        return "<punctual %r>" % (self.handle,)


def _whole_milliseconds(delay):
    # uvloop rounds to the nearest millisecond; rounding up makes a positive delay at least one.
    if delay <= 0:
        return 0
    try:
        return math.ceil(delay * 1000) / 1000
    except (OverflowError, ValueError):
        return delay    # infinity ("for ever", which uvloop caps) or NaN: uvloop's to judge


def _uvloop_call_later(loop, delay, callback):
    return _HubUVLoop.__base__.call_later(loop, delay, callback)


_monotonic = originals.monotonic


def _add_signal_handler_kept_before_run(self, sig, callback, *args):
    # uvloop's add_signal_handler, plus a signal that comes while the loop is not running (see
    # "Signals before the first run" above).
    _HubUVLoop.__base__.add_signal_handler(self, sig, callback, *args)
    uvloop_handler = signal.getsignal(sig)

    def on_signal(signum, frame):
        if self.is_running():
            uvloop_handler(signum, frame)
        elif not self.is_closed():
            self.call_soon_threadsafe(callback, *args)

    signal.signal(sig, on_signal)


class _RawCall:
    """A callback that code other than the hub scheduled on the hub's own loop with
    ``call_later``/``call_at``.  Until it ran or was cancelled it can still wake a green
    thread, so it keeps ``LoopExit`` away (see :func:`has_pending_work`)."""
    __slots__ = ("pending", "callback", "args", "handle")

    def __init__(self, pending, callback, args):
        self.pending = pending
        self.callback = callback
        self.args = args
        self.handle = None

    def __call__(self):
        self.pending.discard(self)
        self.callback(*self.args)

    def __repr__(self):
        return "<hub-counted %s>" % (safe_repr(self.callback),)


def _prune_raw_calls(loop):
    pending = loop._hub_raw_calls
    for raw in [raw for raw in pending if raw.handle is not None and raw.handle.cancelled()]:
        pending.discard(raw)
    loop._hub_raw_prune_at = 2 * len(pending) + 64


def _with_raw_accounting(base, timer_name, name, module=__name__):
    """A subclass of the event loop class ``base`` whose public ``add_reader``/``add_writer``
    (and ``timer_name``, for uvloop, whose timers cannot be inspected: the timer method that
    the other one calls) record what code other than the hub scheduled, so that the LoopExit
    check sees it.  The hub's own calls go through the ``_hub_*`` aliases of the base methods
    and cost nothing extra."""
    base_timer = getattr(base, timer_name) if timer_name else None
    base_add_reader, base_add_writer = base.add_reader, base.add_writer
    base_remove_reader, base_remove_writer = base.remove_reader, base.remove_writer

    def timer(self, when, callback, *args, context=None):
        # Never the hub's own timers: they count themselves and use the _hub_call_later alias.
        pending = self._hub_raw_calls
        raw = _RawCall(pending, callback, args)
        raw.handle = handle = base_timer(self, when, raw, context=context)
        pending.add(raw)
        if len(pending) > self._hub_raw_prune_at:
            _prune_raw_calls(self)
        return handle

    def add_reader(self, fd, callback, *args):
        base_add_reader(self, fd, callback, *args)
        self._hub_raw_readers.add(fd if isinstance(fd, int) else fd.fileno())

    def add_writer(self, fd, callback, *args):
        base_add_writer(self, fd, callback, *args)
        self._hub_raw_writers.add(fd if isinstance(fd, int) else fd.fileno())

    def remove_reader(self, fd):
        self._hub_raw_readers.discard(fd if isinstance(fd, int) else fd.fileno())
        return base_remove_reader(self, fd)

    def remove_writer(self, fd):
        self._hub_raw_writers.discard(fd if isinstance(fd, int) else fd.fileno())
        return base_remove_writer(self, fd)

    def __init__(self, *args, **kwargs):
        self._hub_raw_calls = set()
        self._hub_raw_prune_at = 64
        self._hub_raw_readers = set()
        self._hub_raw_writers = set()
        base.__init__(self, *args, **kwargs)

    namespace = {
        "__init__": __init__,
        "add_reader": add_reader, "add_writer": add_writer,
        "remove_reader": remove_reader, "remove_writer": remove_writer,
        "_hub_add_reader": base_add_reader, "_hub_add_writer": base_add_writer,
        "_hub_remove_reader": base_remove_reader, "_hub_remove_writer": base_remove_writer,
        "_hub_call_later": base.call_later,
        "__module__": module,
    }
    if timer_name is not None:
        namespace[timer_name] = timer
    return type(name, (base,), namespace)


_HubSelectorLoop = None


def _hub_selector_loop_class():
    """The stdlib loop, built on the original selector and a raw ``_socket`` self-pipe."""
    global _HubSelectorLoop
    if _HubSelectorLoop is not None:
        return _HubSelectorLoop
    asyncio = originals.prepare()["asyncio"]

    # Timers need no hook here: has_pending_work reads this loop's timer heap.
    class HubSelectorEventLoop(_with_raw_accounting(asyncio.SelectorEventLoop, None,
                                                    "RawCountingSelectorEventLoop")):
        def __init__(self):
            super().__init__(selector=originals.DefaultSelector())

        def _make_self_pipe(self):
            # asyncio calls socket.socketpair() at this point, which a monkey patch would make
            # green; the raw C sockets have the recv/send/fileno/close that asyncio uses.
            self._ssock, self._csock = originals.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self._internal_fds += 1
            self._add_reader(self._ssock.fileno(), self._read_from_self)

        def _reinit_after_fork(self):
            # The epoll instance and the self-pipe are shared with the parent: touching their
            # registrations here would change the parent's.  Build new ones, carrying the
            # registrations over, and close our copies of the old descriptors.
            old = self._selector
            ssock_fd = self._ssock.fileno()
            new = originals.DefaultSelector()
            for key in list(old.get_map().values()):
                if key.fd != ssock_fd:
                    new.register(key.fileobj, key.events, key.data)
            old.close()  # closes the fd; no epoll_ctl calls
            self._selector = new
            self._ssock.close()
            self._csock.close()
            self._internal_fds -= 1
            self._make_self_pipe()
            if getattr(self, "_signal_handlers", None):
                signal.set_wakeup_fd(self._csock.fileno())

    _HubSelectorLoop = HubSelectorEventLoop
    return HubSelectorEventLoop


def has_pending_work(loop, own_timer_owners):
    """True if something other than the hub's own registrations can still run on ``loop``: an
    asyncio task, a timer or fd callback that other code scheduled.  Timers whose callback is a
    method of a ``own_timer_owners`` instance are the hub's own and do not count."""
    asyncio = originals.asyncio
    if asyncio is not None:
        try:
            if asyncio.all_tasks(loop):
                return True
        except RuntimeError:
            pass
    scheduled = getattr(loop, "_scheduled", None)  # the stdlib loop's timer heap
    if scheduled:
        for handle in scheduled:
            # The hub's own timers are registered in Hub._timers already, or are ref=False
            # on purpose (Hub.join's timeout): neither keeps LoopExit away.
            if not handle.cancelled() and not isinstance(
                    getattr(handle._callback, "__self__", None), own_timer_owners):
                return True
    # What other code scheduled on the hub's own loop through its public methods (uvloop
    # timers until they ran or were cancelled, fd callbacks until removed): see
    # _with_raw_accounting.
    if getattr(loop, "_hub_raw_calls", None):
        _prune_raw_calls(loop)
        if loop._hub_raw_calls:
            return True
    if getattr(loop, "_hub_raw_readers", None) or getattr(loop, "_hub_raw_writers", None):
        return True
    return False
