"""Green ``_thread``: the low-level thread API with green threads in place of OS threads.

``loop.monkey.patch_thread()`` puts these names into ``_thread`` (and the matching private
names into ``threading``), so ``threading.Thread(...).start()`` spawns a green thread and every
lock the threading module builds is a green lock.

Identities
----------
:func:`get_ident` returns ``id(fiber)`` for a green thread, but the *real* OS thread ident for
an OS thread's root fiber (its main green thread).  That keeps the threading module's
bookkeeping for threads that existed before the patch valid: ``threading._active`` is keyed by
ident, and the main thread's entry (and ``_thread._get_main_thread_ident()`` on 3.13) stays
right without re-keying anything.  ``id()`` of a live object and a pthread handle never
collide: the fiber object and the thread's control block are different memory.

Thread end
----------
CPython tells ``threading`` that an OS thread ended through a lock it releases when the thread
state dies (``_set_sentinel``, 3.11/3.12) or through a ``_ThreadHandle`` (3.13).  For a green
thread, the wrapper that runs its function does the same in a ``finally``: it releases the
sentinel locks the thread asked for, or marks its handle done, and :func:`_shutdown` (3.13's
``threading._thread_shutdown``) waits for the non-daemon green threads at exit.

Fork
----
A forked child keeps only the forking OS thread, but all of that thread's green threads: they
are fibers of it.  :data:`_live` lists the running green threads so that the fork hooks in
:mod:`loop.monkey._thread_patches` can tell which ones keep running
(:func:`green_threads_of`), and end the others (those of other OS threads) in the child the way
CPython ends the threads that a fork left behind (:func:`end_other_threads_after_fork`).

:mod:`loop.thread` re-exports the ``_thread`` API of this module; the patch takes it from here.
"""
import _thread
import sys
from types import SimpleNamespace
from weakref import ref as _weakref

from loop import lock as _lock
from loop._core.event import Event
from loop._core.hub import get_hub
from loop._switch import Fiber, getcurrent
from loop.local import local as _local  # _thread._local

__all__ = ["get_ident", "start_new_thread", "start_new", "allocate_lock", "allocate",
           "LockType", "RLock", "exit", "stack_size", "interrupt_main", "error", "TIMEOUT_MAX"]

#: The OS thread's ident (the real ``_thread.get_ident``, bound before any patch).
os_thread_ident = _thread.get_ident
error = _thread.error
TIMEOUT_MAX = _thread.TIMEOUT_MAX
exit = _thread.exit
exit_thread = getattr(_thread, "exit_thread", _thread.exit)
stack_size = _thread.stack_size
interrupt_main = _thread.interrupt_main
_count_original = _thread._count


def get_ident(fiber=None):
    """The identity of ``fiber`` (default: the current green thread)."""
    if fiber is None:
        fiber = getcurrent()
    if fiber.parent is None:  # an OS thread's root fiber stands for the OS thread
        return os_thread_ident()
    return id(fiber)


# -- locks ---------------------------------------------------------------------------------------

def _main_thread_ident():
    threading = sys.modules.get("threading")
    if threading is None:  # nothing started a thread yet: this is the main thread
        return os_thread_ident()
    return threading.main_thread().ident


def _timeout_argument(blocking, timeout):
    """Translate ``_thread``'s (blocking, timeout=-1) into loop.lock's timeout=None."""
    if not blocking:
        if timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return None
    if timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return timeout


class LockType(_lock.Lock):
    """A green ``_thread.lock``."""

    # Bound on the class: finalizers at interpreter exit (subprocess.Popen.__del__ takes a lock)
    # may run after this module's globals were cleared.
    _acquire = _lock.Lock.acquire
    _release = _lock.Lock.release
    _timeout_argument = staticmethod(_timeout_argument)

    def acquire(self, blocking=True, timeout=-1):
        return self._acquire(blocking, self._timeout_argument(blocking, timeout))

    def release(self):
        if self.counter > 0:
            raise RuntimeError("release unlocked lock")
        self._release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def _at_fork_reinit(self):
        self.counter = 1
        self._waiters.clear()

    def _foreign_wait(self, hub):
        # threading's locks are what real threads share.  In the main OS thread a wait ends
        # like any green wait (a deadlock among its green threads is a LoopExit, as in
        # gevent); in any other OS thread -- a thread pool worker, a C library's thread -- the
        # lock is usually held by a green thread of another thread, whose release will come.
        return hub.thread_ident != _main_thread_ident()

    acquire_lock = acquire
    release_lock = release

    def locked_lock(self):
        return self.locked()

    def __repr__(self):
        return "<%s %s green _thread.lock object at %#x>" % (
            "locked" if self.locked() else "unlocked", type(self).__module__, id(self))


lock = LockType


# The class itself, not a function: test suites and libraries store it as a class attribute
# (``locktype = _thread.allocate_lock``) and call ``self.locktype()``, which would bind a
# Python function as a method.
allocate_lock = LockType
allocate = allocate_lock


class RLock(_lock.RLock):
    """A green ``_thread.RLock``: :class:`loop.lock.RLock` with ``_thread``'s lock, owner
    identities (``get_ident()``), timeout convention and repr."""

    _inner_lock = LockType
    _identify = staticmethod(get_ident)

    def __repr__(self):
        return "<%s %s.RLock object owner=%r count=%d at %#x>" % (
            "locked" if self._block.locked() else "unlocked", type(self).__module__,
            self._owner, self._count, id(self))

    def acquire(self, blocking=True, timeout=-1):
        return _lock.RLock.acquire(self, blocking, timeout)

    __enter__ = acquire

    def _at_fork_reinit(self):
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0


# -- starting green threads ----------------------------------------------------------------------

_running = 0          # green threads started through this module and not finished
_sentinels = {}       # ident -> [locks released when that green thread ends] (3.11/3.12)
#: ident -> (weak reference to the fiber, function, 3.13 handle or None) of each green thread
#: started through this module and not finished; weak, so that a green thread blocked forever
#: on something unreachable can still be collected (and end) as before.
_live = {}


def _run(function, args, kwargs, handle):
    try:
        function(*args, **kwargs)
    except SystemExit:
        pass
    except BaseException as exc:
        _report(function, exc)
    finally:
        _ended(get_ident(), handle)


def _ended(ident, handle):
    global _running
    _running -= 1
    _live.pop(ident, None)
    for sentinel in _sentinels.pop(ident, ()):
        if sentinel.locked():
            sentinel.release()
    if handle is not None:
        handle._set_done()


def _report(function, exc):
    # What CPython does for an exception escaping a thread started by _thread.
    hook = getattr(sys, "unraisablehook", None)
    if hook is None:
        return
    try:
        hook(SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
                             err_msg="Exception ignored in thread started by",
                             object=function))
    except BaseException:
        pass


def _spawn(function, args, kwargs, handle):
    global _running
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    hub = get_hub()
    # A bare fiber (no Greenlet bookkeeping needed: the wrapper reports errors itself).
    fiber = Fiber(lambda _unused=None: _run(function, args, kwargs or {}, handle), hub.fiber)
    ident = id(fiber)
    _running += 1
    _live[ident] = (_weakref(fiber), function, handle)
    if handle is not None:
        handle._ident = ident
    hub.schedule_start(fiber)
    return ident


def green_threads_of(hub):
    """The (ident, function) of the running green threads of ``hub``'s OS thread."""
    hub_fiber = hub.fiber if hub is not None else None
    found = []
    for ident, (fiber_ref, function, _handle) in list(_live.items()):
        fiber = fiber_ref()
        if fiber is not None and hub_fiber is not None and fiber.parent is hub_fiber:
            found.append((ident, function))
    return found


def end_other_threads_after_fork(hub):
    """In a forked child: the green threads of other OS threads are gone; signal their end
    (joiners, ``_shutdown``) as CPython does for the OS threads a fork leaves behind."""
    survivors = {ident for ident, _ in green_threads_of(hub)}
    for ident, (_fiber_ref, _function, handle) in list(_live.items()):
        if ident not in survivors:
            try:
                _ended(ident, handle)
            except Exception:
                pass


def start_new_thread(function, args, kwargs=None):
    """Start ``function(*args, **kwargs)`` in a new green thread; return its ident."""
    return _spawn(function, args, kwargs, None)


start_new = start_new_thread


def _count():
    return _count_original() + _running


def _set_sentinel():
    """3.11/3.12: a lock that is released when the current green thread ends."""
    sentinel = LockType()
    fiber = getcurrent()
    if fiber.parent is not None:
        _sentinels.setdefault(id(fiber), []).append(sentinel)
    return sentinel


# -- 3.13: thread handles ------------------------------------------------------------------------

class _ThreadHandle:
    """A green ``_thread._ThreadHandle``: joinable once its green thread has finished."""

    def __init__(self):
        self._ident = None
        self._done = Event()

    @property
    def ident(self):
        return self._ident

    def is_done(self):
        return self._done.is_set()

    def _set_done(self):
        self._done.set()
        _non_daemon.discard(self)

    def join(self, timeout=None):
        if timeout is not None and timeout < 0:
            timeout = None
        if not self._done.is_set() and self._ident == get_ident():
            raise RuntimeError("Cannot join current thread")
        self._done.wait(timeout)

    def __repr__(self):
        return "<green _ThreadHandle object: ident=%s>" % self._ident


_non_daemon = set()


def start_joinable_thread(function, handle=None, daemon=True):
    if handle is None:
        handle = _ThreadHandle()
    if not daemon:
        _non_daemon.add(handle)
    try:
        _spawn(function, (), None, handle)
    except BaseException:
        _non_daemon.discard(handle)
        raise
    return handle


def _make_thread_handle(ident):
    handle = _ThreadHandle()
    handle._ident = ident
    return handle


def _shutdown():
    """3.13: wait for the non-daemon green threads (then the original for OS threads)."""
    me = get_ident()
    while True:
        pending = [h for h in _non_daemon if not h.is_done() and h.ident != me]
        if not pending:
            break
        for handle in pending:
            try:
                handle.join()
            except Exception:
                _non_daemon.discard(handle)
    if _original_shutdown is not None:
        _original_shutdown()


_original_shutdown = getattr(_thread, "_shutdown", None)


# Shown (repr, pickling by reference) under the public module that re-exports them.
LockType.__module__ = RLock.__module__ = _ThreadHandle.__module__ = "loop.thread"
