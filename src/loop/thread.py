"""Green ``_thread`` (gevent's ``gevent.thread``): the low-level thread API with green threads in
place of OS threads -- ``start_new_thread`` spawns a green thread, ``allocate_lock`` makes a green
lock, ``get_ident`` tells green threads apart.

``loop.monkey.patch_thread()`` puts these names into ``_thread`` and ``threading``.  The
implementation, and why identities and thread ends work the way they do, is
:mod:`loop._green.thread`.
"""
from loop._green.thread import (TIMEOUT_MAX, LockType, RLock, _count, _local, _make_thread_handle,
                                _set_sentinel, _shutdown, _ThreadHandle, allocate, allocate_lock,
                                error, exit, exit_thread, get_ident, interrupt_main, lock,
                                stack_size, start_joinable_thread, start_new, start_new_thread)

__all__ = ["get_ident", "start_new_thread", "start_new", "allocate_lock", "allocate",
           "LockType", "RLock", "exit", "stack_size", "interrupt_main", "error", "TIMEOUT_MAX"]
