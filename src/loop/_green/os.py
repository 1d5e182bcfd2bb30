"""Green ``os`` (:mod:`loop.os`): ``fork`` that leaves a working hub in the child,
``waitpid``/``wait`` that block only the calling green thread.

``waitpid(pid, 0)`` for one child uses a pidfd (Linux >= 5.3): the descriptor becomes readable
when the child exits, so the green thread waits on the hub like a socket read and then reaps
with ``WNOHANG``.  ``waitpid(-1)``/``waitpid(0)``/process groups, or systems without
``pidfd_open``, poll with ``WNOHANG`` and a backoff from 1 ms up to 50 ms.  Either way the
result and the errors (``ChildProcessError``...) are the real ``waitpid``'s.

``fork`` is the real ``os.fork``: the hub registers an ``os.register_at_fork`` hook that
re-creates its event loop and thread pool in the child (see :func:`loop._core.hub.reinit`), so
``os.fork`` needs no wrapper; it is exported here for gevent's API.
"""
import _thread
import os as _stdlib_os
import threading as _threading

from loop._core.hub import get_hub_if_exists, sleep as _hub_sleep, wait_readable

__all__ = ["waitpid", "wait", "fork", "forkpty"]

#: The names loop.monkey.patch_os() replaces; the others are gevent's API.
__implements__ = ["waitpid", "wait"]
__extensions__ = ["fork", "forkpty"]

_original_waitpid = _stdlib_os.waitpid
_pidfd_open = getattr(_stdlib_os, "pidfd_open", None)
_WNOHANG = getattr(_stdlib_os, "WNOHANG", 1)
# A pidfd only reports exit, not stop/continue events.
_STOP_EVENTS = getattr(_stdlib_os, "WUNTRACED", 0) | getattr(_stdlib_os, "WCONTINUED", 0)
_os_thread_ident = _thread.get_ident  # the real one: this module is imported before any patch
fork = _stdlib_os.fork
forkpty = getattr(_stdlib_os, "forkpty", None)


def _can_wait_green():
    # In an OS thread without a hub (a thread pool worker, asyncio's child watcher thread),
    # blocking is what the caller expects and costs nobody else anything.
    return get_hub_if_exists() is not None or \
        _threading.main_thread().ident == _os_thread_ident()


def waitpid(pid, options):
    """``os.waitpid`` that waits cooperatively unless ``WNOHANG`` is given."""
    if options & _WNOHANG or not _can_wait_green():
        return _original_waitpid(pid, options)
    result = _original_waitpid(pid, options | _WNOHANG)
    if result[0]:
        return result
    if pid > 0 and _pidfd_open is not None and not options & _STOP_EVENTS:
        try:
            pidfd = _pidfd_open(pid)
        except OSError:
            pidfd = None
        if pidfd is not None:
            try:
                while True:
                    wait_readable(pidfd)
                    result = _original_waitpid(pid, options | _WNOHANG)
                    if result[0]:
                        return result
            finally:
                _stdlib_os.close(pidfd)
    delay = 0.001
    while True:
        _hub_sleep(delay)
        result = _original_waitpid(pid, options | _WNOHANG)
        if result[0]:
            return result
        delay = min(delay * 2, 0.05)


def wait():
    """``os.wait`` that waits cooperatively."""
    return waitpid(-1, 0)
