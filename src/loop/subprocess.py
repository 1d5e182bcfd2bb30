"""Green ``subprocess`` (gevent's ``gevent.subprocess``): ``Popen``, ``run``, ``call``,
``check_output``... whose pipes, ``communicate`` and ``wait`` block only the calling green
thread, without patching anything.

``Popen`` is the stdlib's ``Popen`` on green pipes, and waitable with :func:`loop.wait` /
:func:`loop.iwait` (``rawlink``) like a green thread; ``loop.monkey.patch_subprocess()`` makes
the stdlib module's own ``Popen`` green the same way.  See :mod:`loop._green.subprocess` for how.
"""
from loop._green.fileobject import FileObject  # gevent.subprocess exports its file object type
from loop._green.pipe import GreenPipe
from loop._green.subprocess import (DEVNULL, PIPE, STDOUT, CalledProcessError, CompletedProcess,
                                    Popen, SubprocessError, TimeoutExpired, call, check_call,
                                    check_output, getoutput, getstatusoutput, green_io,
                                    green_threading, patch_module, run)

__all__ = ["Popen", "run", "call", "check_call", "check_output", "GreenPipe", "green_io",
           "green_threading", "patch_module"]
