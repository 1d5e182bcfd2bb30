"""The green socket: a ``socket.socket`` whose blocking calls wait on the hub.

Design
======

A green socket *is* a stdlib socket: :class:`socket` subclasses the original (unpatched)
``socket.socket``, so ``isinstance`` checks, ``makefile()``/``SocketIO``, ``dup()``, pickling
errors, ``repr`` and every non-blocking call behave exactly as in the stdlib.  Only the calls that
can block are overridden.

Two timeouts
------------
Every green socket has two timeouts:

* the C one, kept at ``0.0`` for the socket's whole life, not even changed for a moment by
  ``settimeout`` (another OS thread may be using the socket; see ``_normalised_timeout``): the
  file descriptor is in O_NONBLOCK mode and every C call returns ``EAGAIN`` instead of
  blocking the OS thread (and with it the hub and every green thread);
* the Python-level one, ``_timeout``, which is what ``settimeout``/``gettimeout``/
  ``setblocking``/``getblocking``/``timeout`` read and write, with the stdlib's validation and
  meaning: ``None`` blocks (green), ``0.0`` is non-blocking (``BlockingIOError``), ``t > 0``
  raises ``TimeoutError("timed out")`` (``socket.timeout``) after ``t`` seconds.

Fast path first
---------------
Each blocking call first tries the syscall: a ``recv`` on a socket that has data, a ``send``
with room in the buffer, an ``accept`` with a pending connection returns without touching the
hub.  Only on ``EAGAIN`` does the green thread wait for readiness in the hub and retry when
woken.  The socket owns that wait: the hub keeps the descriptor registered with the event loop
afterwards, so the next wait (a connection's next ``recv``) costs no registration syscalls.

Reads learn from the last one.  A ``recv`` that had to wait, and whose read after the wait did
not fill the buffer, marks the socket (``_read_waits``): the next ``recv``/``recv_into`` waits
*first*.  In request/response traffic (a server's next request, a client's next reply) that
read would fail anyway, and a failed syscall plus a raised ``BlockingIOError`` is about a tenth
of a TCP echo round trip's CPU.  The registration is level-triggered, so waiting first on data
that already arrived costs one pass of the event loop, never a lost wake-up; a read that fills
the buffer clears the mark, so bulk transfers keep reading without waiting.

The deadline is computed once per call, so spurious wake-ups (another green thread consumed the
data) do not extend the caller's timeout, matching the stdlib's per-call timeout (and
``sendall``'s whole-call timeout since Python 3.5).

Closing
-------
The stdlib closes through ``_real_close`` once the last ``makefile`` reference is gone.  Ours
first calls the hub's ``forget_fd`` on the descriptor: a green thread blocked in ``recv`` on
this socket is woken with ``OSError(EBADF)`` instead of waiting forever on a descriptor number
that the kernel may already have handed to a new file, and the kept registration goes while
the descriptor is still open.  ``detach()`` does the same, and so does ``__del__`` for a socket
collected without ``close()`` (then the C finalizer closes it, as in the stdlib).

Names resolved for the caller
-----------------------------
``connect(("example.com", 80))`` would make the C socket call ``getaddrinfo`` itself, blocking
the hub; green ``connect``/``connect_ex`` resolve non-numeric hosts through :mod:`loop._green.dns`
first.
"""
import _socket
import errno as _errno
import io
import os
import socket as _stdlib
import warnings as _warnings
from math import ceil as _ceil
from time import monotonic

from loop._core.hub import cancel_wait, current_hub, forget_fd as _forget_fd, get_hub
from loop._core.hub import sleep as _hub_sleep
from loop._green import dns as _dns
from loop._green.select import select as _green_select

__all__ = ["socket", "create_connection", "create_server", "socketpair", "fromfd",
           "wait_read", "wait_write", "wait_readwrite", "cancel_wait"]

#: The names loop.monkey.patch_socket() replaces in the stdlib module (the resolver's are
#: :data:`loop._green.dns.__implements__`); the others are gevent's API.
__implements__ = ["socket", "create_connection", "create_server", "socketpair", "fromfd"]
__extensions__ = ["wait_read", "wait_write", "wait_readwrite", "cancel_wait"]

#: The original ``socket.socket`` class (bound before any patching: loop.monkey imports this
#: module first).
_original_socket = _stdlib.socket

# The C methods, called unbound: faster than super() and immune to patching.
_c = _socket.socket
_c_recv = _c.recv
_c_recv_into = _c.recv_into
_c_recvfrom = _c.recvfrom
_c_recvfrom_into = _c.recvfrom_into
_c_send = _c.send
_c_sendto = _c.sendto
_c_sendall = _c.sendall
_c_connect = _c.connect
_c_connect_ex = _c.connect_ex
_c_accept = _c._accept
_c_settimeout = _c.settimeout
_c_gettimeout = _c.gettimeout
_c_fileno = _c.fileno
_c_getsockopt = _c.getsockopt
_c_close = _c.close
_c_recvmsg = getattr(_c, "recvmsg", None)
_c_recvmsg_into = getattr(_c, "recvmsg_into", None)
_c_sendmsg = getattr(_c, "sendmsg", None)
_c_sendmsg_afalg = getattr(_c, "sendmsg_afalg", None)

_SOL_SOCKET = _socket.SOL_SOCKET
_SO_ERROR = _socket.SO_ERROR
_AF_INET = _socket.AF_INET
_AF_INET6 = getattr(_socket, "AF_INET6", None)
_AF_UNIX = getattr(_socket, "AF_UNIX", None)
_CONNECT_IN_PROGRESS = {_errno.EINPROGRESS, _errno.EALREADY, _errno.EWOULDBLOCK}


def _timed_out():
    return TimeoutError("timed out")


def _closed_error():
    return OSError(_errno.EBADF, "Bad file descriptor: the socket was closed while a green "
                                 "thread was waiting on it")


def _normalised_timeout(value):
    """``value`` as the stdlib's ``settimeout`` stores it and ``gettimeout`` returns it, or
    the stdlib's exception.  The C object of a green socket keeps the timeout 0.0 (its
    descriptor is non-blocking) and is never set to anything else, not even for a moment: a
    socket may be used by several OS threads (a WebSocket's reader and its senders), and a
    C-level timeout seen by another thread's ``recv`` would block that whole thread in
    ``poll()``, while one read back by another thread's ``settimeout`` made the socket
    non-blocking.  Plain numbers are converted here as CPython does (seconds to whole
    nanoseconds rounded up, then back); anything else goes through a private socket."""
    if type(value) is float:
        if 0.0 <= value <= 1e9:     # finite, in range (NaN fails the comparison)
            ns = _ceil(value * 1e9)
            return float(ns // 1000000000) if ns % 1000000000 == 0 else ns / 1e9
    elif type(value) is int and 0 <= value <= 1000000000:
        return float(value)
    probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        _c_settimeout(probe, value)     # raises exactly as the stdlib
        return _c_gettimeout(probe)
    finally:
        probe.close()


class socket(_original_socket):
    """A ``socket.socket`` whose blocking operations block only the calling green thread."""

    __slots__ = ("_timeout", "_read_waits")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        _original_socket.__init__(self, family, type, proto, fileno)
        self._read_waits = False
        # The C object now has the stdlib's initial timeout: getdefaulttimeout(), or 0.0 for
        # SOCK_NONBLOCK.  Adopt it as ours and switch the descriptor to non-blocking.
        timeout = _c_gettimeout(self)
        self._timeout = timeout
        if timeout != 0.0:
            _c_settimeout(self, 0.0)

    # -- the Python-level timeout --------------------------------------------------------

    def settimeout(self, value):
        if value is None:
            self._timeout = None
        else:
            self._timeout = _normalised_timeout(value)

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    @property
    def timeout(self):
        return self._timeout

    # -- waiting -------------------------------------------------------------------------

    def _deadline(self):
        timeout = self._timeout
        return None if timeout is None else monotonic() + timeout

    def _wait(self, readable, deadline):
        fd = _c_fileno(self)
        if fd < 0:
            raise _closed_error()
        # The socket owns the wait (last argument): the hub keeps the descriptor registered
        # for the next wait, and close(), detach() and __del__ tell it when to stop.
        if deadline is None:
            current_hub().wait_fd(fd, readable, None, None, self)
        else:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise _timed_out()
            # No exception object made in advance: wait_fd raises TimeoutError("timed out")
            # itself, the same as _timed_out(), and most waits never time out.
            current_hub().wait_fd(fd, readable, remaining, None, self)

    def _read_op(self, op, args):
        """Run a C read operation, waiting for readability on EAGAIN."""
        try:
            return op(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry_after_wait(True, op, args)

    def _write_op(self, op, args):
        """Run a C write operation, waiting for writability on EAGAIN."""
        try:
            return op(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry_after_wait(False, op, args)

    def _retry_after_wait(self, readable, op, args):
        # Wait, then run op until it stops failing with EAGAIN (the caller's own attempt just
        # failed, or was skipped: see _wait_then_read).
        if self._timeout is None:
            # _wait without a deadline, inlined: every wait of a connection without a timeout
            # comes through here.
            wait_fd = current_hub().wait_fd
            while True:
                fd = _c_fileno(self)
                if fd < 0:
                    raise _closed_error()
                wait_fd(fd, readable, None, None, self)
                try:
                    return op(self, *args)
                except BlockingIOError:
                    pass
        # the same with a deadline (a connection's keep-alive and body timeouts)
        deadline = monotonic() + self._timeout
        wait_fd = current_hub().wait_fd
        while True:
            fd = _c_fileno(self)
            if fd < 0:
                raise _closed_error()
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise _timed_out()
            wait_fd(fd, readable, remaining, None, self)
            try:
                return op(self, *args)
            except BlockingIOError:
                pass

    # -- receiving -----------------------------------------------------------------------

    def recv(self, *args):
        if self._read_waits:
            if len(args) == 1 and type(args[0]) is int and args[0] > 0 and self._timeout != 0.0:
                # _wait_then_read for the usual recv(size), without its argument checks
                result = self._retry_after_wait(True, _c_recv, args)
                self._read_waits = len(result) < args[0]
                return result
            return self._wait_then_read(_c_recv, args)
        try:
            return _c_recv(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._wait_then_read(_c_recv, args)

    def recv_into(self, *args):
        if self._read_waits:
            return self._wait_then_read(_c_recv_into, args)
        try:
            return _c_recv_into(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._wait_then_read(_c_recv_into, args)

    def _wait_then_read(self, op, args):
        # Reached when a read just failed with EAGAIN, or when the previous read had to wait
        # and what it got after the wait did not fill the caller's buffer (_read_waits).  In
        # request/response traffic the peer is then waiting for us, so trying first would
        # almost always cost a failed syscall and a raised BlockingIOError: wait first.  The
        # event loop's registration is level-triggered, so data that is already there costs
        # one pass of the loop, never a lost wake-up.
        try:
            if op is _c_recv:
                wanted = args[0] if type(args[0]) is int and len(args) <= 2 else 0
            else:
                wanted = args[1] if len(args) > 1 and args[1] else len(args[0])
        except Exception:
            wanted = 0
        if wanted <= 0 or self._timeout == 0.0:
            # Odd arguments (recv(0), wrong types) or a non-blocking socket: the ordinary
            # path, which answers at once.
            self._read_waits = False
            return self._read_op(op, args)
        result = self._retry_after_wait(True, op, args)
        # A full buffer means more is probably queued: try first next time.
        self._read_waits = (len(result) if op is _c_recv else result) < wanted
        return result

    def recvfrom(self, *args):
        return self._read_op(_c_recvfrom, args)

    def recvfrom_into(self, *args):
        return self._read_op(_c_recvfrom_into, args)

    if _c_recvmsg is not None:
        def recvmsg(self, *args):
            return self._read_op(_c_recvmsg, args)

    if _c_recvmsg_into is not None:
        def recvmsg_into(self, *args):
            return self._read_op(_c_recvmsg_into, args)

    # -- sending -------------------------------------------------------------------------

    def send(self, *args):
        try:
            return _c_send(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        return self._retry_after_wait(False, _c_send, args)

    def sendto(self, *args):
        return self._write_op(_c_sendto, args)

    if _c_sendmsg is not None:
        def sendmsg(self, *args):
            return self._write_op(_c_sendmsg, args)

    if _c_sendmsg_afalg is not None:
        def sendmsg_afalg(self, *args, **kwargs):
            return self._write_op(lambda s, *a: _c_sendmsg_afalg(s, *a, **kwargs), args)

    def sendall(self, data, flags=0):
        if self._timeout == 0.0:
            return _c_sendall(self, data, flags)
        if type(data) is bytes:
            # Most writes are bytes that fit in the send buffer: one send, no memoryview.
            try:
                sent = _c_send(self, data, flags)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return None
            with memoryview(data) as view:
                self._send_rest(view, sent, flags)
            return None
        with memoryview(data) as view, view.cast("B") as view:
            try:
                sent = _c_send(self, view, flags)
            except BlockingIOError:
                sent = 0
            if sent < len(view):
                self._send_rest(view, sent, flags)
        return None

    def _send_rest(self, view, sent, flags):
        total = len(view)
        deadline = self._deadline()
        while sent < total:
            self._wait(False, deadline)
            try:
                sent += _c_send(self, view[sent:], flags)
            except BlockingIOError:
                pass

    def _sendfile_use_sendfile(self, file, offset=0, count=None):
        # The stdlib version waits with a real poll() selector; this one waits on the hub.
        self._check_sendfile_params(file, offset, count)
        sockno = self.fileno()
        try:
            fileno = file.fileno()
            fsize = os.fstat(fileno).st_size
        except (AttributeError, OSError, io.UnsupportedOperation) as err:
            raise _stdlib._GiveupOnSendfile(err)
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2 ** 30)
        if self._timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        deadline = self._deadline()
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = count - total_sent
                    if blocksize <= 0:
                        break
                try:
                    sent = os.sendfile(sockno, fileno, offset, blocksize)
                except BlockingIOError:
                    self._wait(False, deadline)
                    continue
                except OSError as err:
                    if total_sent == 0:
                        raise _stdlib._GiveupOnSendfile(err)
                    raise err from None
                if sent == 0:
                    break
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # -- connections ---------------------------------------------------------------------

    def accept(self):
        fd, address = self._read_op(_c_accept, ())
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        # Same rule as the stdlib: a listening socket with a timeout hands out blocking
        # sockets when there is no default timeout.
        if _stdlib.getdefaulttimeout() is None and self._timeout:
            sock.setblocking(True)
        return sock, address

    def connect(self, address):
        if self._timeout == 0.0:
            return _c_connect(self, address)
        address = self._resolve(address)
        deadline = self._deadline()
        while True:
            err = _c_connect_ex(self, address)
            if not err or err == _errno.EISCONN:
                return None
            if err == _errno.EAGAIN and self.family == _AF_UNIX:
                # A full listen backlog of a Unix socket: nothing to poll for, retry soon.
                if deadline is not None and monotonic() >= deadline:
                    raise _timed_out()
                _hub_sleep(0.001)
                continue
            if err not in _CONNECT_IN_PROGRESS:
                raise OSError(err, os.strerror(err))
            self._wait(False, deadline)
            err = _c_getsockopt(self, _SOL_SOCKET, _SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            return None

    def connect_ex(self, address):
        try:
            # This class's connect, not self.connect: ssl.SSLSocket.connect_ex calls us through
            # super() and its own connect() would wrap a second time.
            socket.connect(self, address)
        except TimeoutError:
            return _errno.EAGAIN  # what the C socket returns on a timeout (SOCK_TIMEOUT_ERR)
        except _socket.gaierror:
            raise  # resolving the name failed: the stdlib raises too, it has no errno to give
        except OSError as exc:
            if exc.errno:
                return exc.errno
            raise
        return 0

    def _resolve(self, address):
        family = self.family
        if family not in (_AF_INET, _AF_INET6) or not isinstance(address, tuple) \
                or len(address) < 2 or _dns.is_numeric_host(address[0]):
            return address
        host, port = address[0], address[1]
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("idna")
        infos = _dns.getaddrinfo(host, port, family, self.type, self.proto)
        if not infos:
            raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known")
        resolved = infos[0][4]
        if family == _AF_INET6 and len(address) > 2:
            resolved = (resolved[0], resolved[1]) + tuple(address[2:])
        return resolved

    # -- closing -------------------------------------------------------------------------

    def _real_close(self, _ss=_c):
        fd = _c_fileno(self)
        if fd >= 0:
            _forget_fd(fd)
        _ss.close(self)

    def detach(self):
        fd = _c_fileno(self)
        if fd >= 0:
            _forget_fd(fd)
        return _original_socket.detach(self)

    def __del__(self, _fileno=_c_fileno, _close=_c_close, _warn=_warnings.warn):
        # A socket collected without close().  Defining __del__ replaces the C finalizer, so
        # this does its work (ResourceWarning, close), after what the C one cannot do: remove
        # the registration the hub keeps for the socket while the descriptor is still open.
        # Left behind, it would outlive the file and shadow a new file with the same number
        # (uvloop keeps one poll handle per number, which would also break its transports).
        fd = _fileno(self)
        if fd < 0:
            return
        try:
            _forget_fd(fd)
        except Exception:
            pass
        try:
            _warn("unclosed %r" % (self,), ResourceWarning, stacklevel=2, source=self)
        finally:
            try:
                _close(self)
            except OSError:
                pass


SocketType = _socket.socket  # as in the stdlib: the C base class


# ---------------------------------------------------------------------------------------------
# Module-level constructors

def socketpair(family=None, type=_socket.SOCK_STREAM, proto=0):
    """Like :func:`socket.socketpair`, returning green sockets."""
    if family is None:
        family = _AF_UNIX if _AF_UNIX is not None else _AF_INET
    a, b = _socket.socketpair(family, type, proto)
    return (socket(family, type, proto, a.detach()), socket(family, type, proto, b.detach()))


def fromfd(fd, family, type, proto=0):
    """Like :func:`socket.fromfd`: a green socket on a duplicate of ``fd``."""
    return socket(family, type, proto, os.dup(fd))


_GLOBAL_DEFAULT_TIMEOUT = _stdlib._GLOBAL_DEFAULT_TIMEOUT


def create_connection(address, timeout=_GLOBAL_DEFAULT_TIMEOUT, source_address=None, *,
                      all_errors=False):
    """Like :func:`socket.create_connection`: try each resolved address in turn."""
    host, port = address
    errors = []
    for family, type_, proto, _canonname, sockaddr in _dns.getaddrinfo(
            host, port, 0, _socket.SOCK_STREAM):
        sock = None
        try:
            sock = socket(family, type_, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            errors.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                errors.clear()
            errors.append(exc)
            if sock is not None:
                sock.close()
        except BaseException:
            # A Timeout or a kill while connecting: close now, not when the traceback that
            # still references the socket is collected.
            if sock is not None:
                sock.close()
            raise
    if errors:
        try:
            if not all_errors:
                raise errors[0]
            raise ExceptionGroup("create_connection failed", errors)
        finally:
            errors.clear()
    raise OSError("getaddrinfo returns an empty list")


def create_server(address, *, family=_AF_INET, backlog=None, reuse_port=False,
                  dualstack_ipv6=False):
    """Like :func:`socket.create_server`, returning a green listening socket."""
    if reuse_port and not hasattr(_socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not _stdlib.has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != _AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket(family, _socket.SOCK_STREAM)
    try:
        try:
            sock.setsockopt(_SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        except OSError:
            pass
        if reuse_port:
            sock.setsockopt(_SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        if _stdlib.has_ipv6 and family == _AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY,
                            0 if dualstack_ipv6 else 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(err.errno, "%s (while attempting to bind on address %r)"
                          % (err.strerror, address)) from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except OSError:
        sock.close()
        raise


# ---------------------------------------------------------------------------------------------
# Waiting on raw descriptors (gevent.socket's helpers)

def wait_read(fileno, timeout=None, timeout_exc=None):
    """Block the current green thread until ``fileno`` is readable."""
    get_hub().wait_readable(fileno, timeout, timeout_exc or _timed_out())


def wait_write(fileno, timeout=None, timeout_exc=None):
    """Block the current green thread until ``fileno`` is writable."""
    get_hub().wait_writable(fileno, timeout, timeout_exc or _timed_out())


def wait_readwrite(fileno, timeout=None, timeout_exc=None):
    """Block until ``fileno`` is readable or writable (whichever comes first)."""
    readable, writable, _ = _green_select([fileno], [fileno], [], timeout)
    if not readable and not writable:
        raise timeout_exc or _timed_out()


# Shown (repr, pickling by reference) under the public module that re-exports it.
socket.__module__ = "loop.socket"
