"""Green ``subprocess`` (:mod:`loop.subprocess`): ``Popen`` whose pipes, ``communicate`` and
``wait`` block only the calling green thread.

Design
======

The stdlib ``Popen`` is kept whole; what makes it block is replaced underneath it:

* **Pipes.** ``Popen.__init__`` builds ``stdin``/``stdout``/``stderr`` with ``io.open(fd, mode,
  bufsize)`` and ``io.TextIOWrapper``.  The module-level name ``io`` that it looks up is pointed
  at :data:`green_io`, whose ``open`` wraps the parent's end of the pipe in
  :class:`loop._green.pipe.GreenPipe`, a raw ``io.RawIOBase`` that waits on the hub until the
  pipe is ready and then moves only what cannot block; buffering and text decoding stay the
  stdlib's ``BufferedReader``/``BufferedWriter``/``TextIOWrapper``.  The descriptor keeps
  blocking mode, because a pipe end of one child is often given to the next child (a
  shell-style pipeline), which must not inherit ``O_NONBLOCK``.
  Those buffers may be closed while another green thread is parked in one of their calls
  (leaving ``with Popen(...)`` while a green thread still reads ``stdout``): the stdlib's
  ``close()`` would refuse with "reentrant call", since that green thread holds the buffer's lock
  and the lock belongs to the OS thread, so the buffers close their raw end then, which wakes
  the parked call with ``EBADF``.
* **communicate.** It waits with ``_PopenSelector`` (a ``PollSelector`` bound when subprocess
  was imported); that name is pointed at :class:`loop._green.selectors.GreenSelector`.  Its direct
  ``os.read``/``os.write`` calls only happen after the selector said ready.
* **wait.** ``Popen.wait`` calls ``os.waitpid`` (looked up at call time) and, with a timeout,
  ``time.sleep``: the ``os`` and ``time`` patches make both green.  It holds the Popen's
  ``_waitpid_lock`` (``threading.Lock()``) around the waitpid, so that lock must be green too,
  or a second green thread waiting for the same child would block the OS thread on a lock the
  first one holds while it waits greenly: the module's ``threading`` is pointed at
  :data:`green_threading`, whose ``Lock`` is green (``patch_subprocess`` does the same to the
  stdlib module, whose ``threading.Lock`` stays real under ``patch_all(thread=False)``).

gevent's ``Popen`` is also a waitable object: ``loop.wait([popen])`` and ``iwait`` return it
once the child exited.  The private copy's ``Popen`` is a subclass with ``rawlink``/``unlink``:
the first link starts one green thread that waits for the child with ``Popen.wait`` (so the
exit status is recorded the stdlib's way, whoever else waits too) and then notifies the links;
removing the last link before that ends the green thread, so an abandoned wait leaves nothing
watching the child.

:func:`patch_module` applies the first two to a subprocess module (the stdlib's, by
``loop.monkey.patch_subprocess()``); importing this module makes a private green copy of the
stdlib module, whose ``Popen``, ``run``... :mod:`loop.subprocess` re-exports, without patching
anything.
"""
import importlib.util
import io as _io
import os as _os
import subprocess as _stdlib_subprocess
import threading as _threading
import types as _types
import warnings as _warnings

from loop._core.greenlet import Greenlet
from loop._core.hub import get_hub
from loop._core.links import DIRECT_LINK_TYPES, check_link, notify, notify_one, without
from loop._green import os as _green_os
from loop._green import thread as _green_thread
from loop._green import time as _green_time
from loop._green.pipe import BufferedReader as _BufferedReader
from loop._green.pipe import BufferedWriter as _BufferedWriter
from loop._green.pipe import GreenPipe
from loop._green.selectors import GreenSelector

__all__ = ["Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput",
           "PIPE", "STDOUT", "DEVNULL", "CalledProcessError", "TimeoutExpired",
           "CompletedProcess", "SubprocessError", "green_io", "green_threading",
           "patch_module"]


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
        buffered = (_BufferedReader if "r" in mode else _BufferedWriter)(raw, buffering)
        if "b" in mode:
            return buffered
        return _io.TextIOWrapper(buffered)


green_io = _GreenIO("io")


class _GreenThreading(_types.ModuleType):
    """Stands in for ``threading`` inside a patched subprocess module: ``Popen``'s
    ``_waitpid_lock`` is a green lock (see the module docstring); everything else is the
    threading module's."""

    def __getattr__(self, name):
        return getattr(_threading, name)

    Lock = _green_thread.allocate_lock


green_threading = _GreenThreading("threading")


def patch_module(module):
    """Make ``module`` (a subprocess module object) use green pipes, a green selector and a
    green waitpid lock."""
    module.io = green_io
    module._PopenSelector = GreenSelector
    module.threading = green_threading


class _GreenOs:
    """Stands in for ``os`` inside the private copy: the stdlib module with green ``waitpid``
    and ``wait``, so that ``Popen.wait`` is green without patching ``os``."""

    def __getattr__(self, name):
        return getattr(_os, name)

    waitpid = staticmethod(_green_os.waitpid)
    wait = staticmethod(_green_os.wait)


class _WaitablePopen:
    """Mixed into the private copy's ``Popen``: gevent's ``rawlink``/``unlink``, so that
    ``loop.wait``/``iwait`` can wait for the child (see the module docstring)."""

    _links = None
    _exit_watcher = None
    _link_hub = None

    def rawlink(self, callback):
        """Call ``callback(self)`` in the hub once the child has exited (soon, if it has)."""
        if type(callback) not in DIRECT_LINK_TYPES:
            check_link(callback)
        if self._link_hub is None:
            self._link_hub = get_hub()
        if self.returncode is not None:
            notify_one(self, callback, self._link_hub)
            return
        self._links = (self._links or []) + [callback]
        if self._exit_watcher is None:
            self._exit_watcher = Greenlet.spawn(self._notify_at_exit)

    def unlink(self, callback):
        if self._links:
            self._links = without(self._links, callback)
        if not self._links and self._exit_watcher is not None:
            watcher, self._exit_watcher = self._exit_watcher, None
            watcher.kill(block=False)

    def _notify_at_exit(self):
        self.wait()
        self._exit_watcher = None
        links, self._links = self._links, None
        if links:
            notify(self, links, self._link_hub)


def _private_copy():
    # A fresh copy of the stdlib module, so loop.subprocess works without monkey patching.
    spec = importlib.util.find_spec("subprocess")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    patch_module(module)
    module.os = _GreenOs()
    module.time = _green_time
    # run(), call()... create the Popen they find in the module: the waitable one.
    module.Popen = type("Popen", (_WaitablePopen, module.Popen), {
        "__module__": "loop.subprocess", "__qualname__": "Popen",
        "__doc__": module.Popen.__doc__})
    # One set of exception and result types: code catching subprocess.CalledProcessError
    # must catch ours.
    for name in ("SubprocessError", "CalledProcessError", "TimeoutExpired", "CompletedProcess"):
        setattr(module, name, getattr(_stdlib_subprocess, name))
    return module


_copy = _private_copy()
Popen = _copy.Popen
run = _copy.run
call = _copy.call
check_call = _copy.check_call
check_output = _copy.check_output
getoutput = _copy.getoutput
getstatusoutput = _copy.getstatusoutput
PIPE = _copy.PIPE
STDOUT = _copy.STDOUT
DEVNULL = _copy.DEVNULL
CalledProcessError = _copy.CalledProcessError
TimeoutExpired = _copy.TimeoutExpired
CompletedProcess = _copy.CompletedProcess
SubprocessError = _copy.SubprocessError
