"""The Waiter: how every module above the hub blocks a green thread, and how it is woken.

A :class:`Waiter` is one wait of one green thread, woken once.  Events, locks, queues, pools,
joins and awaits all block through it: the waiting green thread calls :meth:`Waiter.wait`;
anybody else calls :meth:`Waiter.wake` or :meth:`Waiter.wake_error`.  The switches themselves
are the hub's (see :mod:`loop._core`): a wait parks its green thread with ``Hub.park`` after
registering how it is to be woken, and a wake queues it for the hub's drain (or, for a timeout,
the hub's timer callback resumes it).

Tokens.  The hub passes a token as the switch value, so a wait can tell who resumed it: a
:class:`Waiter` resumes its own wait with itself, a sleep is resumed with :data:`TIMER`, a
``sleep(0)`` with :data:`YIELD`.  Anything else is an ``InvalidSwitchError``.  :data:`TIMED_OUT`
is what :meth:`Waiter.wait` returns when its timeout passed.

Interrupted waits.  A waiting green thread can be resumed early by an exception (``Timeout``,
``kill``).  If its regular wake-up was already queued, that stale entry would later switch into
it at some unrelated point, so a wait left by an exception takes its own entry out of the ready
queue (``Hub.unqueue``; rare, so its O(n) cost does not matter).  A wake from another OS thread
reaches the hub later, through the loop's thread-safe call: it queues the green thread only if
the wait is still the one it woke.

A wait that another OS thread may end (``wait(foreign=True)``, see :mod:`loop.thread`) is a
wakeup source of its own for as long as it lasts: the hub cannot see a waker in another thread.
"""
from loop._core.exceptions import BLOCKING_IN_HUB, BlockingSwitchOutError, InvalidSwitchError
from loop._core.originals import get_ident
from loop._switch import getcurrent

__all__ = ["Waiter", "YIELD", "TIMER", "TIMED_OUT", "NOTHING",
           "IDLE", "WAITING", "WOKEN", "DONE"]


class Token:
    """A switch value that says who resumed a wait."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<%s>" % self.name


YIELD = Token("yield")
TIMER = Token("timer")
TIMED_OUT = Token("timed out")
NOTHING = Token("nothing")

#: loop._core.hub.get_hub once a Waiter was made without a hub (see _bind_get_hub).
_get_hub = None


def _bind_get_hub():
    # In-function import: waiter -> hub -> waiter (the hub's own waits use Waiters).  Bound once
    # into a global: an import statement costs ~170 ns more than a global, in every Waiter().
    global _get_hub
    from loop._core.hub import get_hub
    _get_hub = get_hub
    return get_hub


#: A Waiter's states: not waited on yet, a green thread waits, a wake was delivered (the green
#: thread may not have run yet), the wait is over.
IDLE, WAITING, WOKEN, DONE = range(4)


class Waiter:
    """One wait of one green thread, woken once.

    The waiting green thread calls :meth:`wait`; anybody in the same hub thread (or, through the
    loop's thread-safe call, another OS thread) calls :meth:`wake` or :meth:`wake_error`, which
    queue the waiter's green thread in the hub.  A wake that comes before :meth:`wait` is kept
    and returned at once.
    """
    __slots__ = ("hub", "fiber", "value", "error", "state")

    def __init__(self, hub=None):
        if hub is None:
            hub = (_get_hub or _bind_get_hub())()
        self.hub = hub
        self.fiber = None
        self.value = NOTHING
        self.error = None
        self.state = IDLE

    def __repr__(self):
        return "<Waiter %s fiber=%r>" % (("idle", "waiting", "woken", "done")[self.state],
                                         self.fiber)

    @property
    def woken(self):
        """True once a wake was delivered (a timeout is not a wake)."""
        value = self.value
        return value is not NOTHING and value is not TIMED_OUT

    def wake(self, value=None):
        """Resume the waiting green thread with ``value``.  Returns True if this wake was
        delivered, False if the waiter was already woken, timed out or abandoned."""
        state = self.state
        if state == WAITING:
            self.state = WOKEN
            self.value = value
            hub = self.hub
            if get_ident() == hub.thread_ident:
                hub.enqueue((self.fiber, self))
            else:
                hub.loop.call_soon_threadsafe(self._wake_in_hub)
            return True
        if state == IDLE:
            self.state = WOKEN
            self.value = value
            return True
        return False

    def wake_error(self, exc):
        """Resume the waiting green thread by raising ``exc`` in it."""
        if self.state in (IDLE, WAITING):
            self.error = exc
            return self.wake(None)
        return False

    @property
    def waiting(self):
        """True while a green thread is blocked in :meth:`wait` and not yet woken."""
        return self.state == WAITING

    # a Waiter can be used directly as a link callback (Greenlet.rawlink, Event.rawlink)
    __call__ = wake

    def wait(self, timeout=None, ref=True, foreign=False):
        """Block until woken; return the value (or ``TIMED_OUT`` after ``timeout`` seconds).

        ``foreign=True``: another OS thread may wake this wait, so it is a wakeup source of its
        own (it keeps ``LoopExit`` away) while it lasts."""
        if self.state == WOKEN:
            self.state = DONE
            return self._result()
        hub = self.hub
        fiber = getcurrent()
        if fiber is hub.fiber:
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
        self.fiber = fiber
        # A wake from another OS thread may have come in since the first check (the calls
        # above can let other threads run); from here to the switch nothing lets them run
        # before state says WAITING, and a later wake goes through the hub.
        if self.state == WOKEN:
            self.state = DONE
            return self._result()
        self.state = WAITING
        if foreign:
            hub.add_wakeup_source(self)
        timer = None
        if timeout is not None:
            if not ref:
                hub.note_blocking()
            timer = hub.arm_timer(self, ref, timeout, self.timer_expired, ref)
        try:
            resumed_by = hub.park()
        except BaseException:
            if self.state == WOKEN:
                # Our wake-up is queued; it must not switch into us later.
                hub.unqueue((fiber, self))
            self.state = DONE
            self._end_wait(timer, ref, foreign)
            raise
        self.state = DONE
        self._end_wait(timer, ref, foreign)
        if resumed_by is not self:
            raise InvalidSwitchError("Invalid switch into %r: got %r, expected %r"
                                     % (fiber, resumed_by, self))
        return self._result()

    def wait_registered(self):
        """:meth:`wait` without a timeout, for a caller that has made this waiter a wakeup
        source of the hub (``Hub.wait_fd``): the hub then has something to wait for, so the
        park goes straight to the hub's fiber, with no ``LoopExit`` check and no timer to
        end.  The fd wait of every green socket comes here; each call saved counts."""
        if self.state == WOKEN:
            self.state = DONE
            return self._result()
        hub = self.hub
        fiber = getcurrent()
        if fiber is hub.fiber:
            raise BlockingSwitchOutError(BLOCKING_IN_HUB)
        self.fiber = fiber
        if self.state == WOKEN:     # see wait()
            self.state = DONE
            return self._result()
        self.state = WAITING
        try:
            resumed_by = hub.fiber.switch()
        except BaseException:
            if self.state == WOKEN:
                hub.unqueue((fiber, self))
            self.state = DONE
            raise
        self.state = DONE
        if resumed_by is not self:
            raise InvalidSwitchError("Invalid switch into %r: got %r, expected %r"
                                     % (fiber, resumed_by, self))
        if self.error is None:
            return self.value
        return self._result()

    def _end_wait(self, timer, ref, foreign):
        # Ends this wait's registrations: its timer unless that fired (which ended it), and
        # its foreign-wake registration.
        if timer is not None and self.value is not TIMED_OUT:
            self.hub.cancel_timer(self, timer, ref)
        if foreign:
            self.hub.remove_wakeup_source(self)

    def _wake_in_hub(self):
        # A wake from another OS thread, run in the hub's thread: the waiter may have been
        # left by an exception in between, and then must not be switched into.
        if self.state == WOKEN and self.fiber is not None:
            self.hub.schedule(self.fiber, self)

    def timer_expired(self, ref):
        """The callback of this wait's timer (the hub re-arms it on a forked child's loop)."""
        self.hub.timer_done(self, ref)
        self.time_out()

    def time_out(self):
        """End the wait, if it is still waiting, with ``TIMED_OUT``: from a hub callback."""
        if self.state != WAITING:
            return
        self.state = WOKEN
        self.value = TIMED_OUT
        self.hub.resume(self.fiber, self)

    def _result(self):
        error = self.error
        if error is not None:
            self.error = None
            try:
                raise error
            finally:
                # the traceback keeps this frame: a local still naming the error would make a
                # reference cycle of every error delivered this way
                error = None
        return self.value
