"""Green queues: ``Queue`` (= ``JoinableQueue``), ``SimpleQueue``, ``LifoQueue``,
``PriorityQueue`` and the zero-size rendezvous ``Channel``.

They follow the stdlib ``queue`` interface (``put``/``get`` with ``block`` and ``timeout``,
``Empty``/``Full`` -- the stdlib's own exception classes, so existing ``except queue.Empty``
clauses keep working -- ``task_done``/``join`` and, as in Python 3.13, ``shutdown``).
``maxsize`` of None or <= 0 means unbounded.

Blocked getters and putters wait in FIFO order on :class:`loop._core.waiter.Waiter`.  A wake-up
means "try again", not "here is your item": the woken green thread re-checks the queue, so a
green thread that did not have to wait can still take the item first.  If a woken green thread dies
before it runs, it passes its wake-up to the next waiter so none is lost.
"""
import heapq
import queue as _stdlib_queue
import types
from collections import deque

from loop._core.event import Event
from loop._core.originals import monotonic
from loop._core.timeout import Timeout as _Timeout
from loop._core.timeout import timeout_object
from loop._core.waiter import TIMED_OUT, Waiter
from loop._switch import getcurrent

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "LifoQueue", "PriorityQueue", "Channel",
           "Empty", "Full", "ShutDown"]

Empty = _stdlib_queue.Empty
Full = _stdlib_queue.Full

if hasattr(_stdlib_queue, "ShutDown"):
    ShutDown = _stdlib_queue.ShutDown
else:
    class ShutDown(Exception):
        """Raised by put()/get() on a queue that was shut down."""


def _deadline(timeout):
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return monotonic() + timeout


def _wait_turn(waiters, deadline):
    """Wait on ``waiters`` for a 'try again' wake-up; False once ``deadline`` passed."""
    waiter = Waiter()
    waiters.append(waiter)
    remaining = None
    if deadline is not None:
        remaining = deadline - monotonic()
        if remaining <= 0:
            waiters.remove(waiter)
            return False
    try:
        result = waiter.wait(remaining)
    except BaseException:
        if waiter.woken:
            _wake_one(waiters)  # hand our wake-up on
        else:
            _discard(waiters, waiter)
        raise
    if result is TIMED_OUT:
        _discard(waiters, waiter)
        return False
    return True


def _wake_one(waiters):
    while waiters:
        if waiters.popleft().wake(True):
            return


def _wake_all(waiters):
    while waiters:
        waiters.popleft().wake(True)


def _discard(waiters, waiter):
    try:
        waiters.remove(waiter)
    except ValueError:
        pass


class SimpleQueue:
    """An unbounded-by-default FIFO queue without task tracking."""

    #: ``Queue[int]`` in type annotations, as for the stdlib queues.
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, maxsize=None, items=()):
        self.maxsize = maxsize if maxsize is not None and maxsize > 0 else None
        self._init(items)
        self._getters = deque()
        self._putters = deque()
        self.is_shutdown = False

    # storage hooks, overridden by LifoQueue and PriorityQueue
    def _init(self, items):
        self.queue = deque(items)

    def _put(self, item):
        self.queue.append(item)

    def _get(self):
        return self.queue.popleft()

    def _peek(self):
        return self.queue[0]

    def __repr__(self):
        return "<%s maxsize=%s qsize=%d getters=%d putters=%d>" % (
            type(self).__name__, self.maxsize, len(self.queue), len(self._getters),
            len(self._putters))

    def __len__(self):
        return len(self.queue)

    def __bool__(self):
        return True  # like gevent: a queue is always true, even when empty

    def qsize(self):
        return len(self.queue)

    def empty(self):
        return not self.queue

    def full(self):
        return self.maxsize is not None and len(self.queue) >= self.maxsize

    def put(self, item, block=True, timeout=None):
        """Put ``item``; if the queue is full, wait (up to ``timeout``) unless not ``block``.

        ``timeout`` may also be a :class:`loop.Timeout`, which then raises when it expires."""
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):
                return self.put(item, block)
        deadline = None
        while True:
            if self.is_shutdown:
                raise ShutDown
            if self.maxsize is None or len(self.queue) < self.maxsize:
                self._put(item)
                self._on_put()
                _wake_one(self._getters)
                return
            if not block:
                raise Full
            if deadline is None and timeout is not None:
                deadline = _deadline(timeout)
            if not _wait_turn(self._putters, deadline):
                raise Full

    def _on_put(self):
        pass

    def put_nowait(self, item):
        self.put(item, False)

    def _wait_for_item(self, block, timeout):
        """Return once the queue holds an item; raise ShutDown or Empty instead."""
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):
                return self._wait_for_item(block, None)
        deadline = None
        while not self.queue:
            if self.is_shutdown:
                raise ShutDown
            if not block:
                raise Empty
            if deadline is None and timeout is not None:
                deadline = _deadline(timeout)
            if not _wait_turn(self._getters, deadline):
                raise Empty

    def get(self, block=True, timeout=None):
        """Remove and return an item; if empty, wait (up to ``timeout``) unless not ``block``."""
        self._wait_for_item(block, timeout)
        item = self._get()
        if self._putters:
            _wake_one(self._putters)
        return item

    def get_nowait(self):
        return self.get(False)

    def peek(self, block=True, timeout=None):
        """Return the next item without removing it (waiting like :meth:`get`)."""
        self._wait_for_item(block, timeout)
        item = self._peek()
        _wake_one(self._getters)  # we did not consume it: let a getter have it
        return item

    def peek_nowait(self):
        return self.peek(False)

    def shutdown(self, immediate=False):
        """Refuse further puts; with ``immediate`` also drop queued items.  Blocked getters
        raise ShutDown once the queue is empty; blocked putters raise it at once."""
        self.is_shutdown = True
        if immediate:
            dropped = len(self.queue)
            self._init(())
            self._on_drop(dropped)
        _wake_all(self._getters)
        _wake_all(self._putters)

    def _on_drop(self, count):
        pass

    def __iter__(self):
        return self

    def __next__(self):
        """Iterating yields items until one of them is ``StopIteration`` (gevent's
        convention), or the queue is shut down and empty."""
        try:
            item = self.get()
        except ShutDown:
            raise StopIteration from None
        if item is StopIteration:
            raise StopIteration
        return item

    def copy(self):
        return type(self)(self.maxsize, list(self.queue))


class Queue(SimpleQueue):
    """A FIFO queue with ``task_done()`` and ``join()``."""

    def __init__(self, maxsize=None, items=()):
        SimpleQueue.__init__(self, maxsize, items)
        self.unfinished_tasks = len(self.queue)
        self._all_done = Event()
        if not self.unfinished_tasks:
            self._all_done.set()

    def _on_put(self):
        self.unfinished_tasks += 1
        if self._all_done.is_set():
            self._all_done.clear()

    def _on_drop(self, count):
        self.unfinished_tasks -= count
        if self.unfinished_tasks <= 0:
            self.unfinished_tasks = 0
            self._all_done.set()

    def task_done(self):
        """Mark one item taken with get() as processed."""
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        if self.unfinished_tasks == 0:
            self._all_done.set()

    def join(self, timeout=None):
        """Wait until every item put was marked done; False if ``timeout`` passed first."""
        return self._all_done.wait(timeout)


JoinableQueue = Queue


class LifoQueue(Queue):
    """Last in, first out."""

    def _init(self, items):
        self.queue = list(items)

    def _get(self):
        return self.queue.pop()

    def _peek(self):
        return self.queue[-1]


class PriorityQueue(Queue):
    """Lowest item first (entries are usually ``(priority, data)`` tuples)."""

    def _init(self, items):
        self.queue = list(items)
        heapq.heapify(self.queue)

    def _put(self, item):
        heapq.heappush(self.queue, item)

    def _get(self):
        return heapq.heappop(self.queue)

    def _peek(self):
        return self.queue[0]


class Channel:
    """A queue of size zero: ``put`` waits until a getter takes the item, ``get`` waits for a
    putter.  Items pass hand to hand.

    A getter takes the item itself, from the putter's entry, when it runs; waking it only says
    "an item is offered".  So an item is never lost when a woken getter is killed or times out
    before it runs: the entry stays where it was and the wake-up passes to the next getter.
    ``put`` returns once a getter really took the item (``Full`` after ``timeout`` means nobody
    did).  ``put_nowait`` (and ``put`` from a hub callback, which cannot wait) succeeds only if a
    getter is waiting and does not wait for it to run; its item then keeps its place in line
    for the next getter if that one is interrupted.
    """

    #: ``Queue[int]`` in type annotations, as for the stdlib queues.
    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, maxsize=1):
        self._getters = deque()  # Waiters of blocked getters, woken to come and take an item
        self._putters = deque()  # (Waiter, item); Waiter None for an accepted put_nowait

    def __repr__(self):
        return "<Channel getters=%d putters=%d>" % (len(self._getters), len(self._putters))

    def qsize(self):
        return 0

    def empty(self):
        return True

    def full(self):
        return True

    @property
    def balance(self):
        """Waiting putters minus waiting getters."""
        return len(self._putters) - len(self._getters)

    def _wake_getter(self):
        getters = self._getters
        while getters:
            if getters.popleft().wake(True):
                return True
        return False

    def put(self, item, block=True, timeout=None):
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):
                return self.put(item, block)
        waiter = Waiter() if block else None
        if waiter is None or getcurrent() is waiter.hub.fiber:
            # (A hub callback cannot wait for the getter to run, so it puts without waiting.)
            if not self._wake_getter():
                raise Full
            self._putters.append((None, item))
            return
        entry = (waiter, item)
        self._putters.append(entry)
        self._wake_getter()
        try:
            result = waiter.wait(timeout)
        except BaseException:
            _discard(self._putters, entry)  # still there unless a getter took the item
            raise
        if result is TIMED_OUT:
            _discard(self._putters, entry)
            raise Full

    def put_nowait(self, item):
        self.put(item, False)

    def get(self, block=True, timeout=None):
        if timeout is not None and isinstance(timeout, _Timeout):
            with timeout_object(timeout):
                return self.get(block)
        deadline = None
        putters = self._putters
        while True:
            while putters:
                waiter, item = putters.popleft()
                if waiter is None or waiter.wake(True):
                    return item
            if not block:
                raise Empty
            if deadline is None and timeout is not None:
                deadline = _deadline(timeout)
            # Woken means "an item is offered": another getter that did not have to wait, or
            # the putter giving up, can still take it away first, hence the loop.
            if not _wait_turn(self._getters, deadline):
                raise Empty

    def get_nowait(self):
        return self.get(False)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get()
        if item is StopIteration:
            raise StopIteration
        return item
