"""Green ``ssl`` (gevent's ``gevent.ssl``): the stdlib module's namespace, with TLS sockets whose
handshake, reads, writes and shutdown block only the calling green thread.

``SSLContext.wrap_socket`` here hands out green :class:`SSLSocket` objects; so does every stdlib
context once ``loop.monkey.patch_ssl()`` ran.  See :mod:`loop._green.ssl` for how.
"""
import ssl as _stdlib_ssl

globals().update({name: value for name, value in vars(_stdlib_ssl).items()
                  if not name.startswith("__")})

from loop._green.ssl import (SSLContext, SSLSocket, __implements__,  # noqa: E402
                             _create_default_https_context, _create_unverified_context,
                             create_default_context, get_server_certificate)

del _stdlib_ssl
