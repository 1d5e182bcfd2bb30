"""Green TLS sockets: handshake, reads, writes and shutdown wait on the hub (:mod:`loop.ssl`).

Design
======

:class:`SSLSocket` inherits from both the stdlib ``ssl.SSLSocket`` and the green
:class:`loop._green.socket.socket`::

    SSLSocket -> ssl.SSLSocket -> loop._green.socket.socket -> socket.socket -> _socket.socket

so everything the stdlib class does (``_create``, certificate checks, ``accept`` wrapping the
new connection, ``makefile``, ``sendfile``, ``recv`` on an unwrapped socket) runs unchanged,
and its ``super()`` calls for plain-socket operations land on the green socket.  The descriptor
is non-blocking (the C-level socket timeout stays 0), so OpenSSL returns ``SSL_ERROR_WANT_READ``
/ ``WANT_WRITE`` instead of blocking; the methods that drive OpenSSL (``do_handshake``,
``read``, ``write``, ``send``, ``unwrap``) catch those, wait for the descriptor on the hub and
try again, honouring the socket's Python-level timeout with the stdlib's messages ("The read
operation timed out", ...).  Either want can come from any operation (renegotiation, TLS 1.3
session tickets), so each loop handles both.

How sockets become green SSL sockets
------------------------------------
``SSLContext.wrap_socket`` builds ``self.sslsocket_class``.  :class:`SSLContext` here sets that
to the green class; the monkey patch sets it on the *stdlib* ``ssl.SSLContext`` class itself,
which is the stdlib's own extension point and makes contexts that already existed before the
patch (created at import time by urllib3, aiohttp, botocore...) green too.
``SSLObject`` (memory BIOs, what asyncio uses) never blocks and is left alone.
"""
import socket as _stdlib_socket
import ssl as _stdlib_ssl
from time import monotonic

from loop._green import socket as _green_socket

__all__ = ["SSLSocket", "SSLContext", "create_default_context", "get_server_certificate"]

_original_SSLSocket = _stdlib_ssl.SSLSocket
_original_SSLContext = _stdlib_ssl.SSLContext
_SSLWantReadError = _stdlib_ssl.SSLWantReadError
_SSLWantWriteError = _stdlib_ssl.SSLWantWriteError

#: The names loop.monkey.patch_ssl() and gevent-style ``patch_module`` replace.
__implements__ = ["SSLSocket", "SSLContext", "create_default_context",
                  "_create_unverified_context", "_create_default_https_context",
                  "get_server_certificate"]


class SSLSocket(_original_SSLSocket, _green_socket.socket):
    """``ssl.SSLSocket`` whose blocking operations block only the calling green thread."""

    def _drive(self, operation, what, *args):
        """Call an OpenSSL operation until it stops wanting IO, waiting on the hub."""
        try:
            return operation(*args)
        except (_SSLWantReadError, _SSLWantWriteError) as want:
            if self._timeout == 0.0:
                raise
            readable = isinstance(want, _SSLWantReadError)
        timeout = self._timeout
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            try:
                self._wait(readable, deadline)
            except TimeoutError:
                raise TimeoutError("The %s operation timed out" % what) from None
            try:
                return operation(*args)
            except _SSLWantReadError:
                readable = True
            except _SSLWantWriteError:
                readable = False

    def do_handshake(self, block=False):
        self._check_connected()
        if self._timeout == 0.0 and not block:
            return self._sslobj.do_handshake()
        if self._timeout == 0.0:  # block=True on a non-blocking socket: wait as long as needed
            self._timeout = None
            try:
                return self._drive(self._sslobj.do_handshake, "handshake")
            finally:
                self._timeout = 0.0
        return self._drive(self._sslobj.do_handshake, "handshake")

    def read(self, len=1024, buffer=None):
        return self._drive(_original_SSLSocket.read, "read", self, len, buffer)

    def write(self, data):
        return self._drive(_original_SSLSocket.write, "write", self, data)

    def send(self, data, flags=0):
        if self._sslobj is None:
            return _green_socket.socket.send(self, data, flags)
        return self._drive(_original_SSLSocket.send, "write", self, data, flags)

    def unwrap(self):
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        result = self._drive(sslobj.shutdown, "shutdown")
        self._sslobj = None
        return result


class SSLContext(_original_SSLContext):
    """``ssl.SSLContext`` whose ``wrap_socket`` returns green :class:`SSLSocket` objects."""
    sslsocket_class = SSLSocket


def _make_green(context):
    # Contexts built by stdlib helpers are stdlib SSLContext objects; the instance attribute
    # wins over the class attribute in wrap_socket().
    context.sslsocket_class = SSLSocket
    return context


def create_default_context(*args, **kwargs):
    return _make_green(_stdlib_ssl.create_default_context(*args, **kwargs))


def _create_unverified_context(*args, **kwargs):
    return _make_green(_stdlib_ssl._create_unverified_context(*args, **kwargs))


_create_default_https_context = create_default_context


def get_server_certificate(addr, ssl_version=_stdlib_ssl.PROTOCOL_TLS_CLIENT, ca_certs=None,
                           timeout=_stdlib_socket._GLOBAL_DEFAULT_TIMEOUT):
    """Like :func:`ssl.get_server_certificate`, over a green connection."""
    host, port = addr
    if ca_certs is not None:
        cert_reqs = _stdlib_ssl.CERT_REQUIRED
    else:
        cert_reqs = _stdlib_ssl.CERT_NONE
    context = _stdlib_ssl._create_stdlib_context(ssl_version, cert_reqs=cert_reqs,
                                                 cafile=ca_certs)
    _make_green(context)
    with _green_socket.create_connection(addr, timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as sslsock:
            dercert = sslsock.getpeercert(True)
    return _stdlib_ssl.DER_cert_to_PEM_cert(dercert)


# Shown (repr, pickling by reference) under the public module that re-exports them.
SSLSocket.__module__ = SSLContext.__module__ = "loop.ssl"
