"""``Group`` (a set of green threads managed together) and ``Pool`` (a Group with a size
limit), with the ``map``/``imap``/``imap_unordered``/``apply`` family.

A green thread leaves its group when it finishes, so ``len(group)`` is the number still running.
The link that removes it is a direct one (called by the finishing green thread itself, not in a
later hub callback, see :mod:`loop._core.links`): by the time anybody waiting for the green thread
resumes -- ``apply()`` returning, a ``join()`` -- its slot is free again, as in gevent.  A ``Pool`` takes a :class:`loop.lock.Semaphore` permit per member:
``spawn`` waits while the pool is full, which is what gives ``imap`` its back-pressure.
"""
from loop._core.api import iwait, killall
from loop._core.event import Event
from loop._core.greenlet import DIRECT_LINK_TYPES, Greenlet, GreenletExit
from loop._core.originals import monotonic
from loop._switch import getcurrent
from loop.lock import DummySemaphore, Semaphore
from loop.queue import Queue

__all__ = ["Group", "Pool", "PoolFull"]


class PoolFull(Exception):
    """``Pool.add(..., blocking=False)`` found no free slot."""


class _Membership:
    """The link that takes a finished green thread out of its group.  It only updates the
    group and releases a pool slot (which queues the next waiter), so it is safe to call
    directly from the finishing green thread."""
    __slots__ = ("group",)

    def __init__(self, group):
        self.group = group

    def __call__(self, greenlet):
        self.group._remove(greenlet)

    def __eq__(self, other):
        return type(other) is _Membership and other.group is self.group

    def __hash__(self):
        return id(self.group)


class _CallbackOnSuccess:
    """apply_async's callback link: starts ``callback(value)`` in a new green thread, at once
    (starting only queues it), so it runs before whoever waits for the result resumes."""
    __slots__ = ("callback",)

    def __init__(self, callback):
        self.callback = callback

    def __call__(self, source):
        if source.successful():
            Greenlet.spawn(self.callback, source.value)


DIRECT_LINK_TYPES.update((_Membership, _CallbackOnSuccess))


class Group:
    """A set of green threads; ``join`` waits for all of them, ``kill`` stops all of them."""

    greenlet_class = Greenlet

    def __init__(self, *args):
        self._membership = _Membership(self)
        self.greenlets = set()
        self.dying = set()
        self._empty = Event()
        self._empty.set()
        for greenlets in args:
            for g in greenlets:
                self.add(g)

    def __repr__(self):
        return "<%s at %#x %s>" % (type(self).__name__, id(self), self.greenlets)

    def __len__(self):
        return len(self.greenlets)

    def __contains__(self, item):
        return item in self.greenlets

    def __iter__(self):
        return iter(list(self.greenlets))

    # -- membership -------------------------------------------------------------------------

    def add(self, greenlet):
        """Add a green thread; it leaves the group when it finishes."""
        self.greenlets.add(greenlet)
        self._empty.clear()
        greenlet.rawlink(self._membership)  # (removes it at once if it is already dead)

    def _remove(self, greenlet):
        self.greenlets.discard(greenlet)
        self.dying.discard(greenlet)
        if not self.greenlets:
            self._empty.set()

    def discard(self, greenlet):
        """Remove a green thread without killing it."""
        self._remove(greenlet)
        greenlet.unlink(self._membership)

    def start(self, greenlet):
        """Add and start a green thread."""
        self.add(greenlet)
        greenlet.start()

    def spawn(self, function, *args, **kwargs):
        """Start ``function(*args, **kwargs)`` in a new member green thread."""
        g = self.greenlet_class(function, *args, **kwargs)
        self.start(g)
        return g

    def full(self):
        return False

    def free_count(self):
        return float("inf")

    def wait_available(self, timeout=None):
        return self.free_count()

    # -- waiting and killing ----------------------------------------------------------------

    def join(self, timeout=None, raise_error=False):
        """Wait until the group is empty; True if it is, False if ``timeout`` passed.

        With ``raise_error``, raise the first error of a member that failed."""
        if raise_error:
            deadline = None if timeout is None else monotonic() + timeout
            iterator = iwait(list(self.greenlets), timeout)
            try:
                for g in iterator:
                    if not g.successful():
                        raise g.exception
            finally:
                iterator.close()
            if deadline is not None:
                timeout = max(0.0, deadline - monotonic())
        return self._empty.wait(timeout)

    def kill(self, exception=GreenletExit, block=True, timeout=None):
        """Kill every member (once: members already being killed are left alone); with
        ``block``, wait until they are gone, killing members added meanwhile too."""
        current = getcurrent()
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            members = [g for g in self.greenlets if g is not current and g not in self.dying]
            self.dying.update(members)
            killall(members, exception, block=False)
            if not block or current in self.greenlets:
                return
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            if self._empty.wait(remaining) or (deadline is not None and remaining <= 0):
                return

    def killone(self, greenlet, exception=GreenletExit, block=True, timeout=None):
        if greenlet not in self.dying and greenlet in self.greenlets:
            self.dying.add(greenlet)
            greenlet.kill(exception, block=False)
            if block:
                greenlet.join(timeout)

    # -- map and apply ----------------------------------------------------------------------

    def _running_inside(self):
        return getcurrent() in self.greenlets

    def apply(self, func, args=None, kwds=None):
        """Run ``func(*args, **kwds)`` in a member green thread and return its result.

        Called from a member of this group it runs directly, so a full pool cannot deadlock."""
        args = args or ()
        kwds = kwds or {}
        if self._running_inside():
            return func(*args, **kwds)
        return self.spawn(func, *args, **kwds).get()

    def apply_async(self, func, args=None, kwds=None, callback=None):
        """Start ``func(*args, **kwds)``; return the green thread.  ``callback(result)`` runs
        in a new green thread when it succeeds.

        Never blocks: when the pool is full, the returned green thread is not a member; it
        waits for a slot and then runs ``func`` in a member (:meth:`apply_cb`)."""
        if self.full():
            return Greenlet.spawn(self.apply_cb, func, args, kwds, callback)
        g = self.spawn(func, *(args or ()), **(kwds or {}))
        if callback is not None:
            g.rawlink(_CallbackOnSuccess(callback))
        return g

    def apply_cb(self, func, args=None, kwds=None, callback=None):
        result = self.apply(func, args, kwds)
        if callback is not None:
            Greenlet.spawn(callback, result)
        return result

    def map(self, func, iterable):
        """``list(self.imap(func, iterable))``: results in input order."""
        return list(self.imap(func, iterable))

    def map_async(self, func, iterable, callback=None):
        """Run :meth:`map` in a new green thread and return that green thread."""
        g = Greenlet.spawn(self.map, func, iterable)
        if callback is not None:
            g.link_value(lambda source: callback(source.value))
        return g

    def imap(self, func, *iterables, maxsize=None):
        """Like ``map()``, lazily, in input order; ``func`` runs in member green threads."""
        return _IMap(self, func, iterables, maxsize, ordered=True)

    def imap_unordered(self, func, *iterables, maxsize=None):
        """Like :meth:`imap`, yielding results as they complete."""
        return _IMap(self, func, iterables, maxsize, ordered=False)


class Pool(Group):
    """A Group of at most ``size`` green threads (``None``: unlimited)."""

    def __init__(self, size=None, greenlet_class=None):
        if size is not None and size < 0:
            raise ValueError("size must not be negative: %r" % (size,))
        self.size = size
        if greenlet_class is not None:
            self.greenlet_class = greenlet_class
        self._semaphore = DummySemaphore() if size is None else Semaphore(size)
        Group.__init__(self)

    def __repr__(self):
        return "<%s at %#x %d/%s>" % (type(self).__name__, id(self), len(self), self.size)

    def add(self, greenlet, blocking=True, timeout=None):
        """Add a green thread, waiting for a free slot; PoolFull if none in time."""
        if not self._semaphore.acquire(blocking, timeout):
            raise PoolFull()
        try:
            Group.add(self, greenlet)
        except BaseException:
            self._semaphore.release()
            raise

    def start(self, greenlet, blocking=True, timeout=None):
        """Add (waiting for a slot, PoolFull if none in time) and start a green thread."""
        self.add(greenlet, blocking, timeout)
        greenlet.start()

    def _remove(self, greenlet):
        if greenlet in self.greenlets:
            Group._remove(self, greenlet)
            self._semaphore.release()

    def full(self):
        return self.free_count() <= 0

    def free_count(self):
        """How many more green threads can be added without waiting."""
        if self.size is None:
            return 1
        return max(0, self.size - len(self))

    def wait_available(self, timeout=None):
        """Wait until a slot is free; return the number of free slots."""
        if self.size is not None and self.full():
            self._semaphore.wait(timeout)
        return self.free_count()

    def _running_inside(self):
        return Group._running_inside(self) or (self.size == 0)


class _Failure:
    __slots__ = ("exception",)

    def __init__(self, exception):
        self.exception = exception


_END = object()


class _IMap:
    """The iterator behind imap/imap_unordered: a feeder green thread spawns one member per
    input item (waiting when the pool is full) and results come back through a queue."""

    def __init__(self, group, func, iterables, maxsize, ordered):
        self.group = group
        self.func = func
        self.ordered = ordered
        self.queue = Queue()
        self.maxsize = maxsize
        self._budget = Semaphore(maxsize) if maxsize else None
        self.total = None
        self.yielded = 0
        self.next_index = 0
        self.pending = {}
        self.feeder = Greenlet.spawn(self._feed, zip(*iterables) if iterables else iter(()))

    def _feed(self, items):
        count = 0
        try:
            for args in items:
                if self._budget is not None:
                    self._budget.acquire()
                self.group.spawn(self._run_one, count, args)
                count += 1
        except BaseException as exc:
            self.queue.put((count, _Failure(exc)))
            count += 1
        self.total = count
        self.queue.put((None, _END))

    def _run_one(self, index, args):
        try:
            value = self.func(*args)
        except BaseException as exc:
            value = _Failure(exc)
        self.queue.put((index, value))

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self.total is not None and self.yielded >= self.total:
                raise StopIteration
            if self.ordered and self.next_index in self.pending:
                value = self.pending.pop(self.next_index)
                self.next_index += 1
                return self._deliver(value)
            index, value = self.queue.get()
            if value is _END:
                continue
            if not self.ordered:
                return self._deliver(value)
            if index == self.next_index:
                self.next_index += 1
                return self._deliver(value)
            self.pending[index] = value

    def _deliver(self, value):
        self.yielded += 1
        if self._budget is not None:
            self._budget.release()
        if isinstance(value, _Failure):
            raise value.exception
        return value
