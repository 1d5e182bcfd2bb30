"""Green locks: ``Semaphore``, ``BoundedSemaphore``, ``Lock``, ``RLock``, ``DummySemaphore``.

Waiting green threads queue in FIFO order, and ``release()`` hands the permit directly to the
first of them instead of putting it back for anyone to grab: a green thread that releases and
re-acquires in a loop cannot starve the others.  A waiter that is killed or times out after the
permit was handed to it passes the permit on, so no permit is ever lost.

Several OS threads
------------------
Releasing from another OS thread is allowed (after ``patch_all()`` these are ``threading``'s
locks, and real threads still exist: the thread pools' workers, C libraries' threads); the
wake-up goes through the waiting hub's thread-safe callback.  The uncontended paths take no
lock: "a permit is free, take it" and "nobody waits, put it back" each run without a call in
between, so no other thread can run in the middle of one (the interpreter only switches threads
at calls, function entries and backward jumps).  The paths that queue or pop a waiter may
switch, so they run under one native lock, :data:`_guard`: a release cannot slip between a
waiter's last look at the counter and its queueing.  Whether another OS thread may be the one
to release is for the lock kind to say (:meth:`Semaphore._foreign_wait`): such a wait counts as
a wakeup source of its hub, which otherwise would see nothing that could end it.

Links
-----
A semaphore can be waited for with :func:`loop.wait` / :func:`loop.iwait` next to green threads
and events, through gevent's ``rawlink``/``unlink``: a link is called with the semaphore (in
the hub, soon) whenever it has a permit, that is when linked while one is free and when a
release leaves one free; it takes no permit, and stays linked until ``unlink``.  A release
that hands its permit to a waiting green thread leaves none, so links wait for the next.
Without links the release path pays one attribute test.
"""
from collections import deque

from loop._core.hub import get_hub
from loop._core.links import DIRECT_LINK_TYPES, check_link, run_links, without
from loop._core.originals import allocate_lock, get_ident as _os_thread_ident
from loop._core.waiter import TIMED_OUT, Waiter
from loop._switch import getcurrent

#: Serialises the queueing paths of every green lock (see "Several OS threads"); held only for
#: a few bytecodes, never while waiting.  The original _thread lock, bound by the hub.
_guard = allocate_lock()

__all__ = ["Semaphore", "BoundedSemaphore", "DummySemaphore", "Lock", "RLock"]


class Semaphore:
    """A counter of permits: ``acquire()`` takes one (waiting while there is none),
    ``release()`` gives one back."""

    def __init__(self, value=1):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self.counter = value
        self._waiters = deque()
        self._home_thread = _os_thread_ident()

    #: rawlink()ed callbacks (None while there are none: the release path tests only that),
    #: the hub that runs them, and whether a run is queued there.
    _links = None
    _links_hub = None
    _links_queued = False

    def __repr__(self):
        return "<%s counter=%d waiters=%d>" % (type(self).__name__, self.counter,
                                               len(self._waiters))

    def rawlink(self, callback):
        """Call ``callback(self)`` whenever a permit is free (see "Links" above)."""
        if type(callback) not in DIRECT_LINK_TYPES:
            check_link(callback)
        with _guard:
            if self._links is None:
                self._links = []
                self._links_hub = get_hub()
            self._links.append(callback)
        if self.counter > 0:
            self._queue_links()

    def unlink(self, callback):
        with _guard:
            if self._links is not None:
                self._links = without(self._links, callback) or None

    def linkcount(self):
        links = self._links
        return len(links) if links is not None else 0

    def _queue_links(self):
        with _guard:
            if self._links_queued or self._links is None:
                return
            self._links_queued = True
        self._links_hub.run_callback_threadsafe(self._run_links)

    def _run_links(self):
        with _guard:
            self._links_queued = False
            links = list(self._links) if self._links is not None else None
        if links and self.counter > 0:
            run_links(self, links, self._links_hub)     # already a hub callback: all run now

    def locked(self):
        """True if ``acquire()`` would block."""
        return self.counter <= 0

    def acquire(self, blocking=True, timeout=None):
        """Take a permit; True on success, False if not ``blocking`` or ``timeout`` passed."""
        if self.counter > 0:
            self.counter -= 1
            return True
        if not blocking:
            return False
        waiter = Waiter()
        with _guard:
            if self.counter > 0:  # released meanwhile, by another OS thread
                self.counter -= 1
                return True
            self._waiters.append(waiter)
        try:
            result = waiter.wait(timeout, foreign=self._foreign_wait(waiter.hub))
        except BaseException:
            if waiter.woken:
                self.release()  # the permit was already ours: pass it on
            else:
                self._remove(waiter)
            raise
        if result is TIMED_OUT:
            self._remove(waiter)
            return False
        return True

    def _foreign_wait(self, hub):
        """Whether a wait of ``hub``'s green thread may be ended by another OS thread's release:
        a wait in the OS thread that made the semaphore is one among its green threads (a
        deadlock there is a LoopExit); a wait in any other OS thread may be ended from there."""
        return hub.thread_ident != self._home_thread

    def _remove(self, waiter):
        with _guard:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def release(self):
        """Give a permit back (to the first waiting green thread, if any)."""
        if not self._waiters:  # no call before the increment: no thread can come in between
            self.counter += 1
            if self._links is not None:
                self._queue_links()
            return self.counter
        with _guard:
            waiters = self._waiters
            while waiters:
                if waiters.popleft().wake(True):
                    return self.counter
            self.counter += 1
        if self._links is not None:
            self._queue_links()
        return self.counter

    def wait(self, timeout=None):
        """Wait until a permit is available without taking it; return the counter."""
        if self.counter > 0:
            return self.counter
        if self.acquire(True, timeout):
            self.release()
        return self.counter

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    # threading-compatible spelling used by monkey-patched code
    def _at_fork_reinit(self):
        self._waiters = deque()
        self._home_thread = _os_thread_ident()


class BoundedSemaphore(Semaphore):
    """A Semaphore that raises ValueError when released more often than acquired."""

    def __init__(self, value=1):
        Semaphore.__init__(self, value)
        self._initial_value = value

    def release(self):
        if self.counter >= self._initial_value and not self._waiters:
            raise ValueError("Semaphore released too many times")
        return Semaphore.release(self)


class DummySemaphore:
    """A Semaphore that never blocks (a Pool without a size uses it)."""
    counter = 1

    def __init__(self, value=None):
        pass

    def locked(self):
        return False

    def acquire(self, blocking=True, timeout=None):
        return True

    def release(self):
        return 1

    def wait(self, timeout=None):
        return 1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


class Lock(Semaphore):
    """A green mutex with ``threading.Lock``'s interface."""

    def __init__(self):
        Semaphore.__init__(self, 1)

    def release(self):
        if self.counter > 0:
            raise RuntimeError("release unlocked lock")
        return Semaphore.release(self)


class RLock:
    """A re-entrant green lock: the owning green thread may acquire it again.

    ``loop.thread.RLock`` (the patched ``_thread.RLock``) is this class with an inner lock and an
    owner identity of ``_thread``'s kind: the two class attributes below."""

    _inner_lock = Lock                  # the lock taken on the first, outermost acquire
    _identify = staticmethod(getcurrent)  # who owns it

    def __init__(self):
        self._block = self._inner_lock()
        self._owner = None
        self._count = 0

    def __repr__(self):
        return "<%s owner=%r count=%d>" % (type(self).__name__, self._owner, self._count)

    def acquire(self, blocking=True, timeout=None):
        me = self._identify()
        if self._owner == me:
            self._count += 1
            return True
        if self._block.acquire(blocking, timeout):
            self._owner = me
            self._count = 1
            return True
        return False

    def release(self):
        if self._owner != self._identify():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def locked(self):
        return self._block.locked()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    # Used by threading.Condition when a patched threading hands it this lock.
    def _is_owned(self):
        return self._owner == self._identify()

    def _recursion_count(self):
        return self._count if self._owner == self._identify() else 0

    def _release_save(self):
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        count, owner = self._count, self._owner
        self._count = 0
        self._owner = None
        self._block.release()
        return count, owner

    def _acquire_restore(self, state):
        self._block.acquire()
        self._count, self._owner = state
