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
Only the core switches fibers (:mod:`loop._core` names its modules), nearly all of it here: the
drain of the ready queue, :meth:`Hub.resume` (a single-shot hub callback resuming its green
thread), :meth:`Hub.interrupt` (an exception thrown into a waiting green thread), and the waits:
:meth:`Hub.park`, where :class:`loop._core.waiter.Waiter` and :meth:`Hub.switch` switch out,
and the sleeps (:meth:`Hub.sleep`, :meth:`Hub.yield_now`, :func:`sleep`).  Everything else waits
through a Waiter or those waits, and wakes through :meth:`Waiter.wake` and
:meth:`Hub.interrupt`.  Keeping the switches in few places is what makes
the two safety checks possible: a wait checks that it was resumed by the event it registered
(else ``InvalidSwitchError``), and a wait started from inside the hub itself -- an asyncio
callback or coroutine -- fails at once with ``BlockingSwitchOutError`` instead of deadlocking
the loop.

The ready queue
---------------
Green threads that are runnable right now (just spawned, yielding with ``sleep(0)``, woken by an
``Event``) are not each given an asyncio ``call_soon`` handle.  They go into one deque of
``(target, value)`` pairs, and a single loop callback, :meth:`Hub._drain`, resumes them with
``target.switch(value)``.  Queueing is one rule -- append, and schedule the drain unless one is
scheduled already -- written once, in :meth:`Hub.enqueue`, which everything that queues uses.
``target`` is usually the fiber itself, so a resume allocates nothing but the pair.  A green
thread's start is queued as the bare fiber, meaning ``(fiber, None)``:
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
(uvloop's timers cannot be inspected afterwards), see :mod:`loop._core.eventloop`.

Interrupted waits
-----------------
A wait left by an exception (``Timeout``, ``kill``) takes its own queued wake-up out of the
ready queue (:meth:`Hub.unqueue`), see :mod:`loop._core.waiter`.

Unpatched stdlib
----------------
The hub must keep working after :mod:`loop.monkey` replaced ``socket``, ``select``,
``selectors``, ``threading`` and ``time``: it takes every stdlib function it needs from
:mod:`loop._core.originals`, bound before any patch, and runs the loop classes of
:mod:`loop._core.eventloop`.

File descriptors
----------------
The fd table (who waits on which descriptor, and how registrations outlive a wait) is
:mod:`loop._core.fdtable`; the Hub methods under "file descriptors" below work on it.

Adopting a running asyncio loop
-------------------------------
When green code is first used from inside a running asyncio loop (``asyncio.run(main())`` calling
``loop.run_green``), the hub adopts that loop instead of creating one, and the fiber that runs the
loop becomes the hub fiber.  asyncio stays in charge of the program's lifetime, so there is no
main green thread and no ``LoopExit`` in that mode.
"""
import errno
import os
import sys
import traceback
from _weakref import ref as _weakref
from collections import deque

from loop._core import originals
from loop._core.eventloop import has_pending_work, new_event_loop
from loop._core.exceptions import (BLOCKING_IN_HUB, BlockingSwitchOutError,
                                   ConcurrentObjectUseError, InvalidSwitchError, LoopExit,
                                   safe_repr)
from loop._core.fdtable import FdSlot, abandoned_loops
from loop._core.monitor import start_blocking_monitor
from loop._core.originals import get_ident, monotonic, prepare
from loop._core.waiter import TIMED_OUT, TIMER, YIELD, Waiter
from loop._switch import Fiber, FiberError, FiberExit, getcurrent

__all__ = ["Hub", "HubTimer", "Waiter", "get_hub", "get_hub_if_exists", "current_hub", "reinit",
           "prepare", "sleep", "wait_readable", "wait_writable", "cancel_wait", "forget_fd",
           "get_hub_class", "set_hub_class", "nested_loops", "SYSTEM_ERROR"]

_tls = originals.thread_local()

#: Exceptions that are not errors of one green thread but requests to stop the program; they are
#: delivered to the thread's main green thread rather than printed.
SYSTEM_ERROR = (KeyboardInterrupt, SystemExit)

#: How much later than a wait's deadline an fd slot's pending deadline timer may fire and still
#: serve that wait, instead of being re-armed (see loop._core.fdtable).  uvloop's clock moves in
#: whole milliseconds, once per turn of its loop: every wait of one turn computes its deadline
#: from the same clock reading, microseconds earlier than the one before it, and would re-arm
#: the timer each time.  (The stdlib loop also runs a timer up to its clock resolution early.)
DEADLINE_SLACK = 0.001


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


class HubFiber(Fiber):
    """The fiber that runs a hub's event loop; knows its hub, so a green thread finds its hub
    with ``getcurrent().parent.hub`` instead of a thread-local lookup."""
    __slots__ = ("hub",)


def root_fiber():
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
        self.thread_ident = get_ident()
        self._ready = deque()
        self._drain_scheduled = False
        #: Wakeup sources (see "Wakeup sources" in the module docstring): the hub's own pending
        #: timers that keep LoopExit away (key -> loop handle), and every other registration
        #: (fd waits, thread pool jobs, awaits, waits a foreign OS thread ends, add_wakeup_source).
        self._timers = {}
        self._sources = set()
        self._anonymous_sources = []
        self._deadlock_check_scheduled = False
        #: fd -> FdSlot, one table per direction (see loop._core.fdtable).
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
            self.loop = new_event_loop()
            self.adopted = False
            self.main = root_fiber()
            self.fiber = HubFiber(self._run_loop, self.main)
            self.fiber.hub = self
            # run_in_executor(None, ...) on the hub must use real threads even after
            # patch_thread(): a green worker could only be waited for by blocking the hub.
            # In-function import: hub -> threadpool -> event -> waiter -> hub.
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
            start_blocking_monitor(self, float(max_blocking))

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

    def ready_entries(self):
        """What the ready queue holds now (a copy): ``(target, value)`` pairs, and bare fibers
        queued for their start."""
        return list(self._ready)

    def watched_fds(self):
        """The descriptors in this hub's fd table, either direction, sorted."""
        return sorted(set(self._readers) | set(self._writers))

    @property
    def destroyed(self):
        """True once :meth:`destroy` ran."""
        return self._destroyed

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
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
        return self.park()

    def park(self):
        """Switch from the current green thread -- never the hub fiber: the caller checked --
        to the hub, after registering how it is to be woken; return what resumed it.  If
        nothing is ready or registered, the hub checks for ``LoopExit`` soon."""
        if not self._ready and not self._timers and not self._sources:
            self.note_blocking()
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
        originals.set_running_loop(None)  # green threads do not run inside the event loop
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
            originals.set_running_loop(self.loop)
            if ready and not self._dying:
                # With a drain pending, the loop polls without waiting: the time until that
                # drain runs is work, not idle time.
                self._busy_since = monotonic()
                self._call_soon(self._drain)
            else:
                self._busy_since = None
                self._drain_scheduled = False
                if not self._timers and not self._sources:
                    self.note_blocking()

    def _on_hub_killed(self):
        self._dying = True
        self.loop.stop()

    def resume(self, fiber, value):
        """Switch into one waiting green thread from a hub callback (an event loop callback,
        never from within a drain)."""
        originals.set_running_loop(None)
        try:
            fiber.switch(value)
        except FiberExit:
            self._on_hub_killed()
        except BaseException as exc:
            self.handle_error(fiber, type(exc), exc, exc.__traceback__)
        finally:
            originals.set_running_loop(self.loop)
        if not self._ready and not self._timers and not self._sources:
            self.note_blocking()

    # -- scheduling --------------------------------------------------------------------------

    def enqueue(self, entry):
        """The ready queue's one rule: append ``entry`` -- a ``(target, value)`` pair, resumed
        as ``target.switch(value)``, or a bare fiber, meaning ``(fiber, None)`` -- and make sure
        one drain is scheduled.  Only from this hub's OS thread."""
        self._ready.append(entry)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def unqueue(self, entry):
        """Take ``entry`` out of the ready queue if it is still there: a wait left by an
        exception removes its own queued wake-up (see :mod:`loop._core.waiter`)."""
        try:
            self._ready.remove(entry)
        except ValueError:
            pass

    def schedule(self, target, value):
        """Queue ``target.switch(value)`` (a waiting green thread and its wake value)."""
        self.enqueue((target, value))

    def run_callback(self, fn, *args):
        """Call ``fn(*args)`` in the hub soon, in order with ready green threads.  ``fn`` must
        not block.  Only from this hub's OS thread; see :meth:`run_callback_threadsafe`."""
        self.schedule(_Call(fn, args), None)

    def run_callback_threadsafe(self, fn, *args):
        """Like :meth:`run_callback`, callable from any OS thread."""
        if get_ident() == self.thread_ident:
            self.schedule(_Call(fn, args), None)
        else:
            self.loop.call_soon_threadsafe(self.schedule, _Call(fn, args), None)

    def schedule_start(self, fiber, value=None):
        """Queue ``fiber.switch(value)``: starts a green thread created with this hub's fiber as
        parent.  Used by :mod:`loop.greenlet`."""
        # The fiber alone stands for (fiber, None): a spawn then leaves one GC-tracked object
        # behind (the green thread) instead of two, and spawning 100,000 green threads
        # triggers that many fewer collections.
        self.enqueue(fiber if value is None else (fiber, value))

    def interrupt(self, fiber, exc):
        """Raise ``exc`` in a waiting green thread at its waiting point.

        From the hub (a timer, a callback) this happens at once; from a green thread it is
        queued, so the caller keeps running."""
        if getcurrent() is self.fiber:
            if not fiber.dead:
                previous = originals.get_running_loop()  # from a drain (None) or a loop callback
                originals.set_running_loop(None)
                try:
                    fiber.throw(exc)
                except FiberExit:
                    self._on_hub_killed()
                except BaseException as err:
                    self.handle_error(fiber, type(err), err, err.__traceback__)
                finally:
                    originals.set_running_loop(previous)
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

    def note_blocking(self):
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
        if has_pending_work(self.loop, _HUB_TIMER_OWNERS):
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
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
        entry = (current, YIELD)
        self.enqueue(entry)
        try:
            resumed_by = self.fiber.switch()
        except BaseException:
            self.unqueue(entry)
            raise
        if resumed_by is not YIELD:
            raise InvalidSwitchError("Invalid switch into %r while yielding: %r"
                                     % (current, resumed_by))

    def sleep(self, seconds, ref=True):
        """Block the current green thread for ``seconds``.  ``ref=False``: this timer does not
        keep ``LoopExit`` away."""
        current = getcurrent()
        if current is self.fiber:
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
        if not ref:
            self.note_blocking()
        handle = self.arm_timer(current, ref, seconds, self._timer_fired, current, ref)
        try:
            resumed_by = self.fiber.switch()
        except BaseException:
            self.cancel_timer(current, handle, ref)
            raise
        if resumed_by is not TIMER:
            self.cancel_timer(current, handle, ref)
            raise InvalidSwitchError("Invalid switch into %r while sleeping: %r"
                                     % (current, resumed_by))

    def _timer_fired(self, fiber, ref):
        self.timer_done(fiber, ref)
        self.resume(fiber, TIMER)

    # The hub's own timers (a sleep, a Waiter's timeout, a HubTimer) are registered under that
    # key while pending: ref=True ones in self._timers, which makes them wakeup sources (see
    # "Wakeup sources"); ref=False ones in self._unref_timers when the loop is one a forked
    # child must replace (see _carry_timers).  Arming registers, and the timer's end -- it
    # fired (_timer_done) or was cancelled (_cancel_timer) -- unregisters; both pop by key, so
    # neither can unregister twice.

    def arm_timer(self, key, ref, seconds, fn, *args):
        handle = self._call_later(seconds, fn, *args)
        if ref:
            self._timers[key] = handle
        elif self._unref_timers is not None:
            self._unref_timers[key] = handle
        return handle

    def timer_done(self, key, ref):
        if ref:
            self._timers.pop(key, None)
        elif self._unref_timers is not None:
            self._unref_timers.pop(key, None)

    def cancel_timer(self, key, handle, ref):
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
                elif isinstance(key, FdSlot):   # a deadline timer: the slot keeps its handle
                    key.timer = table[key] = self._call_later(max(delay, 0.0),
                                                              key.deadline_passed)
                    continue
                elif isinstance(key, Waiter):
                    fn, args = key.timer_expired, (ref,)
                else:  # a sleeping fiber
                    fn, args = self._timer_fired, (key, ref)
                table[key] = self._call_later(max(delay, 0.0), fn, *args)

    def call_later(self, seconds, fn, *args, ref=True):
        """Run ``fn(*args)`` in the hub after ``seconds``; returns a :class:`HubTimer`."""
        return HubTimer(self, seconds, fn, args, ref)

    # -- file descriptors --------------------------------------------------------------------
    #
    # One FdSlot per descriptor and direction, in self._readers / self._writers: see
    # loop._core.fdtable for who may wait on a slot and how a registration outlives a wait.

    def wait_readable(self, fd, timeout=None, timeout_exc=None):
        """Block the current green thread until ``fd`` is readable."""
        self.wait_fd(fd, True, timeout, timeout_exc, None)

    def wait_writable(self, fd, timeout=None, timeout_exc=None):
        """Block the current green thread until ``fd`` is writable."""
        self.wait_fd(fd, False, timeout, timeout_exc, None)

    def wait_fd(self, fd, readable, timeout=None, timeout_exc=None, owner=None):
        """Block the current green thread until ``fd`` is readable (``readable``) or writable.
        ``owner``: the socket that owns ``fd`` and calls :meth:`forget_fd` before closing it;
        its registration then outlives the wait.  Without one the registration ends with the
        wait: nobody would tell the hub when ``fd`` is closed."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        table = self._readers if readable else self._writers
        slot = table.get(fd)
        if slot is None:
            slot = table[fd] = FdSlot(self, table, fd, readable)
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
            if timeout is None:
                result = waiter.wait_registered()   # the waiter is in sources: see there
            elif slot.owner is None:
                result = waiter.wait(timeout)
            else:
                # A kept registration times its waits with its own lazy timer (fdtable).
                due = self.loop.time() + timeout
                slot.deadline = due
                if slot.timer is None or slot.timer_due > due + DEADLINE_SLACK:
                    slot.cancel_deadline()
                    slot.arm_deadline(timeout, due)
                try:
                    result = waiter.wait_registered()
                finally:
                    slot.deadline = None
            if result is TIMED_OUT:
                if timeout_exc is None:
                    raise TimeoutError("timed out")
                raise timeout_exc
        finally:
            # the traceback keeps this frame: a local still naming the raised exception would
            # make a reference cycle of every timed-out wait
            timeout_exc = None
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
                        slot = table[fd] = FdSlot(self, table, fd, readable)
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
            return waiter.wait(timeout) is not TIMED_OUT
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
            slot = table[fd] = FdSlot(self, table, fd, readable)
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
            slot = table[fd] = FdSlot(self, table, fd, readable)
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
            slot.cancel_deadline()
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
        abandoned_loops.append(old_loop)
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
        stream = sys.stderr
        if stream is None:
            return
        try:
            traceback.print_exception(exc_type, exc_value, tb, file=stream)
            stream.write("%s failed with %s\n\n" % (safe_repr(context),
                                                    getattr(exc_type, "__name__", exc_type)))
            stream.flush()
        except Exception:
            pass

    # -- thread pool, lifecycle ------------------------------------------------------------

    @property
    def threadpool(self):
        """The hub's own :class:`loop.threadpool.ThreadPool` of real threads (created lazily)."""
        if self._threadpool is None:
            # In-function import: hub -> threadpool -> event -> waiter -> hub.
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
        self.thread_ident = get_ident()
        loop = self.loop
        # (thread pools, this hub's included, reset themselves: loop.threadpool's fork hook)
        if hasattr(loop, "_reinit_after_fork"):
            loop._reinit_after_fork()
            return
        # uvloop (libuv) cannot be reused in a child: start a new loop, carry the fd waits
        # and the hub's own timers over.  Asyncio tasks and callbacks of the old loop are lost.
        new_loop = new_event_loop()
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
        self.handle = hub.arm_timer(self, ref, seconds, self._fire)

    def _fire(self):
        if not self.active:
            return
        self.active = False
        self.hub.timer_done(self, self.ref)
        try:
            self.fn(*self.args)
        except BaseException as exc:
            self.hub.handle_error(self, type(exc), exc, exc.__traceback__)

    def cancel(self):
        if self.active:
            self.active = False
            self.hub.cancel_timer(self, self.handle, self.ref)

    def __repr__(self):
        return "<HubTimer %r%r>" % (self.fn, self.args)


def _raise(exc):
    raise exc


#: The classes whose methods are the hub's own timer callbacks (see has_pending_work).
_HUB_TIMER_OWNERS = (Hub, Waiter, HubTimer)

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
    prepare()
    running = originals.get_running_loop()
    if running is not None and running in nested_loops:
        return None
    return running


#: The class get_hub() instantiates (see get_hub_class); None until the first hub is made.
_hub_class = None


def get_hub_class():
    """The class get_hub() instantiates: :class:`loop._core.conventions.Hub` (this Hub with
    gevent's error conventions, public as ``loop.hub.Hub``) unless :func:`set_hub_class` chose
    another."""
    global _hub_class
    if _hub_class is None:  # resolved by prepare(), before any patch
        # In-function import: hub -> conventions -> hub (its Hub subclasses this one).
        from loop._core.conventions import Hub as _hub_class
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
            new.schedule(*entry)
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
    if type(hub_fiber) is HubFiber:
        hub = hub_fiber.hub
    else:
        hub = get_hub()
        hub_fiber = hub.fiber
        if current is hub_fiber:
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
    if seconds > 0:
        hub.sleep(seconds, ref)
        return
    entry = (current, YIELD)
    # Hub.enqueue written out: a method call here costs a yield about 8% (callgrind, 3.12)
    hub._ready.append(entry)
    if not hub._drain_scheduled:
        hub._drain_scheduled = True
        hub._call_soon(hub._drain)
    try:
        resumed_by = hub_fiber.switch()
    except BaseException:
        hub.unqueue(entry)
        raise
    if resumed_by is not YIELD:
        raise InvalidSwitchError("Invalid switch into %r while yielding: %r"
                                 % (current, resumed_by))


def current_hub():
    """The hub of the current green thread (fast), else this thread's hub."""
    parent = getcurrent().parent
    if type(parent) is HubFiber:
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
