"""Green ``socket`` (gevent's ``gevent.socket``): the stdlib module's whole namespace, with
blocking calls made cooperative.

Use ``from loop import socket`` in place of ``import socket``, or let
``loop.monkey.patch_socket()`` put these names into the stdlib module.  See
:mod:`loop._green.socket` for how the green socket works and :mod:`loop._green.dns` for name
resolution.
"""
import socket as _stdlib_socket

# Everything the stdlib module has (constants, exceptions, helpers that do not block)...
globals().update({name: value for name, value in vars(_stdlib_socket).items()
                  if not name.startswith("__")})

# ...with the blocking parts replaced.
from loop._green.dns import __implements__ as __dns__  # noqa: E402
from loop._green.dns import (getaddrinfo, getfqdn, gethostbyaddr, gethostbyname,  # noqa: E402
                             gethostbyname_ex, getnameinfo)
from loop._green.socket import (SocketType, __extensions__, __implements__,  # noqa: E402
                                cancel_wait, create_connection, create_server, fromfd, socket,
                                socketpair, wait_read, wait_readwrite, wait_write)

__all__ = list(getattr(_stdlib_socket, "__all__", [])) + __extensions__
del _stdlib_socket
