"""``ThreadPool``: run blocking functions in real OS threads; green threads wait for the results
without blocking the hub.

The workers are plain ``_thread`` threads (:mod:`loop._core.originals`) fed from a C
``_queue.SimpleQueue`` bound when this module is imported, so monkey patching ``threading``
or ``queue`` later cannot turn them into green threads.  A worker hands each result back to
the hub of the green thread that submitted the job with ``loop.call_soon_threadsafe``, which is
why a pool may be shared by green threads of several OS threads.  Until then the job is
registered as a wakeup source of that hub (the job object is the registration: submitting
registers it, delivering the outcome ends it), so a green thread waiting for a result never
gets ``LoopExit``.  A forked child has none of the
workers: the jobs of its thread that were in flight fail there with RuntimeError instead of
waiting forever.

:class:`ThreadPoolExecutor` puts the same workers behind the ``concurrent.futures`` interface.
The hub makes one its event loop's default executor, so ``loop.run_in_executor(None, fn)`` in
asyncio code on the hub runs ``fn`` in a real thread even after ``patch_thread()`` (the stdlib
executor would start green threads there, and waiting for one from the hub is impossible).
Its futures are completed in the hub's thread, never in a worker, so their state changes need no
cross-thread locking; ``result()`` called from a green thread waits for the green thread only.
"""
import _queue
import os
import weakref
import concurrent.futures as _futures

from loop._core import originals
from loop._core.api import iwait
from loop._core.event import AsyncResult, Event
from loop._core.hub import get_hub, get_hub_if_exists
from loop._switch import getcurrent

__all__ = ["ThreadPool", "ThreadResult", "ThreadPoolExecutor"]

_SimpleQueue = _queue.SimpleQueue


#: Every pool, so that a forked child can reset them all (see _reinit_pools_after_fork).
_pools = weakref.WeakSet()


def _reinit_pools_after_fork():
    for pool in list(_pools):
        try:
            pool._reinit_after_fork()
        except Exception:  # never let a fork hook kill the child
            pass


if hasattr(os, "register_at_fork"):
    # Registered after the hub's hook (the hub module is imported first), so a failing job is
    # queued on a hub that already has its child's event loop.
    os.register_at_fork(after_in_child=_reinit_pools_after_fork)


class ThreadResult(AsyncResult):
    """The AsyncResult of a thread pool job."""
    __slots__ = ()


class _Job:
    """One submitted call; also its registration as a wakeup source of ``hub``."""
    __slots__ = ("func", "args", "kwargs", "result", "hub")

    def __init__(self, func, args, kwargs, result, hub):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.result = result
        self.hub = hub

    def __repr__(self):
        return "<thread pool job %r>" % (self.func,)


class ThreadPool:
    """A pool of up to ``maxsize`` OS threads, started as jobs arrive."""

    def __init__(self, maxsize=10, hub=None):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._tasks = _SimpleQueue()
        self._lock = originals.allocate_lock()
        self._threads = 0
        self._idle = 0
        self._unfinished = 0
        self._all_done = None
        self._killed = False
        self._in_flight = set()  # the _Jobs submitted and not delivered
        _pools.add(self)

    def __repr__(self):
        return "<%s threads=%d/%d unfinished=%d>" % (type(self).__name__, self._threads,
                                                     self._maxsize, self._unfinished)

    @property
    def maxsize(self):
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value):
        if value < 1:
            raise ValueError("maxsize must be at least 1")
        with self._lock:
            extra = self._threads - value
            self._maxsize = value
        for _ in range(max(0, extra)):
            self._tasks.put(None)

    @property
    def size(self):
        """Number of worker threads alive."""
        return self._threads

    # -- submitting -------------------------------------------------------------------------

    def spawn(self, func, *args, **kwargs):
        """Run ``func(*args, **kwargs)`` in a worker thread; return a :class:`ThreadResult`."""
        result = ThreadResult()
        self._submit(func, args, kwargs, result)
        return result

    def _submit(self, func, args, kwargs, result):
        # ``result`` gets ``set(value)`` or ``set_exception(exc)``, in the submitter's hub.
        if self._killed:
            raise RuntimeError("this thread pool was killed")
        hub = get_hub()
        job = _Job(func, args, kwargs, result, hub)
        hub.add_wakeup_source(job)
        with self._lock:
            self._unfinished += 1
            self._in_flight.add(job)
            start_thread = not self._idle and self._threads < self._maxsize
            if start_thread:
                self._threads += 1
            else:
                self._idle = max(0, self._idle - 1)
        self._tasks.put(job)
        if start_thread:
            try:
                originals.start_new_thread(self._worker, ())
            except BaseException:
                with self._lock:
                    self._threads -= 1
                    alive = self._threads
                if not alive:  # nobody will ever run it
                    self._deliver(job, (result.set_exception, RuntimeError(
                        "the thread pool could not start a worker thread")))
                    raise

    def apply(self, func, args=(), kwds=None):
        """Run ``func`` in a worker thread and wait (green) for its result."""
        return self.spawn(func, *args, **(kwds or {})).get()

    def apply_async(self, func, args=(), kwds=None, callback=None):
        result = self.spawn(func, *args, **(kwds or {}))
        if callback is not None:
            result.rawlink(lambda r: r.successful() and callback(r.value))
        return result

    def map(self, func, iterable):
        return list(self.imap(func, iterable))

    def imap(self, func, *iterables):
        """Submit every item at once; yield results in input order."""
        results = [self.spawn(func, *args) for args in zip(*iterables)]
        for result in results:
            yield result.get()

    def imap_unordered(self, func, *iterables):
        results = [self.spawn(func, *args) for args in zip(*iterables)]
        for result in iwait(results):
            yield result.get()

    def join(self, timeout=None):
        """Wait until every submitted job finished."""
        if not self._unfinished:
            return True
        if self._all_done is None:
            self._all_done = Event()
        return self._all_done.wait(timeout)

    def kill(self):
        """Stop the workers once their current job is done; queued jobs are dropped."""
        self._killed = True
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._tasks.put(None)

    def _reinit_after_fork(self):
        # Only the forking thread exists in a child: the workers are gone, and the jobs in
        # flight with them.  Those of this thread's hub fail (their green threads are here);
        # the other threads' hubs are gone too.
        lost = self._in_flight
        self._in_flight = set()
        self._tasks = _SimpleQueue()
        self._lock = originals.allocate_lock()
        self._threads = 0
        self._idle = 0
        self._unfinished = 0
        me = originals.get_ident()
        for job in lost:
            if job.hub.thread_ident == me:
                self._unfinished += 1
                self._in_flight.add(job)
                job.hub.run_callback(self._deliver, job, (job.result.set_exception, RuntimeError(
                    "this thread pool job was running in a worker thread of the parent "
                    "process, which a forked child does not have")))

    # -- worker side ------------------------------------------------------------------------

    def _worker(self):
        tasks = self._tasks
        while True:
            task = tasks.get()
            if task is None:
                with self._lock:
                    self._threads -= 1
                return
            job, task = task, None
            try:
                value = job.func(*job.args, **job.kwargs)
            except BaseException as exc:
                outcome = (job.result.set_exception, exc)
            else:
                outcome = (job.result.set, value)
            value = None
            try:
                job.hub.loop.call_soon_threadsafe(self._deliver, job, outcome)
            except RuntimeError:  # that hub's loop is closed: nobody is waiting any more
                with self._lock:
                    self._in_flight.discard(job)
            job = outcome = None
            with self._lock:
                self._idle += 1

    def _deliver(self, job, outcome):
        # In the submitting hub's thread: the one place a job's registration ends.
        job.hub.remove_wakeup_source(job)
        with self._lock:
            if job not in self._in_flight:
                return  # already delivered (a fork's failure raced a late result)
            self._in_flight.discard(job)
        job.func = job.args = job.kwargs = None
        setter, value = outcome
        setter(value)
        with self._lock:
            self._unfinished -= 1
            finished = not self._unfinished
        if finished and self._all_done is not None:
            self._all_done.set()
            self._all_done = None


class _PoolFuture(_futures.Future):
    """A ``concurrent.futures.Future`` settled by the hub (see the module docstring)."""

    def __init__(self, hub):
        super().__init__()
        self._condition = originals.Condition()
        self._hub = hub
        self._settled = Event()

    # the ThreadPool's result protocol, called in the hub's thread
    def set(self, value):
        if not self.done():
            self.set_result(value)
        self._settled.set()

    def set_exception(self, exc):
        if not self.done():
            super().set_exception(exc)
        self._settled.set()

    def _wait_green(self, timeout):
        if self.done():
            return
        hub = get_hub_if_exists()
        if hub is self._hub and getcurrent() is not hub.fiber:
            self._settled.wait(timeout)

    def result(self, timeout=None):
        self._wait_green(timeout)
        return super().result(timeout if not self.done() else 0)

    def exception(self, timeout=None):
        self._wait_green(timeout)
        return super().exception(timeout if not self.done() else 0)


class ThreadPoolExecutor(_futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` on a :class:`ThreadPool` of real OS threads.

    Submit from this OS thread's green threads or its hub (asyncio code); ``result()`` blocks
    only the calling green thread.  A subclass of the stdlib class because asyncio's
    ``set_default_executor`` accepts nothing else; only ``submit``/``map``/``shutdown`` of the
    stdlib interface are supported.
    """

    def __init__(self, max_workers=None, pool=None):
        if max_workers is None:
            max_workers = pool.maxsize if pool is not None else 10
        super().__init__(max_workers)
        self._pool = pool if pool is not None else ThreadPool(max_workers)
        self._closed = False
        self._outstanding = 0
        self._drained = None

    def submit(self, fn, /, *args, **kwargs):
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = _PoolFuture(get_hub())
        self._outstanding += 1
        future.add_done_callback(self._finished)
        self._pool._submit(fn, args, kwargs, future)
        return future

    def _finished(self, future):
        self._outstanding -= 1
        if not self._outstanding and self._drained is not None:
            self._drained.set()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Refuse new work; with ``wait``, a green thread waits until submitted work is done
        (from the hub itself or another OS thread, shutdown does not wait)."""
        self._closed = True
        if wait and self._outstanding:
            hub = get_hub_if_exists()
            if hub is not None and getcurrent() is not hub.fiber:
                if self._drained is None:
                    self._drained = Event()
                self._drained.wait()


# Classes show (and pickle under) their public module's name.
for _public in __all__:
    _public = globals()[_public]
    if isinstance(_public, type) and _public.__module__ == __name__:
        _public.__module__ = "loop.threadpool"
del _public
