"""Green ``subprocess``: ``Popen`` whose pipes, ``communicate`` and ``wait`` block only the
calling green thread.

Design
======

The stdlib ``Popen`` is kept whole; what makes it block is replaced underneath it:

* **Pipes.** ``Popen.__init__`` builds ``stdin``/``stdout``/``stderr`` with ``io.open(fd, mode,
  bufsize)`` and ``io.TextIOWrapper``.  The module-level name ``io`` that it looks up is pointed
  at :data:`green_io`, whose ``open`` wraps the parent's end of the pipe in :class:`GreenPipe`, a raw
  ``io.RawIOBase`` that waits on the hub until the pipe is ready and then moves only what
  cannot block; buffering and text decoding stay the stdlib's ``BufferedReader``/
  ``BufferedWriter``/``TextIOWrapper``.  The descriptor keeps blocking mode, because a pipe end
  of one child is often given to the next child (a shell-style pipeline), which must not
  inherit ``O_NONBLOCK``.
* **communicate.** It waits with ``_PopenSelector`` (a ``PollSelector`` bound when subprocess
  was imported); that name is pointed at :class:`loop._green.selectors.GreenSelector`.  Its direct
  ``os.read``/``os.write`` calls only happen after the selector said ready.
* **wait.** ``Popen.wait`` calls ``os.waitpid`` (looked up at call time) and, with a timeout,
  ``time.sleep``: the ``os`` and ``time`` patches make both green.

:func:`patch_module` applies the first two to a subprocess module (the stdlib's, by
``loop.monkey.patch_subprocess()``); importing ``loop.subprocess`` gives a private green copy
of the stdlib module without patching anything.
"""
import errno as _errno
import io as _io
import os as _os
import select as _select
import sys as _sys
import types as _types
import warnings as _warnings

from loop._core.hub import get_hub

_poll = _select.poll  # bound before monkey patching replaces it
_POLLIN = _select.POLLIN | _select.POLLHUP | _select.POLLERR
_POLLOUT = _select.POLLOUT | _select.POLLERR
_PIPE_BUF = getattr(_select, "PIPE_BUF", 512)

__all__ = ["Popen", "run", "call", "check_call", "check_output", "GreenPipe", "green_io",
           "patch_module"]


class GreenPipe(_io.RawIOBase):
    """A raw pipe end whose reads and writes wait on the hub.

    The descriptor stays in blocking mode: its open file description may be handed to another
    child (``Popen(..., stdin=p1.stdout)``), which would inherit ``O_NONBLOCK`` and fail with
    ``EAGAIN``.  Instead each call first asks ``poll`` (the real one, zero timeout) whether the
    pipe is ready, waits on the hub if not, and then moves at most what cannot block: any amount
    for a read, ``PIPE_BUF`` bytes for a write (POSIX guarantees that much room when the pipe
    polls writable)."""

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
            from loop._core.hub import cancel_wait
            cancel_wait(self._fd, OSError(_errno.EBADF, "Bad file descriptor"))
            try:
                if self._closefd:
                    _os.close(self._fd)
            finally:
                super().close()


class _GreenIO(_types.ModuleType):
    """Stands in for the ``io`` module inside a patched subprocess module (a module object,
    so introspection such as ``subprocess.__all__`` checks still sees a module)."""

    def __getattr__(self, name):
        return getattr(_io, name)

    @staticmethod
    def open(file, mode="r", buffering=-1, *args, **kwargs):
        if not isinstance(file, int) or args or kwargs or "+" in mode:
            return _io.open(file, mode, buffering, *args, **kwargs)
        if buffering == 1 and "b" in mode:
            _warnings.warn("line buffering (buffering=1) isn't supported in binary mode, the "
                           "default buffer size will be used", RuntimeWarning, 3)
        raw = GreenPipe(file, mode)
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("can't have unbuffered text I/O")
            return raw
        if buffering < 0 or buffering == 1:
            buffering = _io.DEFAULT_BUFFER_SIZE
        buffered = (_io.BufferedReader if "r" in mode else _io.BufferedWriter)(raw, buffering)
        if "b" in mode:
            return buffered
        return _io.TextIOWrapper(buffered)


green_io = _GreenIO("io")


def patch_module(module):
    """Make ``module`` (a subprocess module object) use green pipes and a green selector."""
    from loop._green.selectors import GreenSelector
    module.io = green_io
    module._PopenSelector = GreenSelector


def _private_copy():
    # A fresh copy of the stdlib module, so loop.subprocess works without monkey patching.
    import importlib.util
    spec = importlib.util.find_spec("subprocess")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    patch_module(module)
    from loop import os as green_os
    from loop import time as green_time

    class _OsProxy:
        def __getattr__(self, name):
            return getattr(_os, name)
        waitpid = staticmethod(green_os.waitpid)
        wait = staticmethod(green_os.wait)

    module.os = _OsProxy()
    module.time = green_time
    # One set of exception and result types: code catching subprocess.CalledProcessError
    # must catch ours.
    import subprocess as stdlib
    for name in ("SubprocessError", "CalledProcessError", "TimeoutExpired", "CompletedProcess"):
        setattr(module, name, getattr(stdlib, name))
    return module


_green = _private_copy()
Popen = _green.Popen
run = _green.run
call = _green.call
check_call = _green.check_call
check_output = _green.check_output
getoutput = _green.getoutput
getstatusoutput = _green.getstatusoutput
PIPE = _green.PIPE
STDOUT = _green.STDOUT
DEVNULL = _green.DEVNULL
CalledProcessError = _green.CalledProcessError
TimeoutExpired = _green.TimeoutExpired
CompletedProcess = _green.CompletedProcess
SubprocessError = _green.SubprocessError
del _sys

# gevent.subprocess exposes its file object type under this name.
from loop._green.fileobject import FileObject  # noqa: E402
