"""Patching ``_thread``, ``threading``, ``_threading_local`` and ``queue``, per CPython version.

The threading module copies what it needs from ``_thread`` into private globals when it is
imported, and which names it copies changed:

============================  =======================  ====================================
                              3.11, 3.12               3.13
============================  =======================  ====================================
start a thread                ``_start_new_thread``    ``_start_joinable_thread``
thread end / join             ``_set_sentinel`` lock   ``_ThreadHandle``, ``_make_thread_handle``
wait at exit                  ``_shutdown_locks``      ``_thread_shutdown``
============================  =======================  ====================================

plus, in all three, ``_allocate_lock``/``Lock``, ``get_ident``, ``_CRLock`` and ``local``.  We
patch the ``_thread`` module (for code that imports threading later) *and* the private copies in
an already imported ``threading`` (the usual case: asyncio and the hub imported it).
``_CRLock`` is set to ``None`` so ``threading.RLock()`` builds the pure-Python ``_RLock`` on the
green lock and green ``get_ident``.

The main thread needs no re-keying: :func:`loop._green.thread.get_ident` returns the real OS thread
ident for an OS thread's root fiber, which is what ``threading._active`` and ``_main_thread``
already use.  ``threading._shutdown`` then works unchanged: on 3.11/3.12 it releases the main
thread's (real) sentinel lock and acquires the green sentinels of non-daemon green threads; on
3.13 it marks the main handle done and calls our ``_thread_shutdown``, which joins the
non-daemon green threads and then runs the original for real threads.

Fork: green threads keep running in a forked child (they are fibers of the forking OS thread),
but ``threading``'s own after-fork hook marks every ``Thread`` except the forking one stopped
and drops it from ``threading._active``.  :func:`_install_fork_hooks` keeps those ``Thread``
objects alive; see the comment there.

Locks created before the patch are real locks.  A green thread that holds one and then waits
cooperatively would block the whole OS thread for the next green thread that wants it, so
module-level locks of the stdlib that are held across a wait (``concurrent.futures.thread``'s
shutdown lock, ``logging``'s lock and its handlers' locks) are replaced when they are free.
"""
import _thread
import _threading_local as _stdlib_threading_local
import atexit
import os
import queue as _stdlib_queue
import sys
import threading as _stdlib_threading

from loop._core.hub import get_hub_if_exists
from loop._green import thread as green
from loop._switch import getcurrent
from loop.local import local as green_local
from loop.monkey._registry import get_original, patch_item

_V313 = sys.version_info >= (3, 13)


def patch_thread_modules(threading=True, _threading_local=True, logging=True):
    """Patch ``_thread`` and, as asked, ``threading``, ``_threading_local`` and the module
    locks of ``logging`` (each flag says whether to patch that one)."""
    items = {
        "start_new_thread": green.start_new_thread,
        "start_new": green.start_new,
        "allocate_lock": green.allocate_lock,
        "allocate": green.allocate,
        "LockType": green.LockType,
        "get_ident": green.get_ident,
        "_local": green_local,
        "RLock": green.RLock,
        "_count": green._count,
    }
    if _V313:
        items.update(lock=green.LockType, start_joinable_thread=green.start_joinable_thread,
                     _ThreadHandle=green._ThreadHandle,
                     _make_thread_handle=green._make_thread_handle, _shutdown=green._shutdown)
    else:
        items["_set_sentinel"] = green._set_sentinel
    for name, value in items.items():
        if hasattr(_thread, name) or name in ("start_new", "allocate"):
            patch_item(_thread, name, value)

    if threading:
        _patch_threading()
    _install_fork_hooks(threading)
    if _threading_local:
        patch_item(_stdlib_threading_local, "local", green_local)
    _replace_module_locks(logging)


def _patch_threading():
    items = {
        "_allocate_lock": green.allocate_lock,
        "Lock": green.allocate_lock,
        "get_ident": green.get_ident,
        "_CRLock": None,
        "local": green_local,
    }
    if _V313:
        items.update(_start_joinable_thread=green.start_joinable_thread,
                     _ThreadHandle=green._ThreadHandle, _LockType=green.LockType,
                     _make_thread_handle=green._make_thread_handle,
                     _thread_shutdown=green._shutdown)
    else:
        items.update(_start_new_thread=green.start_new_thread,
                     _set_sentinel=green._set_sentinel)
    for name, value in items.items():
        patch_item(_stdlib_threading, name, value)
    if _V313 and hasattr(_stdlib_threading, "_thread_local_info"):
        # Tracks dummy threads per OS thread with a real local(); per green thread now.
        patch_item(_stdlib_threading, "_thread_local_info", _DummyTracking(green_local()))


class _DummyTracking:
    """3.13's ``threading._thread_local_info``: the dummy Thread of a green thread goes away
    with the green thread, that of an OS thread with the OS thread.  (A green local keeps an
    OS thread's entry until its root fiber is collected, often only at interpreter exit, when
    the dummy's cleanup finds threading's globals gone.)  Green threads still referenced at
    exit are forgotten by an atexit hook, which runs before the modules are torn down."""
    __slots__ = ("_green", "_real")

    def __init__(self, green):
        object.__setattr__(self, "_green", green)
        object.__setattr__(self, "_real", get_original("_thread", "_local")())
        atexit.register(_forget_green_entries, green)

    def _current(self):
        green = getcurrent().parent is not None
        return object.__getattribute__(self, "_green" if green else "_real")

    def __getattr__(self, name):
        return getattr(self._current(), name)

    def __setattr__(self, name, value):
        setattr(self._current(), name, value)

    def __delattr__(self, name):
        delattr(self._current(), name)


def _forget_green_entries(green):
    object.__getattribute__(green, "_local__impl").dicts.clear()
    object.__setattr__(green, "__dict__", {})  # the entry swapped in last


# -- fork ------------------------------------------------------------------------------------------
#
# In the child, CPython's threading._after_fork resets every Thread but the forking one:
# 3.11/3.12 call _reset_internal_locks(False) and _stop() (is_alive() False, join() returns at
# once), 3.13 calls _after_fork(), which resets the _started event; all versions then keep only
# the forking thread in _active and make it the main thread.  For green threads that is wrong:
# all the forking OS thread's green threads run on in the child, and so does that OS thread's
# root fiber (usually the main thread) when the fork came from a green thread.
#
# So a hook that runs before every fork lists those Thread objects; while threading's hook runs
# in the child, the reset methods leave them alone (their green locks keep their state and
# their waiters, who are alive too); then our own child hook, registered after threading's,
# puts them back into _active/_limbo, re-registers the non-daemon ones for _shutdown
# (3.11/3.12) and restores the main thread.  Green threads of other OS threads are gone: they
# are ended, as CPython ends the OS threads a fork leaves behind.

_fork_keep = None     # id(Thread) -> Thread, from the before-fork hook to the child's hook
_fork_tables = None   # threading's tables as they were before the fork
_fork_hooks_registered = False
_wrapped_threading = False


def _install_fork_hooks(threading):
    global _fork_hooks_registered, _wrapped_threading
    if threading and not _wrapped_threading:
        module = _stdlib_threading
        if _V313:
            methods = ((module.Thread, "_after_fork"), (module._DummyThread, "_after_fork"))
        else:
            methods = ((module.Thread, "_reset_internal_locks"), (module.Thread, "_stop"))
        for cls, name in methods:
            original = cls.__dict__.get(name)
            if original is not None:
                setattr(cls, name, _unless_kept(original))
        _wrapped_threading = True
    if not _fork_hooks_registered and hasattr(os, "register_at_fork"):
        _fork_hooks_registered = True
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)


def _unless_kept(original):
    def method(self, *args, **kwargs):
        keep = _fork_keep
        if keep is not None and id(self) in keep:
            return None
        return original(self, *args, **kwargs)
    method.__name__ = original.__name__
    method.__qualname__ = original.__qualname__
    method.__doc__ = original.__doc__
    method.__wrapped__ = original
    return method


def _before_fork():
    global _fork_keep, _fork_tables
    _fork_keep = _fork_tables = None
    if not _wrapped_threading:
        return
    threading = _stdlib_threading
    keep = {}
    for _ident, function in green.green_threads_of(get_hub_if_exists()):
        thread = getattr(function, "__self__", None)  # Thread.start passes self._bootstrap
        if isinstance(thread, threading.Thread):
            keep[id(thread)] = thread
    if getcurrent().parent is not None:
        # Forking in a green thread: the OS thread's own Thread (usually the main thread)
        # runs on in the child, in its root fiber.
        root = threading._active.get(green.os_thread_ident())
        if root is not None:
            keep[id(root)] = root
        # A green thread without a Thread (loop.spawn) gets the dummy that current_thread()
        # would give it: threading's hook would otherwise build a second _MainThread for it
        # (and on 3.13 fail an assertion half-way).
        current = threading.current_thread()
        keep[id(current)] = current
    if keep:
        _fork_tables = (dict(threading._active), dict(threading._limbo), threading._main_thread,
                        set(getattr(threading, "_shutdown_locks", ())))
        _fork_keep = keep


def _after_fork_in_parent():
    global _fork_keep, _fork_tables
    _fork_keep = _fork_tables = None


def _after_fork_in_child():
    global _fork_keep, _fork_tables
    keep, tables = _fork_keep, _fork_tables
    _fork_keep = _fork_tables = None
    try:
        green.end_other_threads_after_fork(get_hub_if_exists())
        if keep:
            _restore_threads(keep, *tables)
    except Exception as exc:  # never let a fork hook kill the child
        sys.stderr.write("loop: restoring green threads after fork failed: %r\n" % (exc,))


def _restore_threads(keep, active, limbo, main_thread, shutdown_locks):
    threading = _stdlib_threading
    with threading._active_limbo_lock:
        for ident, thread in active.items():
            if id(thread) in keep:
                threading._active[ident] = thread
        for thread in limbo:
            if id(thread) in keep:
                threading._limbo[thread] = thread
    if id(main_thread) in keep:
        threading._main_thread = main_thread
    if shutdown_locks:  # 3.11/3.12: non-daemon threads are waited for through these at exit
        with threading._shutdown_locks_lock:
            for thread in keep.values():
                lock = getattr(thread, "_tstate_lock", None)
                if lock is not None and lock in shutdown_locks:
                    threading._shutdown_locks.add(lock)


def _replace_module_locks(logging):
    reprlib = sys.modules.get("reprlib")
    if reprlib is not None and hasattr(reprlib, "get_ident"):
        # recursive_repr's guard is keyed by thread: per green thread now.
        patch_item(reprlib, "get_ident", green.get_ident)
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        lock = getattr(futures_thread, "_global_shutdown_lock", None)
        if lock is not None and not isinstance(lock, green.LockType) and not lock.locked():
            patch_item(futures_thread, "_global_shutdown_lock", green.allocate_lock())
    logging_module = sys.modules.get("logging") if logging else None
    if logging_module is not None:  # only a logging imported before the patch has old locks
        lock = getattr(logging_module, "_lock", None)
        if lock is not None and not isinstance(lock, green.RLock) and _is_free(lock):
            patch_item(logging_module, "_lock", _new_rlock())
        for ref in list(getattr(logging_module, "_handlerList", ())):
            handler = ref()
            if handler is not None and handler.lock is not None and \
                    not isinstance(handler.lock, green.RLock) and _is_free(handler.lock):
                handler.lock = _new_rlock()


def _new_rlock():
    # threading.RLock looked up now: the patched module builds its pure-Python _RLock on the
    # green lock.
    return _stdlib_threading.RLock()


def _is_free(lock):
    if lock.acquire(False):
        lock.release()
        # Held by us re-entrantly? (an RLock answers True to its owner)
        owned = getattr(lock, "_is_owned", None)
        return not (owned and owned())
    return False


def patch_queue():
    # queue.Queue and friends use threading's (now green) locks already; the C SimpleQueue
    # would block the OS thread, its pure-Python twin runs on a green Semaphore.
    patch_item(_stdlib_queue, "SimpleQueue", _stdlib_queue._PySimpleQueue)
