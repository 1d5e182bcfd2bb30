"""Green ``os`` (gevent's ``gevent.os``): the stdlib module's namespace, with ``waitpid``/``wait``
that block only the calling green thread; ``fork`` leaves a working hub in the child.

See :mod:`loop._green.os` for how a child is waited for.
"""
import os as _stdlib_os

# The rest of the stdlib namespace, so that ``from loop import os`` can stand in for ``os``
# (as ``gevent.os`` does); the green functions replace their blocking namesakes.
globals().update({name: value for name, value in vars(_stdlib_os).items()
                  if not name.startswith("__")})

from loop._green.os import (__extensions__, __implements__, fork, forkpty, wait,  # noqa: E402
                            waitpid)

del _stdlib_os
