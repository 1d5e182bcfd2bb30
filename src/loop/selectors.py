"""Green ``selectors``: the stdlib namespace with ``DefaultSelector`` cooperative.

The epoll/kqueue/devpoll selectors are re-exported unchanged (they block the OS thread);
``loop.monkey.patch_selectors(aggressive=True)`` removes them from the stdlib module.  See
:mod:`loop._green.selectors`.
"""
import selectors as _stdlib_selectors

globals().update({name: value for name, value in vars(_stdlib_selectors).items()
                  if not name.startswith("__")})

from loop._green.selectors import (DefaultSelector, GreenSelector, __blocking__,  # noqa: E402
                                   __implements__)

#: gevent's name for the cooperative selector.
GeventSelector = GreenSelector

del _stdlib_selectors
