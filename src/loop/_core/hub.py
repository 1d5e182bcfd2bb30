"""The hub: one asyncio event loop per OS thread, and the only place green threads are resumed.

Design
======

Every OS thread that uses loop gets one :class:`Hub`, created on first use.  The hub owns an
asyncio event loop (uvloop's when it is installed, the stdlib's otherwise; ``LOOP_BACKEND=asyncio``
or ``uvloop`` chooses) and a *hub fiber* that runs ``loop.run_forever()``.  A green thread that
has to wait -- for a timer, a file descriptor, another green thread -- registers how it wants to
be woken and switches to the hub fiber.  The event loop then runs until some callback resumes the
waiting green thread by switching back into it.  This is gevent's architecture with asyncio in
libev's place, which is what lets asyncio code and green threads share one loop.

Who may switch
--------------
Only two modules switch fibers: this one and :mod:`loop.greenlet` (which only throws into its own
green thread on ``Greenlet.throw``).  Everything else -- events, locks, queues, pools, timeouts,
sockets, servers -- waits through :class:`Waiter`, :meth:`Hub.sleep`, :meth:`Hub.yield_now`,
:meth:`Hub.wait_readable` / :meth:`Hub.wait_writable` and wakes through :meth:`Waiter.wake` and
:meth:`Hub.interrupt`.  Keeping the switches in one place is what makes the two safety checks
possible: a wait checks that it was resumed by the event it registered (else
``InvalidSwitchError``), and a wait started from inside the hub itself -- an asyncio callback or
coroutine -- fails at once with ``BlockingSwitchOutError`` instead of deadlocking the loop.

The ready queue
---------------
Green threads that are runnable right now (just spawned, yielding with ``sleep(0)``, woken by an
``Event``) are not each given an asyncio ``call_soon`` handle.  They go into one deque of
``(target, value)`` pairs, and a single loop callback, :meth:`Hub._drain`, resumes them with
``target.switch(value)``.  ``target`` is usually the fiber itself, so a resume allocates nothing
but the pair.  A green thread's start is queued as the bare fiber, meaning ``(fiber, None)``:
a spawned green thread then leaves one object for the garbage collector to track (itself), not
two, which halves the collections that spawning many of them triggers.  Each drain runs only
the entries that were queued when it started and then yields back to the event loop: a green
thread that yields again goes to the back of the line, so ``sleep(0)`` is fair to every ready
green thread and to IO.  A drain also stops after ``Hub.switch_interval`` (5 ms, gevent's
switch interval) and leaves the rest to the next one: green threads that each compute for a
while before their first wait (50 of them building an SSL context) would otherwise hold every
timer and socket back for the sum of their runs.  The slice is not a fixed 5 ms, though: when
the event loop's own turn was long (IO callbacks resume green threads directly, and under load
those run long too), the next drain may run as long, or the ready queue -- new connections'
handlers, say -- would advance one entry per turn.  It reads the clock between chunks of entries
that double while they stay quick, so a drain of cheap resumes reads it a few times only.

The running loop
----------------
Green threads are not asyncio tasks, and asyncio's "running loop" slot must say so: Django
refuses to touch its ORM when ``asyncio.get_running_loop()`` answers, ``asyncio.run()`` refuses
to start.  The hub clears the slot where it switches into green threads (a drain, a direct
resume, a throw from a hub callback) and sets it back to its loop when control returns to the
event loop, so only what asyncio runs -- tasks, callbacks, coroutines under ``loop.await_`` --
sees the loop.  Green threads that run asyncio loops of their own keep their view through
:mod:`loop._core.nesting`.

Rule for wakers: anything that may wake *several* green threads (``Event.set``, a green thread
finishing) queues them; only single-shot hub callbacks (a timer, a readable fd, a thread pool
result) switch into their green thread directly.  That keeps one invariant simple: when a green
thread blocks, everything that can still wake anybody is either in the ready queue or registered
as a wakeup source.

Wakeup sources
--------------
asyncio never tells us that it has nothing left to do, so the hub keeps a registry of what it
has handed out that can still resume a green thread: its pending timers (``Hub._timers``, keyed
by the sleeping fiber, the Waiter or the HubTimer) and every other *wakeup source*
(``Hub._sources``): an fd wait (its Waiter), a thread pool job (the job), an ``await_`` (its
Waiter), a wait that another OS thread may end (its Waiter), a server's accept loop.  Each is
registered by the code that starts the wait and unregistered where the wait ends, by key, with
``pop``/``discard``: ending one twice changes nothing, and ending a wrong one is impossible.  An
earlier design kept a counter that a dozen places incremented and decremented in pairs; a count
can only be checked as a whole, and a fork reset it to what the hub could see, dropping the
sources it could not (a server's).  Registrations can be listed
(:meth:`Hub.wakeup_registrations`), so a test can tell *which* one a wait left behind.

What a registry cannot see is a waker in another OS thread.  A ``_thread`` lock after
``patch_all()`` is a green lock, and real threads still exist (the thread pools' workers, C
libraries' threads): a pool job that takes a lock a green thread holds waits on its own thread's
hub, where nothing is registered, while the release is on its way from the main thread.  Such
waits say so (``Waiter.wait(foreign=True)``, see :mod:`loop.thread`) and count as a source for as
long as they last; the lock's ``release`` then wakes them through the waiting hub's thread-safe
call.

LoopExit
--------
When a green thread blocks with an empty ready queue and no sources, the hub schedules one
check; if the situation still holds when it runs (and no asyncio task or stdlib timer is
pending), nothing can ever wake the thread's main green thread, so ``LoopExit`` is thrown into
it -- gevent's "this operation would block forever".  Other code may schedule on the hub's loop
directly (``hub.loop.call_later``, ``add_reader``); the hub's loop classes record those calls
(uvloop's timers cannot be inspected afterwards), see ``_with_raw_accounting``.

Interrupted waits
-----------------
A waiting green thread can be resumed early by an exception (``Timeout``, ``kill``).  If its
regular wake-up was already queued, that stale entry would later switch into it at some unrelated
point.  Every waiting primitive here therefore removes its own queued entry when it is left by an
exception.  That path is rare, so its O(n) ``deque.remove`` does not matter.  A wake from another
OS thread reaches the hub later, through the loop's thread-safe call: it queues the green thread
only if the wait is still the one it woke (``Waiter._wake_in_hub``).

Unpatched stdlib
----------------
The hub must keep working after :mod:`loop.monkey` replaced ``socket``, ``select``, ``selectors``,
``threading`` and ``time``.  This module therefore binds the originals it needs when it is
imported (``_thread``, ``_socket``, the selector class), uses a raw ``_socket`` pair for the
stdlib loop's self-pipe, and :func:`prepare` imports asyncio, uvloop and concurrent.futures; the
monkey module calls it before patching anything.

Adopting a running asyncio loop
-------------------------------
When green code is first used from inside a running asyncio loop (``asyncio.run(main())`` calling
``loop.run_green``), the hub adopts that loop instead of creating one, and the fiber that runs the
loop becomes the hub fiber.  asyncio stays in charge of the program's lifetime, so there is no
main green thread and no ``LoopExit`` in that mode.
"""
import _socket
import _thread
import errno
import os
import sys
from _weakref import ref as _weakref
from collections import deque

from loop._switch import Fiber, FiberError, FiberExit, getcurrent
from loop._core.exceptions import (BlockingSwitchOutError, ConcurrentObjectUseError,
                             InvalidSwitchError, LoopExit)

__all__ = ["Hub", "Waiter", "get_hub", "get_hub_if_exists", "reinit", "prepare",
           "wait_readable", "wait_writable", "cancel_wait", "forget_fd"]

# ---------------------------------------------------------------------------------------------
# Originals, bound now so that a later monkey patch cannot reach the hub.

_get_ident = _thread.get_ident
_start_new_thread = _thread.start_new_thread
_allocate_lock = _thread.allocate_lock
_socketpair = _socket.socketpair
_tls = _thread._local()

import selectors as _selectors  # noqa: E402  (cheap, and needed before any patch)
import time as _time  # noqa: E402

_DefaultSelector = _selectors.DefaultSelector
monotonic = _time.monotonic
real_sleep = _time.sleep

#: Exceptions that are not errors of one green thread but requests to stop the program; they are
#: delivered to the thread's main green thread rather than printed.
SYSTEM_ERROR = (KeyboardInterrupt, SystemExit)

_originals = {}

# asyncio's running-loop slot, bound by prepare() (a hub exists only after it ran).
_get_running_loop = _set_running_loop = None


def prepare():
    """Import and bind everything the hub needs from the stdlib (asyncio, uvloop,
    concurrent.futures).  Call before monkey patching; idempotent."""
    if _originals:
        return _originals
    import asyncio
    import asyncio.events
    import concurrent.futures
    _originals["asyncio"] = asyncio
    _originals["concurrent.futures"] = concurrent.futures
    _originals["get_running_loop"] = asyncio.events._get_running_loop
    global _get_running_loop, _set_running_loop
    _get_running_loop = asyncio.events._get_running_loop
    _set_running_loop = asyncio.events._set_running_loop
    try:
        import uvloop
    except ImportError:
        uvloop = None
    _originals["uvloop"] = uvloop
    from loop._core import nesting as _nesting
    _nesting.install(asyncio, uvloop)
    # The thread pool binds _thread.start_new_thread when imported; imported after patching it
    # would start green threads instead of OS threads, and DNS lookups would never return.
    import loop._core.threadpool  # noqa: F401
    # The hub class too: importing it when a thread makes its hub, after patching, would take
    # the (green) import lock, which needs a hub.
    get_hub_class()
    return _originals


# Sentinels passed as the switch value so a wait can tell who resumed it.
class _Token:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<%s>" % self.name


_YIELD = _Token("yield")
_TIMER = _Token("timer")
_TIMED_OUT = _Token("timed out")
_NOTHING = _Token("nothing")


class _AnonymousSource:
    """A registration of :meth:`Hub.add_wakeup_source` made without an owner."""
    __slots__ = ()

    def __repr__(self):
        return "<anonymous wakeup source>"


class _Call:
    """A ready-queue entry that calls a function instead of resuming a fiber."""
    __slots__ = ("fn", "args")

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args

    def switch(self, _unused):
        self.fn(*self.args)

    def __repr__(self):
        return "<callback %r%r>" % (self.fn, self.args)


def _new_event_loop():
    originals = prepare()
    asyncio = originals["asyncio"]
    backend = os.environ.get("LOOP_BACKEND", "").strip().lower()
    uvloop = originals["uvloop"]
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
        uvloop = prepare()["uvloop"]
        # uvloop's call_at calls self.call_later: hooking call_later sees both.  The module
        # name stays uvloop's, for code that recognises uvloop by type(loop).__module__.
        _HubUVLoop = _with_raw_accounting(uvloop.Loop, "call_later", "HubUVLoop",
                                          uvloop.Loop.__module__)
    return _HubUVLoop


class _RawCall:
    """A callback that code other than the hub scheduled on the hub's own loop with
    ``call_later``/``call_at``.  Until it ran or was cancelled it can still wake a green
    thread, so it keeps ``LoopExit`` away (see ``_loop_has_pending_work``)."""
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
        return "<hub-counted %s>" % (_safe_repr(self.callback),)


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
    asyncio = prepare()["asyncio"]

    # Timers need no hook here: _loop_has_pending_work reads this loop's timer heap.
    class HubSelectorEventLoop(_with_raw_accounting(asyncio.SelectorEventLoop, None,
                                                    "RawCountingSelectorEventLoop")):
        def __init__(self):
            super().__init__(selector=_DefaultSelector())

        def _make_self_pipe(self):
            # asyncio calls socket.socketpair() at this point, which a monkey patch would make
            # green; the raw C sockets have the recv/send/fileno/close that asyncio uses.
            self._ssock, self._csock = _socketpair()
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
            new = _DefaultSelector()
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
                import signal
                signal.set_wakeup_fd(self._csock.fileno())

    _HubSelectorLoop = HubSelectorEventLoop
    return HubSelectorEventLoop


class _HubFiber(Fiber):
    """The fiber that runs a hub's event loop; knows its hub, so a green thread finds its hub
    with ``getcurrent().parent.hub`` instead of a thread-local lookup."""
    __slots__ = ("hub",)


def _root_fiber():
    fiber = getcurrent()
    while fiber.parent is not None:
        fiber = fiber.parent
    return fiber


# ---------------------------------------------------------------------------------------------
# The hub

class Hub:
    """The per-thread scheduler: an asyncio loop plus the fiber that runs it.

    Attributes: ``loop`` (the asyncio event loop), ``fiber`` (the fiber that runs it; green
    threads are its children), ``main`` (the thread's main green thread, or None when the hub
    adopted an asyncio loop), ``thread_ident``.
    """

    def __init__(self, adopt_loop=None):
        self.thread_ident = _get_ident()
        self._ready = deque()
        self._drain_scheduled = False
        #: Wakeup sources (see "Wakeup sources" in the module docstring): the hub's own pending
        #: timers that keep LoopExit away (key -> loop handle), and every other registration
        #: (fd waits, thread pool jobs, awaits, waits a foreign OS thread ends, add_wakeup_source).
        self._timers = {}
        self._sources = set()
        self._anonymous_sources = []
        self._deadlock_check_scheduled = False
        #: fd -> _FdSlot, one table per direction (see "file descriptors" below).
        self._readers = {}
        self._writers = {}
        self._idle_waiters = []
        #: How long (seconds) one drain runs ready green threads before timers and IO get
        #: their turn (gevent's default switch interval).
        self.switch_interval = 0.005
        self._busy_since = None  # see _drain
        self._threadpool = None
        self._dying = False
        self._destroyed = False
        #: True once an owned hub's fiber runs: get_hub() can then skip its slow checks.
        self._started = False
        if adopt_loop is None:
            self.loop = _new_event_loop()
            self.adopted = False
            self.main = _root_fiber()
            self.fiber = _HubFiber(self._run_loop, self.main)
            self.fiber.hub = self
            # run_in_executor(None, ...) on the hub must use real threads even after
            # patch_thread(): a green worker could only be waited for by blocking the hub.
            from loop._core.threadpool import ThreadPoolExecutor
            self.loop.set_default_executor(ThreadPoolExecutor(pool=self.threadpool))
        else:
            self.loop = adopt_loop
            self.adopted = True
            self.main = None
            self.fiber = getcurrent()
        self._call_soon = self.loop.call_soon
        #: The hub's own pending timers, key -> loop handle: a sleeping fiber, a Waiter with a
        #: timeout, a HubTimer; ref=False ones in _unref_timers, which is kept only for loops
        #: that a forked child must replace (uvloop), so the child can re-arm them; the stdlib
        #: loop keeps its timers through a fork.  Only the handle is stored (the callback
        #: follows from the key's type): a (handle, callback, args) tuple per timer made a
        #: sleep ~15% slower.
        self._unref_timers = None
        if not hasattr(self.loop, "_reinit_after_fork"):
            self._unref_timers = {}
        self._set_call_later(self.loop)
        self.blocking_monitor = None
        max_blocking = os.environ.get("LOOP_MAX_BLOCKING_TIME")
        if max_blocking:
            from loop import util
            util.start_blocking_monitor(self, float(max_blocking))

    def __repr__(self):
        return "<Hub %s loop=%s thread=%s ready=%d sources=%d>" % (
            "adopted" if self.adopted else "owned", type(self.loop).__name__,
            self.thread_ident, len(self._ready), self.wakeup_sources)

    @property
    def wakeup_sources(self):
        """How many registrations can still resume a green thread of this hub (read-only:
        it is the size of the registrations, see :meth:`wakeup_registrations`)."""
        return len(self._timers) + len(self._sources)

    def wakeup_registrations(self):
        """What keeps ``LoopExit`` away right now: the keys of the hub's pending timers (a
        sleeping fiber, a Waiter, a HubTimer) and the other registered sources."""
        return list(self._timers) + list(self._sources)

    # -- running the loop ------------------------------------------------------------------

    def _run_loop(self):
        self._started = True
        while not self._destroyed and not self._dying:
            try:
                self.loop.run_forever()
            except FiberExit:
                break
            except BaseException as exc:
                # KeyboardInterrupt from a signal that arrived while the loop polled, or an
                # exception escaping an asyncio callback: hand it to the main green thread,
                # then keep serving the green threads that are still waiting.
                if self._destroyed or self._dying:
                    break
                self._throw_into_main(exc)

    def _throw_into_main(self, exc):
        main = self.main
        if main is None or main.dead:
            return
        try:
            main.throw(exc)
        except FiberExit:
            self._dying = True
        except BaseException as err:  # main is not in a state we can throw into
            self.print_exception(self, type(err), err, err.__traceback__)

    def switch(self):
        """Switch from the current green thread to the hub; return what resumed us."""
        if getcurrent() is self.fiber:
            raise BlockingSwitchOutError(_blocking_message())
        if not self._ready and not self._timers and not self._sources:
            self._note_blocking()
        return self.fiber.switch()

    def _drain(self):
        # Runs the entries queued when it starts, in steps ("chunks") between which it looks at
        # the clock: once it has run for its budget it returns to the event loop (timers and IO
        # go first) and the rest runs in the next drain.  The budget is switch_interval, or as
        # long as the loop was busy elsewhere since the previous drain left entries behind: the
        # ready queue and the loop's own callbacks then share the time about evenly.  A chunk
        # doubles while chunks stay quick, so a drain of cheap resumes reads the clock a few
        # times only.
        ready = self._ready
        popleft = ready.popleft
        _type = type  # locals: this loop runs once per resume of any green thread
        _tuple = tuple
        left = len(ready)
        chunk = 1
        budget = self.switch_interval
        started = mark = monotonic()
        busy_since = self._busy_since
        if busy_since is not None and started - busy_since > budget:
            # The event loop was busy since the last drain (callbacks resuming green threads
            # directly on IO): this drain gets as long, so IO cannot starve the ready queue.
            budget = started - busy_since
        _set_running_loop(None)  # green threads do not run inside the event loop
        try:
            while True:
                n = chunk if chunk < left else left
                left -= n
                for _ in range(n):
                    entry = popleft()  # IndexError: a left wait took its own entry out
                    if _type(entry) is _tuple:
                        target, value = entry
                    else:  # a bare fiber: its start, queued by schedule_start without a pair
                        target = entry
                        value = None
                    try:
                        target.switch(value)
                    except FiberExit:
                        # Thrown into the hub fiber itself: the hub is being destroyed.
                        self._on_hub_killed()
                        return
                    except BaseException as exc:
                        self.handle_error(target, type(exc), exc, exc.__traceback__)
                if not left:
                    break
                now = monotonic()
                if now - started >= budget:
                    break
                if (now - mark) * 4 < budget:
                    if chunk < 1024:
                        chunk <<= 1
                else:
                    chunk = 1
                mark = now
        except IndexError:
            pass
        finally:
            _set_running_loop(self.loop)
            if ready and not self._dying:
                # With a drain pending, the loop polls without waiting: the time until that
                # drain runs is work, not idle time.
                self._busy_since = monotonic()
                self._call_soon(self._drain)
            else:
                self._busy_since = None
                self._drain_scheduled = False
                if not self._timers and not self._sources:
                    self._note_blocking()

    def _on_hub_killed(self):
        self._dying = True
        self.loop.stop()

    def _resume(self, fiber, value):
        """Switch into one waiting green thread from a hub callback (an event loop callback,
        never from within a drain)."""
        _set_running_loop(None)
        try:
            fiber.switch(value)
        except FiberExit:
            self._on_hub_killed()
        except BaseException as exc:
            self.handle_error(fiber, type(exc), exc, exc.__traceback__)
        finally:
            _set_running_loop(self.loop)
        if not self._ready and not self._timers and not self._sources:
            self._note_blocking()

    # -- scheduling --------------------------------------------------------------------------

    def _schedule(self, target, value):
        self._ready.append((target, value))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def run_callback(self, fn, *args):
        """Call ``fn(*args)`` in the hub soon, in order with ready green threads.  ``fn`` must
        not block.  Only from this hub's OS thread; see :meth:`run_callback_threadsafe`."""
        self._schedule(_Call(fn, args), None)

    def run_callback_threadsafe(self, fn, *args):
        """Like :meth:`run_callback`, callable from any OS thread."""
        if _get_ident() == self.thread_ident:
            self._schedule(_Call(fn, args), None)
        else:
            self.loop.call_soon_threadsafe(self._schedule, _Call(fn, args), None)

    def schedule_start(self, fiber, value=None):
        """Queue ``fiber.switch(value)``: starts a green thread created with this hub's fiber as
        parent.  Used by :mod:`loop.greenlet`."""
        if value is not None:
            self._schedule(fiber, value)
            return
        # The fiber alone stands for (fiber, None): a spawn then leaves one GC-tracked object
        # behind (the green thread) instead of two, and spawning 100,000 green threads
        # triggers that many fewer collections.
        self._ready.append(fiber)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def interrupt(self, fiber, exc):
        """Raise ``exc`` in a waiting green thread at its waiting point.

        From the hub (a timer, a callback) this happens at once; from a green thread it is
        queued, so the caller keeps running."""
        if getcurrent() is self.fiber:
            if not fiber.dead:
                previous = _get_running_loop()  # from a drain (None) or a loop callback
                _set_running_loop(None)
                try:
                    fiber.throw(exc)
                except FiberExit:
                    self._on_hub_killed()
                except BaseException as err:
                    self.handle_error(fiber, type(err), err, err.__traceback__)
                finally:
                    _set_running_loop(previous)
        else:
            self.run_callback(self._interrupt_later, fiber, exc)

    def _interrupt_later(self, fiber, exc):
        if not fiber.dead:
            fiber.throw(exc)  # errors are reported by _drain

    def add_wakeup_source(self, owner=None):
        """Register something outside the hub's view that will resume a green thread later
        (it keeps ``LoopExit`` away) and return the registration.  ``owner`` (any hashable
        object, e.g. the server or job that will do the waking) is the registration itself:
        adding it twice registers it once, and :meth:`remove_wakeup_source` with it ends it
        (again: a no-op).  Without ``owner`` an anonymous registration is made; a
        ``remove_wakeup_source()`` without argument ends one of those, and raises
        RuntimeError when there is none."""
        if owner is None:
            owner = _AnonymousSource()
            self._anonymous_sources.append(owner)
        self._sources.add(owner)
        return owner

    def remove_wakeup_source(self, owner=None):
        """End a registration made by :meth:`add_wakeup_source`."""
        if owner is None:
            if not self._anonymous_sources:
                raise RuntimeError("remove_wakeup_source() without a matching "
                                   "add_wakeup_source()")
            owner = self._anonymous_sources.pop()
        elif type(owner) is _AnonymousSource and owner in self._anonymous_sources:
            self._anonymous_sources.remove(owner)
        self._sources.discard(owner)

    # -- waiting -----------------------------------------------------------------------------

    def _note_blocking(self):
        # Called when a green thread blocks with no timer of its own: maybe nothing is left
        # that could wake anybody.  The check runs later, after the current callback finished
        # whatever it still had to wake.
        if not self._deadlock_check_scheduled and not self.adopted:
            self._deadlock_check_scheduled = True
            self._call_soon(self._check_deadlock)

    def _check_deadlock(self):
        self._deadlock_check_scheduled = False
        if self._ready or self._timers or self._sources or self.adopted or self._idle_waiters:
            return
        if _loop_has_pending_work(self.loop):
            return
        main = self.main
        if main is None or main.dead or main is getcurrent():
            return
        self.interrupt(main, LoopExit(
            "This operation would block forever: every green thread is waiting and nothing "
            "(timer, file descriptor, thread pool job, asyncio task) can wake them.\n\tHub: %r"
            % (self,)))

    def yield_now(self):
        """``sleep(0)``: go to the back of the ready queue."""
        current = getcurrent()
        if current is self.fiber:
            raise BlockingSwitchOutError(_blocking_message())
        entry = (current, _YIELD)
        self._ready.append(entry)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)
        try:
            resumed_by = self.fiber.switch()
        except BaseException:
            _remove_entry(self._ready, entry)
            raise
        if resumed_by is not _YIELD:
            raise InvalidSwitchError("Invalid switch into %r while yielding: %r"
                                     % (current, resumed_by))

    def sleep(self, seconds, ref=True):
        """Block the current green thread for ``seconds``.  ``ref=False``: this timer does not
        keep ``LoopExit`` away."""
        current = getcurrent()
        if current is self.fiber:
            raise BlockingSwitchOutError(_blocking_message())
        if not ref:
            self._note_blocking()
        handle = self._arm_timer(current, ref, seconds, self._timer_fired, current, ref)
        try:
            resumed_by = self.fiber.switch()
        except BaseException:
            self._cancel_timer(current, handle, ref)
            raise
        if resumed_by is not _TIMER:
            self._cancel_timer(current, handle, ref)
            raise InvalidSwitchError("Invalid switch into %r while sleeping: %r"
                                     % (current, resumed_by))

    def _timer_fired(self, fiber, ref):
        self._timer_done(fiber, ref)
        self._resume(fiber, _TIMER)

    # The hub's own timers (a sleep, a Waiter's timeout, a HubTimer) are registered under that
    # key while pending: ref=True ones in self._timers, which makes them wakeup sources (see
    # "Wakeup sources"); ref=False ones in self._unref_timers when the loop is one a forked
    # child must replace (see _carry_timers).  Arming registers, and the timer's end -- it
    # fired (_timer_done) or was cancelled (_cancel_timer) -- unregisters; both pop by key, so
    # neither can unregister twice.

    def _arm_timer(self, key, ref, seconds, fn, *args):
        handle = self._call_later(seconds, fn, *args)
        if ref:
            self._timers[key] = handle
        elif self._unref_timers is not None:
            self._unref_timers[key] = handle
        return handle

    def _timer_done(self, key, ref):
        if ref:
            self._timers.pop(key, None)
        elif self._unref_timers is not None:
            self._unref_timers.pop(key, None)

    def _cancel_timer(self, key, handle, ref):
        # The registered handle is the live one: after a fork, the one on the child's new loop.
        if ref:
            handle = self._timers.pop(key, handle)
        elif self._unref_timers is not None:
            handle = self._unref_timers.pop(key, handle)
        handle.cancel()

    def _set_call_later(self, loop):
        # The hub's loop classes count timers that other code schedules on them; the hub's
        # own timers count themselves and take the uncounted alias (adopted loops have none).
        self._call_later = getattr(loop, "_hub_call_later", loop.call_later)

    def _carry_timers(self, old_loop, new_loop):
        """In a forked child that replaced the loop: re-arm the hub's pending timers on
        ``new_loop`` at their old deadlines."""
        self._set_call_later(new_loop)
        timers = self._timers
        if self._unref_timers is None:
            return
        try:
            now = old_loop.time()  # the deadlines are on the old loop's clock
        except Exception:
            now = new_loop.time()
        for table, ref in ((timers, True), (self._unref_timers, False)):
            for key, handle in list(table.items()):
                delay = handle.when() - now
                try:
                    # The old loop finishes its current iteration before it stops: without
                    # this, a timer due in that iteration would fire there and again here.
                    handle.cancel()
                except Exception:
                    pass
                if isinstance(key, HubTimer):
                    fn, args = key._fire, ()
                elif isinstance(key, Waiter):
                    fn, args = key._timed_out, (ref,)
                else:  # a sleeping fiber
                    fn, args = self._timer_fired, (key, ref)
                table[key] = self._call_later(max(delay, 0.0), fn, *args)

    def call_later(self, seconds, fn, *args, ref=True):
        """Run ``fn(*args)`` in the hub after ``seconds``; returns a :class:`HubTimer`."""
        return HubTimer(self, seconds, fn, args, ref)

    # -- file descriptors --------------------------------------------------------------------
    #
    # Each descriptor and direction has one _FdSlot (in self._readers / self._writers) that
    # knows who waits on it: at most one *exclusive* waiter (a green socket's recv,
    # wait_readable; a second one is a ConcurrentObjectUseError, as in gevent), any number of
    # *watchers* (select/poll calls: they only need "something happened, poll again") and at
    # most one hub-side *callback* (a server's accept loop).  The slot's ready callback is
    # installed on the event loop while anybody uses it.
    #
    # A green socket passes itself as the wait's owner.  Its registration then outlives the
    # wait, so a connection's recv -> EAGAIN -> wait -> recv cycle costs no epoll_ctl (on
    # uvloop no poll handle either) per wait.  It is removed when a readiness report finds
    # nobody waiting (the loop is level-triggered: unread data would be reported again and
    # again), and when the socket closes, detaches or is collected (forget_fd).  A registration
    # whose owner vanished without forget_fd (collected in another OS thread, closed at the C
    # level) is recognised by the owner's weak reference when the descriptor number is waited
    # on again, and rebuilt: the kernel may hold the old file under that number, or nothing.

    def wait_readable(self, fd, timeout=None, timeout_exc=None):
        """Block the current green thread until ``fd`` is readable."""
        self._wait_fd(fd, True, timeout, timeout_exc, None)

    def wait_writable(self, fd, timeout=None, timeout_exc=None):
        """Block the current green thread until ``fd`` is writable."""
        self._wait_fd(fd, False, timeout, timeout_exc, None)

    def _wait_fd(self, fd, readable, timeout, timeout_exc, owner):
        # owner: the socket that owns fd and calls forget_fd() before closing it, or None (the
        # registration then ends with the wait: nobody would tell us when fd is closed).
        if not isinstance(fd, int):
            fd = fd.fileno()
        table = self._readers if readable else self._writers
        slot = table.get(fd)
        if slot is None:
            slot = table[fd] = _FdSlot(self, fd, readable)
        else:
            if slot.waiter is not None:
                raise ConcurrentObjectUseError(
                    "This file descriptor (%d) is already used for %s by another green thread "
                    "(%r)" % (fd, "reading" if readable else "writing", slot.waiter.fiber))
            ref = slot.owner
            if ref is not None and ref() is not owner:
                slot = self._check_owner(slot)
        if owner is not None and slot.owner is None:
            slot.owner = _weakref(owner)
        if not slot.registered:
            try:
                slot.register()
            except BaseException:
                slot.discard()
                raise
        waiter = Waiter(self)
        slot.waiter = waiter
        sources = self._sources
        sources.add(waiter)
        try:
            if waiter.wait(timeout) is _TIMED_OUT:
                raise timeout_exc if timeout_exc is not None else TimeoutError("timed out")
        finally:
            sources.discard(waiter)
            if slot.waiter is waiter:
                slot.waiter = None
                if slot.owner is None and slot.watchers is None and slot.callback is None:
                    slot.discard()

    def wait_fds(self, readers, writers, timeout=None):
        """Block until a descriptor in ``readers`` is readable or one in ``writers`` writable
        (True), or ``timeout`` seconds passed (False).  Made for select/poll: any number of
        green threads may wait this way on one descriptor, next to its exclusive waiter, and a
        wake-up is only a hint (somebody else may have consumed the data): poll again."""
        waiter = Waiter(self)
        watched = []
        sources = self._sources
        sources.add(waiter)
        try:
            for fds, table, readable in ((readers, self._readers, True),
                                         (writers, self._writers, False)):
                for fd in fds:
                    slot = table.get(fd)
                    if slot is None:
                        slot = table[fd] = _FdSlot(self, fd, readable)
                    elif slot.owner is not None:
                        slot = self._check_owner(slot)
                    watchers = slot.watchers
                    if watchers is None:
                        slot.watchers = [waiter]
                    elif waiter in watchers:
                        continue  # listed twice
                    else:
                        watchers.append(waiter)
                    watched.append(slot)
                    if not slot.registered:
                        slot.register()
            return waiter.wait(timeout) is not _TIMED_OUT
        finally:
            sources.discard(waiter)
            for slot in watched:
                watchers = slot.watchers
                if watchers is not None and waiter in watchers:
                    watchers.remove(waiter)
                    if not watchers:
                        slot.watchers = None
                if slot.is_unused():
                    slot.discard()

    def start_fd_callback(self, fd, readable, callback):
        """Call ``callback()`` in the hub whenever ``fd`` is readable (or writable), until
        :meth:`stop_fd_callback`.  The callback must not block, and should consume the
        readiness (the loop reports it again otherwise).  It is not a wakeup source: count it
        with :meth:`add_wakeup_source` if it can wake green threads."""
        table = self._readers if readable else self._writers
        slot = table.get(fd)
        if slot is None:
            slot = table[fd] = _FdSlot(self, fd, readable)
        elif slot.owner is not None:
            slot = self._check_owner(slot)
        slot.callback = callback
        if not slot.registered:
            try:
                slot.register()
            except BaseException:
                slot.callback = None
                if slot.is_unused():
                    slot.discard()
                raise

    def stop_fd_callback(self, fd, readable):
        table = self._readers if readable else self._writers
        slot = table.get(fd)
        if slot is not None and slot.callback is not None:
            slot.callback = None
            if slot.is_unused():
                slot.discard()

    def _check_owner(self, slot):
        # The socket that keeps this registration is not the caller.  Another live socket
        # object on the same descriptor (socket(fileno=...)): share it.  Otherwise the owner was
        # closed or collected without forget_fd, so the number now names another file.
        other = slot.owner()
        if other is not None:
            try:
                if other.fileno() == slot.fd:
                    return slot
            except Exception:
                pass
        fd, readable = slot.fd, slot.readable
        self._reset_fd(fd)
        table = self._readers if readable else self._writers
        slot = table.get(fd)
        if slot is None:
            slot = table[fd] = _FdSlot(self, fd, readable)
        return slot

    def _reset_fd(self, fd):
        slots = [slot for slot in (self._readers.get(fd), self._writers.get(fd))
                 if slot is not None]
        for slot in slots:
            slot.owner = None
            slot.unregister()
        # Both directions are off the loop before either is put back: uvloop re-arms a
        # half-removed poll handle, and libuv aborts if it re-arms a closed descriptor.
        for slot in slots:
            if slot.is_unused():
                slot.discard()
            else:
                slot.register()

    def cancel_wait(self, fd, exc):
        """``fd`` is about to be closed: wake its exclusive waiters with ``exc``, its
        select/poll watchers to poll again, and take it off the event loop."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        self._drop_fd(fd, exc)

    def forget_fd(self, fd, exc=None):
        """Call before closing ``fd`` (green sockets do, in close(), detach() and __del__):
        wakes the green threads waiting on it (``exc``, default ``OSError(EBADF)``) and removes
        its registration, so that a new file that gets the same number starts clean."""
        if fd in self._readers or fd in self._writers:
            self._drop_fd(fd, exc)

    def _drop_fd(self, fd, exc):
        slots = [slot for slot in (self._readers.pop(fd, None), self._writers.pop(fd, None))
                 if slot is not None]
        for slot in slots:
            slot.unregister()
        # Both off the loop before anybody runs: a woken green thread may reuse the number.
        for slot in slots:
            slot.callback = None
            slot.wake_watchers()
            waiter = slot.waiter
            if waiter is not None:
                if exc is None:
                    exc = OSError(errno.EBADF, "Bad file descriptor: the socket was closed while "
                                               "a green thread was waiting on it")
                waiter.wake_error(exc)

    def _carry_fd_waits(self, old_loop):
        # After fork with uvloop, self.loop being the child's new loop already: put the
        # registrations on it.  A wait whose registration fails is woken with the error.
        # The old loop must never be freed here: closing its poll handles would EPOLL_CTL_DEL
        # our descriptors from the epoll instance that the parent shares and still uses (kept
        # registrations included).
        _abandoned_loops.append(old_loop)
        for table in (self._readers, self._writers):
            for slot in list(table.values()):
                if slot.registered:
                    slot.registered = False  # on the old loop only
                    try:
                        slot.register()
                    except (OSError, ValueError, RuntimeError) as exc:
                        del table[slot.fd]
                        slot.callback = None
                        if slot.waiter is not None:
                            slot.waiter.wake_error(exc)
                        slot.wake_watchers()

    def idle(self):
        """Block until the hub has no ready green thread left."""
        waiter = Waiter(self)
        self._idle_waiters.append(waiter)
        self._call_soon(self._check_idle)
        try:
            waiter.wait()
        finally:
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)

    def _check_idle(self):
        if self._ready:
            self._call_soon(self._check_idle)
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.wake()

    def join(self, timeout=None):
        """Wait until no green thread can run any more (True) or ``timeout`` passed (False)."""
        waiter = Waiter(self)  # nothing wakes it: only LoopExit or the timeout end the wait
        try:
            waiter.wait(timeout, ref=False)
        except LoopExit:
            return True
        return False

    # -- errors ------------------------------------------------------------------------------

    def handle_error(self, context, exc_type, exc_value, tb):
        """Report an error that ended a green thread or a hub callback; never raises, except
        that KeyboardInterrupt and SystemExit go to the main green thread."""
        if exc_value is None:
            exc_value = exc_type()
        if isinstance(exc_value, SYSTEM_ERROR):
            self.handle_system_error(exc_value)
            return
        self.print_exception(context, exc_type, exc_value, tb)

    def handle_system_error(self, exc):
        current = getcurrent()
        main = self.main
        if main is None:
            # An adopted loop: raise it out of the asyncio loop, which is what asyncio does.
            if current is self.fiber:
                raise exc
            self.run_callback(_raise, exc)
        elif current is main or main.dead:
            raise exc
        else:
            self.interrupt(main, exc)

    def print_exception(self, context, exc_type, exc_value, tb):
        import traceback
        stream = sys.stderr
        if stream is None:
            return
        try:
            traceback.print_exception(exc_type, exc_value, tb, file=stream)
            stream.write("%s failed with %s\n\n" % (_safe_repr(context),
                                                    getattr(exc_type, "__name__", exc_type)))
            stream.flush()
        except Exception:
            pass

    # -- thread pool, lifecycle ------------------------------------------------------------

    @property
    def threadpool(self):
        """The hub's own :class:`loop.threadpool.ThreadPool` of real threads (created lazily)."""
        if self._threadpool is None:
            from loop._core.threadpool import ThreadPool
            self._threadpool = ThreadPool(int(os.environ.get("LOOP_THREADPOOL_SIZE", "10")),
                                          hub=self)
        return self._threadpool

    def destroy(self, destroy_loop=True):
        """Stop this hub and forget it; the next get_hub() in this thread makes a new one."""
        self._destroyed = True
        if getattr(_tls, "hub", None) is self:
            del _tls.hub
        if self._threadpool is not None:
            self._threadpool.kill()
        if not self.adopted and self.fiber and getcurrent() is not self.fiber:
            try:
                self.fiber.throw(FiberExit)
            except FiberError:
                pass
        if destroy_loop and not self.adopted and not self.loop.is_running():
            try:
                self.loop.close()
            except Exception:
                pass

    def _reinit_after_fork(self):
        self.thread_ident = _get_ident()
        loop = self.loop
        # (thread pools, this hub's included, reset themselves: loop.threadpool's fork hook)
        if hasattr(loop, "_reinit_after_fork"):
            loop._reinit_after_fork()
            return
        # uvloop (libuv) cannot be reused in a child: start a new loop, carry the fd waits
        # and the hub's own timers over.  Asyncio tasks and callbacks of the old loop are lost.
        new_loop = _new_event_loop()
        self.loop = new_loop
        # The wakeup sources need no recount: they are registrations, and the ones that
        # belong to the parent's threads (thread pool jobs) were ended by the pools' reinit.
        self._carry_fd_waits(loop)
        self._carry_timers(loop, new_loop)
        self._call_soon = new_loop.call_soon
        self._drain_scheduled = False
        self._deadlock_check_scheduled = False
        if self._ready:
            self._drain_scheduled = True
            self._call_soon(self._drain)
        try:
            loop.stop()  # the old run_forever returns; _run_loop then runs the new loop
        except Exception:
            pass


class HubTimer:
    """A cancellable hub timer that keeps ``LoopExit`` accounting right."""
    __slots__ = ("hub", "handle", "ref", "active", "fn", "args")

    def __init__(self, hub, seconds, fn, args, ref=True):
        self.hub = hub
        self.ref = ref
        self.fn = fn
        self.args = args
        self.active = True
        self.handle = hub._arm_timer(self, ref, seconds, self._fire)

    def _fire(self):
        if not self.active:
            return
        self.active = False
        self.hub._timer_done(self, self.ref)
        try:
            self.fn(*self.args)
        except BaseException as exc:
            self.hub.handle_error(self, type(exc), exc, exc.__traceback__)

    def cancel(self):
        if self.active:
            self.active = False
            self.hub._cancel_timer(self, self.handle, self.ref)

    def __repr__(self):
        return "<HubTimer %r%r>" % (self.fn, self.args)


# ---------------------------------------------------------------------------------------------
# The Waiter: how every other module blocks

_IDLE, _WAITING, _WOKEN, _DONE = range(4)


class Waiter:
    """One wait of one green thread, woken once.

    The waiting green thread calls :meth:`wait`; anybody in the same hub thread (or, through the
    loop's thread-safe call, another OS thread) calls :meth:`wake` or :meth:`wake_error`, which
    queue the waiter's green thread in the hub.  A wake that comes before :meth:`wait` is kept
    and returned at once.
    """
    __slots__ = ("hub", "fiber", "value", "error", "state")

    def __init__(self, hub=None):
        self.hub = hub if hub is not None else get_hub()
        self.fiber = None
        self.value = _NOTHING
        self.error = None
        self.state = _IDLE

    def __repr__(self):
        return "<Waiter %s fiber=%r>" % (("idle", "waiting", "woken", "done")[self.state],
                                         self.fiber)

    @property
    def woken(self):
        """True once a wake was delivered (a timeout is not a wake)."""
        value = self.value
        return value is not _NOTHING and value is not _TIMED_OUT

    def wake(self, value=None):
        """Resume the waiting green thread with ``value``.  Returns True if this wake was
        delivered, False if the waiter was already woken, timed out or abandoned."""
        state = self.state
        if state == _WAITING:
            self.state = _WOKEN
            self.value = value
            hub = self.hub
            if _get_ident() == hub.thread_ident:
                hub._schedule(self.fiber, self)
            else:
                hub.loop.call_soon_threadsafe(self._wake_in_hub)
            return True
        if state == _IDLE:
            self.state = _WOKEN
            self.value = value
            return True
        return False

    def wake_error(self, exc):
        """Resume the waiting green thread by raising ``exc`` in it."""
        if self.state in (_IDLE, _WAITING):
            self.error = exc
            return self.wake(None)
        return False

    @property
    def waiting(self):
        """True while a green thread is blocked in :meth:`wait` and not yet woken."""
        return self.state == _WAITING

    # a Waiter can be used directly as a link callback (Greenlet.rawlink, Event.rawlink)
    __call__ = wake

    def wait(self, timeout=None, ref=True, foreign=False):
        """Block until woken; return the value (or ``_TIMED_OUT`` after ``timeout`` seconds).

        ``foreign=True``: another OS thread may wake this wait, so it is a wakeup source of its
        own (it keeps ``LoopExit`` away) while it lasts."""
        if self.state == _WOKEN:
            self.state = _DONE
            return self._result()
        hub = self.hub
        fiber = getcurrent()
        if fiber is hub.fiber:
            raise BlockingSwitchOutError(_blocking_message())
        self.fiber = fiber
        # A wake from another OS thread may have come in since the first check (the calls
        # above can let other threads run); from here to the switch nothing lets them run
        # before state says _WAITING, and a later wake goes through the hub.
        if self.state == _WOKEN:
            self.state = _DONE
            return self._result()
        self.state = _WAITING
        if foreign:
            hub._sources.add(self)
        timer = None
        if timeout is not None:
            if not ref:
                hub._note_blocking()
            timer = hub._arm_timer(self, ref, timeout, self._timed_out, ref)
        elif not hub._ready and not hub._timers and not hub._sources:
            hub._note_blocking()
        try:
            resumed_by = hub.fiber.switch()
        except BaseException:
            if self.state == _WOKEN:
                # Our wake-up is queued; it must not switch into us later.
                _remove_entry(hub._ready, (fiber, self))
            self.state = _DONE
            self._end_wait(timer, ref, foreign)
            raise
        self.state = _DONE
        self._end_wait(timer, ref, foreign)
        if resumed_by is not self:
            raise InvalidSwitchError("Invalid switch into %r: got %r, expected %r"
                                     % (fiber, resumed_by, self))
        return self._result()

    def _end_wait(self, timer, ref, foreign):
        # Ends this wait's registrations: its timer unless that fired (which ended it), and
        # its foreign-wake registration.
        if timer is not None and self.value is not _TIMED_OUT:
            self.hub._cancel_timer(self, timer, ref)
        if foreign:
            self.hub._sources.discard(self)

    def _wake_in_hub(self):
        # A wake from another OS thread, run in the hub's thread: the waiter may have been
        # left by an exception in between, and then must not be switched into.
        if self.state == _WOKEN and self.fiber is not None:
            self.hub._schedule(self.fiber, self)

    def _timed_out(self, ref):
        self.hub._timer_done(self, ref)
        if self.state != _WAITING:
            return
        self.state = _WOKEN
        self.value = _TIMED_OUT
        self.hub._resume(self.fiber, self)

    def _result(self):
        error = self.error
        if error is not None:
            self.error = None
            raise error
        return self.value


def _remove_entry(ready, entry):
    try:
        ready.remove(entry)
    except ValueError:
        pass


def _raise(exc):
    raise exc


def _safe_repr(obj):
    try:
        return repr(obj)
    except Exception:
        return object.__repr__(obj)


def _blocking_message():
    return ("Cannot block inside the hub: this code runs in an asyncio callback or coroutine "
            "on the hub's event loop.  Use 'await' there (and 'await loop.run_green(fn)' to run "
            "blocking green code), or move the call into a green thread.")


_HUB_TIMER_OWNERS = (Hub, Waiter, HubTimer)


def _loop_has_pending_work(loop):
    asyncio = _originals.get("asyncio")
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
                    getattr(handle._callback, "__self__", None), _HUB_TIMER_OWNERS):
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


# ---------------------------------------------------------------------------------------------
# File descriptor slots (see "file descriptors" in Hub)

#: uvloop loops that a forked child replaced (see Hub._carry_fd_waits).
_abandoned_loops = []


class _FdSlot:
    """One descriptor and direction on one hub: who waits on it, and whether the event loop
    has our callback installed."""
    __slots__ = ("hub", "fd", "readable", "waiter", "watchers", "callback", "owner",
                 "registered")

    def __init__(self, hub, fd, readable):
        self.hub = hub
        self.fd = fd
        self.readable = readable
        self.waiter = None      # the exclusive Waiter
        self.watchers = None    # list of select/poll Waiters
        self.callback = None    # a hub-side callback (a server's accept loop)
        self.owner = None       # weak reference to the socket that keeps the registration
        self.registered = False

    def __repr__(self):
        return "<_FdSlot fd=%d %s%s waiter=%r watchers=%d%s%s>" % (
            self.fd, "read" if self.readable else "write",
            "" if self.registered else " unregistered", self.waiter,
            len(self.watchers or ()), " callback" if self.callback is not None else "",
            " kept" if self.owner is not None else "")

    def is_unused(self):
        return (self.waiter is None and self.watchers is None and self.callback is None
                and self.owner is None)

    def register(self):
        loop = self.hub.loop
        try:  # the base methods: our registrations are not user code's (see _RawCall)
            add = loop._hub_add_reader if self.readable else loop._hub_add_writer
        except AttributeError:  # an adopted asyncio loop
            add = loop.add_reader if self.readable else loop.add_writer
        add(self.fd, self.ready)
        self.registered = True

    def unregister(self):
        if self.registered:
            self.registered = False
            loop = self.hub.loop
            try:
                try:
                    remove = loop._hub_remove_reader if self.readable else loop._hub_remove_writer
                except AttributeError:
                    remove = loop.remove_reader if self.readable else loop.remove_writer
                remove(self.fd)
            except (OSError, ValueError, RuntimeError):
                pass  # closed behind our back; uvloop: the number is a transport's by now

    def wake_watchers(self):
        """Queue every select/poll watcher (they poll again) and forget them."""
        watchers = self.watchers
        if watchers is not None:
            self.watchers = None
            for waiter in watchers:
                waiter.wake(True)

    def discard(self):
        self.unregister()
        hub = self.hub
        table = hub._readers if self.readable else hub._writers
        if table.get(self.fd) is self:
            del table[self.fd]

    def ready(self):
        # The event loop's callback.  Watchers are queued (there may be many); the exclusive
        # waiter is switched into directly, last, because it may close the descriptor or wait
        # on it again before _resume returns.
        if self.watchers is not None:
            self.wake_watchers()
        callback = self.callback
        if callback is not None:
            try:
                callback()
            except BaseException as exc:
                self.hub.handle_error(callback, type(exc), exc, exc.__traceback__)
        waiter = self.waiter
        if waiter is not None and waiter.state == _WAITING:
            self.waiter = None
            if self.owner is None and self.callback is None:
                self.discard()
            waiter.state = _WOKEN
            self.hub._resume(waiter.fiber, waiter)
        elif self.callback is None:
            # Nobody waits any more, e.g. a kept registration that data overtook while its
            # socket's green thread was busy.  The next wait registers again.
            self.discard()


# ---------------------------------------------------------------------------------------------
# Finding the hub

def get_hub():
    """The current OS thread's hub, created on first use."""
    try:
        hub = _tls.hub
    except AttributeError:
        return _create_hub()
    if hub._started:
        return hub
    return _check_hub(hub)


def get_hub_if_exists():
    return getattr(_tls, "hub", None)


#: asyncio loops that green code runs on top of the hub (see loop._core.nesting); never adopted.
nested_loops = set()


def _running_asyncio_loop():
    if "asyncio" not in sys.modules:
        return None
    running = prepare()["get_running_loop"]()
    if running is not None and running in nested_loops:
        return None
    return running


#: The class get_hub() instantiates (see get_hub_class); None until the first hub is made.
_hub_class = None


def get_hub_class():
    """The class get_hub() instantiates: :class:`loop.hub.Hub` (this Hub with gevent's error
    conventions) unless :func:`set_hub_class` chose another."""
    global _hub_class
    if _hub_class is None:  # resolved by prepare(), before any patch
        try:
            from loop.hub import Hub as _hub_class
        except ModuleNotFoundError as exc:  # a build without the gevent-style facade
            if exc.name != "loop.hub":
                raise
            _hub_class = Hub
    return _hub_class


def set_hub_class(cls):
    """Make get_hub() create ``cls`` (a Hub subclass) from now on; existing hubs stay."""
    global _hub_class
    if not (isinstance(cls, type) and issubclass(cls, Hub)):
        raise TypeError("hub class must be a subclass of loop.hub.Hub, not %r" % (cls,))
    _hub_class = cls


def _create_hub():
    running = _running_asyncio_loop()
    cls = get_hub_class()
    hub = cls(adopt_loop=running) if running is not None else cls()
    _tls.hub = hub
    return hub


def _check_hub(hub):
    # Slow path, for an adopted hub or an owned hub that has not started yet: is the asyncio
    # loop running in this thread still the one the hub uses?
    running = _running_asyncio_loop()
    if hub.adopted:
        loop = hub.loop
        if not loop.is_closed() and (running is loop or (
                running is None and loop.is_running() and getcurrent() is not hub.fiber)):
            return hub  # asyncio code on the loop, or one of its green threads (no view)
    elif not hub.fiber.dead and (running is None or running is hub.loop):
        return hub
    # Replace it, keeping what was already queued.
    cls = get_hub_class()
    new = cls(adopt_loop=running) if running is not None else cls()
    for entry in hub._ready:
        if type(entry) is tuple:
            new._schedule(*entry)
        else:
            new.schedule_start(entry)
    _tls.hub = new
    return new


def reinit(hub=None):
    """Make the hub usable in a forked child (called automatically after ``os.fork()``)."""
    hub = hub if hub is not None else get_hub_if_exists()
    if hub is not None:
        hub._reinit_after_fork()


def _after_fork_in_child():
    hub = get_hub_if_exists()
    if hub is not None:
        try:
            hub._reinit_after_fork()
        except Exception as exc:  # never let a fork hook kill the child
            sys.stderr.write("loop: reinit after fork failed: %r\n" % (exc,))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Module-level shortcuts.

def sleep(seconds=0, ref=True):
    """Block the current green thread for ``seconds``.

    ``sleep(0)`` (or a negative value) yields: every other ready green thread runs once, and
    pending IO is polled, before this one continues.  ``ref=False`` means this sleep alone does
    not keep the hub from raising ``LoopExit``."""
    # Hot path of every cooperative loop: Hub.yield_now inlined, the hub found through the
    # current green thread's parent.
    current = getcurrent()
    hub_fiber = current.parent
    if type(hub_fiber) is _HubFiber:
        hub = hub_fiber.hub
    else:
        hub = get_hub()
        hub_fiber = hub.fiber
        if current is hub_fiber:
            raise BlockingSwitchOutError(_blocking_message())
    if seconds > 0:
        hub.sleep(seconds, ref)
        return
    entry = (current, _YIELD)
    hub._ready.append(entry)
    if not hub._drain_scheduled:
        hub._drain_scheduled = True
        hub._call_soon(hub._drain)
    try:
        resumed_by = hub_fiber.switch()
    except BaseException:
        _remove_entry(hub._ready, entry)
        raise
    if resumed_by is not _YIELD:
        raise InvalidSwitchError("Invalid switch into %r while yielding: %r"
                                 % (current, resumed_by))


def current_hub():
    """The hub of the current green thread (fast), else this thread's hub."""
    parent = getcurrent().parent
    if type(parent) is _HubFiber:
        return parent.hub
    return get_hub()


# Module-level shortcuts for the modules that do IO.

def wait_readable(fd, timeout=None, timeout_exc=None):
    """Block the current green thread until ``fd`` (an int or an object with fileno()) is
    readable.  Raises ``ConcurrentObjectUseError`` if another green thread already waits to
    read it, and ``timeout_exc`` (default ``TimeoutError``) after ``timeout`` seconds."""
    get_hub().wait_readable(fd, timeout, timeout_exc)


def wait_writable(fd, timeout=None, timeout_exc=None):
    """Like :func:`wait_readable`, for writing."""
    get_hub().wait_writable(fd, timeout, timeout_exc)


def cancel_wait(fd, exc):
    """Wake the green threads waiting on ``fd`` with ``exc``; call before closing ``fd``."""
    hub = get_hub_if_exists()
    if hub is not None:
        hub.cancel_wait(fd, exc)


def forget_fd(fd):
    """Call before closing ``fd``: see :meth:`Hub.forget_fd`."""
    hub = get_hub_if_exists()
    if hub is not None:
        hub.forget_fd(fd)
