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

The main thread needs no re-keying: :func:`loop.thread.get_ident` returns the real OS thread
ident for an OS thread's root fiber, which is what ``threading._active`` and ``_main_thread``
already use.  ``threading._shutdown`` then works unchanged: on 3.11/3.12 it releases the main
thread's (real) sentinel lock and acquires the green sentinels of non-daemon green threads; on
3.13 it marks the main handle done and calls our ``_thread_shutdown``, which joins the
non-daemon green threads and then runs the original for real threads.

Locks created before the patch are real locks.  A green thread that holds one and then waits
cooperatively would block the whole OS thread for the next green thread that wants it, so
module-level locks of the stdlib that are held across a wait (``concurrent.futures.thread``'s
shutdown lock, ``logging``'s lock and its handlers' locks) are replaced when they are free.
"""
import sys

from loop._patch_registry import patch_item

_V313 = sys.version_info >= (3, 13)


def patch_thread_modules(threading=True, _threading_local=True, logging=True):
    import _thread

    from loop import thread as green
    from loop.local import local as green_local

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
        _patch_threading(green, green_local)
    if _threading_local:
        import _threading_local as module
        patch_item(module, "local", green_local)
    _replace_module_locks(green, logging)


def _patch_threading(green, green_local):
    import threading
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
        patch_item(threading, name, value)
    if _V313 and hasattr(threading, "_thread_local_info"):
        # Tracks dummy threads per OS thread with a real local(); per green thread now.
        patch_item(threading, "_thread_local_info", green_local())


def _replace_module_locks(green, logging):
    reprlib = sys.modules.get("reprlib")
    if reprlib is not None and hasattr(reprlib, "get_ident"):
        # recursive_repr's guard is keyed by thread: per green thread now.
        patch_item(reprlib, "get_ident", green.get_ident)
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is not None:
        lock = getattr(futures_thread, "_global_shutdown_lock", None)
        if lock is not None and not isinstance(lock, green.LockType) and not lock.locked():
            patch_item(futures_thread, "_global_shutdown_lock", green.allocate_lock())
    if logging and "logging" in sys.modules:
        import logging as logging_module
        lock = getattr(logging_module, "_lock", None)
        if lock is not None and not isinstance(lock, green.RLock) and _is_free(lock):
            patch_item(logging_module, "_lock", _new_rlock())
        for ref in list(getattr(logging_module, "_handlerList", ())):
            handler = ref()
            if handler is not None and handler.lock is not None and \
                    not isinstance(handler.lock, green.RLock) and _is_free(handler.lock):
                handler.lock = _new_rlock()


def _new_rlock():
    import threading
    return threading.RLock()


def _is_free(lock):
    if lock.acquire(False):
        lock.release()
        # Held by us re-entrantly? (an RLock answers True to its owner)
        owned = getattr(lock, "_is_owned", None)
        return not (owned and owned())
    return False


def patch_queue():
    import queue
    # queue.Queue and friends use threading's (now green) locks already; the C SimpleQueue
    # would block the OS thread, its pure-Python twin runs on a green Semaphore.
    patch_item(queue, "SimpleQueue", queue._PySimpleQueue)
