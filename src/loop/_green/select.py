"""Green ``select.select`` and ``select.poll``: readiness waits that park only the caller.

Design
======

Both functions answer "which of these descriptors are ready?" with the *real* syscall, called
with a zero timeout, so the result (and every error: ``EBADF``, ``ValueError`` for descriptors
out of ``select``'s range, ``TypeError`` for objects without ``fileno``) is exactly the
stdlib's.  Only when nothing is ready and the caller is willing to wait does the green thread
park, with :func:`wait_any_fd` watching every descriptor on the hub's event loop, and then ask
the syscall again.  A wake-up is a hint, never an answer: after it we poll again, and a hint
that turns out stale just means another round (within the caller's deadline).

Sharing a descriptor
--------------------
The waits go through :meth:`loop._core.hub.Hub.wait_fds`, which makes each call a *watcher* of its
descriptors in the hub: any number of select/poll calls may watch one descriptor, alongside the
green thread that reads it (a green socket's ``recv``), and all of them wake when it becomes
ready.  (asyncio's ``add_reader`` keeps one callback per descriptor, so registering directly
would replace the hub's.)  Plain reads keep their rule: a second green thread reading one socket
is a ``ConcurrentObjectUseError``.
"""
import errno
import math
import select as _stdlib_select
import sys
from time import monotonic

from loop._core.hub import get_hub

__all__ = ["select", "poll", "wait_any_fd", "error"]

#: Removed from the stdlib module by an aggressive patch: their objects block the OS thread, and
#: without them libraries fall back to ``poll``/``select``.
__blocking__ = [name for name in ("epoll", "devpoll", "kqueue", "kevent")
                if hasattr(_stdlib_select, name)]

_original_select = _stdlib_select.select
_original_poll = getattr(_stdlib_select, "poll", None)
error = _stdlib_select.error

POLLIN = getattr(_stdlib_select, "POLLIN", 1)
POLLPRI = getattr(_stdlib_select, "POLLPRI", 2)
POLLOUT = getattr(_stdlib_select, "POLLOUT", 4)
POLLRDNORM = getattr(_stdlib_select, "POLLRDNORM", 64)
POLLWRNORM = getattr(_stdlib_select, "POLLWRNORM", 256)
_READ_MASK = POLLIN | POLLPRI | POLLRDNORM
_WRITE_MASK = POLLOUT | POLLWRNORM


def wait_any_fd(readers, writers, timeout):
    """Park until one of ``readers`` is readable or ``writers`` writable (a hint: poll again
    afterwards; True), or ``timeout`` seconds (None: no limit) passed (False).  ``readers``
    and ``writers`` are iterables of ints."""
    return get_hub().wait_fds(readers, writers, None if timeout is None else max(timeout, 0))


def _fileno(obj):
    if isinstance(obj, int):
        return obj
    return obj.fileno()


_TIME_T_NAME = "C PyTime_t" if sys.version_info >= (3, 13) else "C _PyTime_t"
_NS_RANGE = 2 ** 63  # CPython keeps timeouts as signed 64-bit nanoseconds


def _seconds(value, message, ns_per_unit=10 ** 9):
    """The timeout as a float, after the checks the C functions make (same exceptions): a
    green call must fail where the stdlib's fails, not sleep for centuries."""
    # What the C functions accept: int, float, or an object with __float__/__index__.
    if isinstance(value, (str, bytes, bytearray)) or not (
            hasattr(value, "__float__") or hasattr(value, "__index__")):
        raise TypeError(message)
    if not isinstance(value, float) and hasattr(value, "__index__"):  # ints: exact range
        number = value.__index__()
        if not -_NS_RANGE <= number * ns_per_unit < _NS_RANGE:
            raise OverflowError("timestamp too large to convert to " + _TIME_T_NAME)
        return float(number)
    number = float(value)
    if math.isnan(number):
        raise ValueError("Invalid value NaN (not a number)")
    if not -_NS_RANGE <= number * ns_per_unit < _NS_RANGE:
        raise OverflowError("timestamp out of range for platform time_t")
    return number


def select(rlist, wlist, xlist, timeout=None):
    """:func:`select.select` that blocks only the calling green thread."""
    if timeout is not None:
        timeout = _seconds(timeout, "timeout must be a float or None")
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    # The zero-timeout syscall validates everything and is the answer when anything is ready.
    result = _original_select(rlist, wlist, xlist, 0)
    if result[0] or result[1] or result[2] or timeout == 0:
        return result
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    readers = [_fileno(obj) for obj in rlist] + [_fileno(obj) for obj in xlist]
    writers = [_fileno(obj) for obj in wlist]
    deadline = None if timeout is None else monotonic() + timeout
    while True:
        remaining = None if deadline is None else deadline - monotonic()
        if remaining is not None and remaining <= 0:
            return [], [], []
        wait_any_fd(readers, writers, remaining)
        try:
            result = _original_select(rlist, wlist, xlist, 0)
        except ValueError:
            _raise_if_closed_while_waiting(rlist, wlist, xlist)
            raise
        if result[0] or result[1] or result[2]:
            return result


def _raise_if_closed_while_waiting(*lists):
    """Another green thread closed an object while select() waited on it: the real select
    would say "file descriptor cannot be a negative integer" (a ValueError about an argument
    that was valid); say what happened instead, as a green socket wait does."""
    for objects in lists:
        for obj in objects:
            if isinstance(obj, int):
                continue
            try:
                closed = obj.fileno() < 0
            except ValueError:  # a closed file object's fileno() raises
                closed = True
            if closed:
                raise OSError(errno.EBADF, "%r was closed by another green thread while "
                              "select() waited for it" % (obj,))


if _original_poll is not None:
    _FACTORY = object()

    class _GreenPoll:
        """What :func:`poll` returns: ``select.poll`` whose ``poll()`` blocks only the calling
        green thread.  Like the C type, it cannot be instantiated directly."""

        def __new__(cls, *args):
            if args != (_FACTORY,):
                raise TypeError("cannot create 'select.poll' instances")
            return object.__new__(cls)

        def __init__(self, _token):
            self._poll = _original_poll()
            self._masks = {}

        def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
            self._poll.register(fd, eventmask)
            self._masks[_fileno(fd)] = eventmask

        def modify(self, fd, eventmask):
            self._poll.modify(fd, eventmask)
            self._masks[_fileno(fd)] = eventmask

        def unregister(self, fd):
            self._poll.unregister(fd)
            del self._masks[_fileno(fd)]

        def poll(self, timeout=None):
            # milliseconds, None or negative = forever (as in the stdlib)
            if timeout is not None:
                timeout = _seconds(timeout, "timeout must be an integer or None", 10 ** 6)
                if not -2 ** 31 <= math.ceil(timeout) < 2 ** 31:  # the C int of poll(2)
                    raise OverflowError("timeout is too large")
                if timeout < 0:
                    timeout = None
                else:
                    timeout /= 1000.0
            result = self._poll.poll(0)
            if result or timeout == 0 or not self._masks:
                if not result and not self._masks and timeout:
                    get_hub().sleep(timeout)
                return result
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                # POLLHUP/POLLERR are reported for any registration, so every descriptor is
                # watched for reading at least.
                readers = [fd for fd, mask in self._masks.items()
                           if mask & _READ_MASK or not mask & _WRITE_MASK]
                writers = [fd for fd, mask in self._masks.items() if mask & _WRITE_MASK]
                wait_any_fd(readers, writers, remaining)
                result = self._poll.poll(0)
                if result:
                    return result
    # Named like the C type, so messages and introspection match the stdlib's.
    _GreenPoll.__name__ = _GreenPoll.__qualname__ = "poll"
    _GreenPoll.__module__ = "select"

    def poll():
        """:func:`select.poll`, green."""
        return _GreenPoll(_FACTORY)
else:  # pragma: no cover
    poll = None

#: The names loop.monkey.patch_select() replaces.
__implements__ = ["select", "poll"] if poll is not None else ["select"]
