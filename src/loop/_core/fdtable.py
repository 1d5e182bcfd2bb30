"""The hub's fd table: who waits on which file descriptor, in which direction.

Each descriptor and direction has one :class:`FdSlot` in the hub's table for that direction
(``Hub._readers``, ``Hub._writers``).  A slot knows at most one *exclusive* waiter (a green
socket's recv, ``wait_readable``; a second one is a ``ConcurrentObjectUseError``, as in gevent),
any number of *watchers* (select/poll calls: they only need "something happened, poll again")
and at most one hub-side *callback* (a server's accept loop).  The slot's ``ready`` callback is
installed on the event loop while anybody uses it.

A green socket passes itself as the wait's owner.  Its registration then outlives the wait, so
a connection's recv -> EAGAIN -> wait -> recv cycle costs no epoll_ctl (on uvloop no poll handle
either) per wait.  It is removed when a readiness report finds nobody waiting (the loop is
level-triggered: unread data would be reported again and again), and when the socket closes,
detaches or is collected (``Hub.forget_fd``).  A registration whose owner vanished without
``forget_fd`` (collected in another OS thread, closed at the C level) is recognised by the
owner's weak reference when the descriptor number is waited on again, and rebuilt: the kernel
may hold the old file under that number, or nothing.

The exclusive waiter is resumed directly from the slot's callback (``Hub.resume``: a readable
fd wakes one green thread); watchers are queued, since there may be many.

A kept registration also keeps its *deadline timer*.  A connection waits with a timeout for
every request (keep-alive, then the next head), and arming an event loop timer for each wait
and cancelling it a few microseconds later, when the data came, cost more than a tenth of a
hello-world request (``bench/`` and ``docs/performance.md``).  So a wait with a timeout only
writes its deadline into the slot; the slot's timer is armed when there is none or when it is
due later than this deadline (by more than ``hub.DEADLINE_SLACK``, a millisecond, the
resolution of uvloop's clock), and otherwise left running.  When it fires it looks at the wait
in progress: none (the data came in time) -- nothing happens; one whose deadline is later --
it is armed again for the rest; one whose deadline has passed -- that wait times out.  A
connection answering requests quickly therefore arms about one timer per timeout period, not
one per request, and every wait still times out at its own deadline.  The timer is cancelled
when the slot is discarded.
"""
from loop._core.waiter import WAITING, WOKEN

__all__ = ["FdSlot", "abandoned_loops"]

#: uvloop loops that a forked child replaced (see Hub._carry_fd_waits): never freed, since
#: closing their poll handles would unregister descriptors the parent still uses.
abandoned_loops = []


class FdSlot:
    """One descriptor and direction on one hub: who waits on it, and whether the event loop
    has our callback installed."""
    __slots__ = ("hub", "table", "fd", "readable", "waiter", "watchers", "callback", "owner",
                 "registered", "deadline", "timer", "timer_due")

    def __init__(self, hub, table, fd, readable):
        self.hub = hub
        self.table = table      # the hub's table for this direction, fd -> slot
        self.fd = fd
        self.readable = readable
        self.waiter = None      # the exclusive Waiter
        self.watchers = None    # list of select/poll Waiters
        self.callback = None    # a hub-side callback (a server's accept loop)
        self.owner = None       # weak reference to the socket that keeps the registration
        self.registered = False
        self.deadline = None    # loop time at which the exclusive wait times out, if it does
        self.timer = None       # the deadline timer (see the module's essay), or None
        self.timer_due = 0.0    # loop time at which that timer fires

    def __repr__(self):
        return "<FdSlot fd=%d %s%s waiter=%r watchers=%d%s%s>" % (
            self.fd, "read" if self.readable else "write",
            "" if self.registered else " unregistered", self.waiter,
            len(self.watchers or ()), " callback" if self.callback is not None else "",
            " kept" if self.owner is not None else "")

    def is_unused(self):
        return (self.waiter is None and self.watchers is None and self.callback is None
                and self.owner is None)

    def register(self):
        loop = self.hub.loop
        try:  # the base methods: our registrations are not user code's (see loop._core.eventloop)
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

    def arm_deadline(self, delay, due):
        hub = self.hub
        self.timer = timer = hub._call_later(delay, self.deadline_passed)
        self.timer_due = due
        unref = hub._unref_timers
        if unref is not None:   # a forked child re-arms it on its new loop
            unref[self] = timer

    def cancel_deadline(self):
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
            unref = self.hub._unref_timers
            if unref is not None:
                unref.pop(self, None)

    def deadline_passed(self):
        # The deadline timer's callback: see the module's essay.
        hub = self.hub
        self.timer = None
        unref = hub._unref_timers
        if unref is not None:
            unref.pop(self, None)
        deadline = self.deadline
        waiter = self.waiter
        if deadline is None or waiter is None or waiter.state != WAITING:
            return
        remaining = deadline - hub.loop.time()
        if remaining > 0:
            self.arm_deadline(remaining, deadline)
        else:
            waiter.time_out()

    def discard(self):
        self.unregister()
        self.cancel_deadline()
        table = self.table
        if table.get(self.fd) is self:
            del table[self.fd]

    def ready(self):
        # The event loop's callback.  Watchers are queued (there may be many); the exclusive
        # waiter is switched into directly, last, because it may close the descriptor or wait
        # on it again before resume returns.
        if self.watchers is not None:
            self.wake_watchers()
        callback = self.callback
        if callback is not None:
            try:
                callback()
            except BaseException as exc:
                self.hub.handle_error(callback, type(exc), exc, exc.__traceback__)
        waiter = self.waiter
        if waiter is not None and waiter.state == WAITING:
            self.waiter = None
            if self.owner is None and self.callback is None:
                self.discard()
            waiter.state = WOKEN
            self.hub.resume(waiter.fiber, waiter)
        elif self.callback is None:
            # Nobody waits any more, e.g. a kept registration that data overtook while its
            # socket's green thread was busy.  The next wait registers again.
            self.discard()
