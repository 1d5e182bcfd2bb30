"""A raw pipe end whose reads and writes wait on the hub: :class:`GreenPipe`.

It is what :mod:`loop.subprocess` gives ``Popen`` for the parent's ends of the child's pipes and
what :class:`loop.fileobject.FileObjectPosix` reads and writes through.  Buffering and text
decoding stay the stdlib's (``TextIOWrapper`` around this module's :class:`BufferedReader` /
:class:`BufferedWriter`, the stdlib's buffers with a ``close()`` that works while another green
thread is parked inside them).

The descriptor keeps blocking mode: its open file description may be handed to another child
(``Popen(..., stdin=p1.stdout)``, a shell-style pipeline), which would inherit ``O_NONBLOCK`` and
fail with ``EAGAIN``.  Instead each call first asks ``poll`` (the real one, zero timeout) whether
the pipe is ready, waits on the hub if not, and then moves at most what cannot block: any amount
for a read, ``PIPE_BUF`` bytes for a write (POSIX guarantees that much room when the pipe polls
writable).
"""
import errno as _errno
import io as _io
import os as _os
import select as _select

from loop._core.hub import cancel_wait, get_hub

__all__ = ["GreenPipe", "BufferedReader", "BufferedWriter"]

_poll = _select.poll  # the real one: loop.monkey imports this module before it patches select
_POLLIN = _select.POLLIN | _select.POLLHUP | _select.POLLERR
_POLLOUT = _select.POLLOUT | _select.POLLERR
_PIPE_BUF = getattr(_select, "PIPE_BUF", 512)


class GreenPipe(_io.RawIOBase):
    """A raw pipe end (a file descriptor) whose reads and writes wait on the hub."""

    def __init__(self, fd, mode, closefd=True):
        super().__init__()
        self._fd = fd
        self._closefd = closefd
        self._readable = "r" in mode
        self._writable = "w" in mode or "a" in mode
        self.name = fd
        self.mode = mode

    def fileno(self):
        self._checkClosed()
        return self._fd

    def readable(self):
        return self._readable

    def writable(self):
        return self._writable

    def isatty(self):
        return False

    def _ready(self, events):
        poller = _poll()
        poller.register(self._fd, events)
        return bool(poller.poll(0))

    def readinto(self, buffer):
        if not self._ready(_POLLIN):
            get_hub().wait_readable(self._fd)
        return _os.readv(self._fd, [buffer])

    def write(self, data):
        if not self._ready(_POLLOUT):
            get_hub().wait_writable(self._fd)
        return _os.write(self._fd, memoryview(data)[:_PIPE_BUF])

    def close(self):
        if not self.closed:
            cancel_wait(self._fd, OSError(_errno.EBADF, "Bad file descriptor"))
            try:
                if self._closefd:
                    _os.close(self._fd)
            finally:
                super().close()


# Shown (repr, pickling by reference) under the public module that re-exports it.
GreenPipe.__module__ = "loop.subprocess"


def close_under_a_parked_green_thread(buffered, close):
    """Close ``buffered`` even while another green thread of this OS thread is parked inside
    one of its reads or writes.  That green thread holds the buffer's lock, which belongs to
    the OS thread, so the stdlib's close() refuses with "reentrant call"; closing the raw pipe
    end underneath instead wakes the parked green thread with EBADF (its call then lets go of
    the buffer) and leaves the buffer closed, since its ``closed`` is the raw end's."""
    try:
        close()
    except RuntimeError as exc:
        if "reentrant call" not in str(exc):
            raise
        buffered.raw.close()


class BufferedReader(_io.BufferedReader):
    """The buffered read end of a green pipe (see :func:`close_under_a_parked_green_thread`)."""

    def close(self):
        close_under_a_parked_green_thread(self, super().close)


class BufferedWriter(_io.BufferedWriter):
    """The buffered write end of a green pipe: what is still buffered when another green thread
    is parked writing is dropped with the pipe, as the closing caller asked."""

    def close(self):
        close_under_a_parked_green_thread(self, super().close)
