"""A strict and fast WSGI (PEP 3333) server.

Design
======

Blocking style on purpose
-------------------------
The connection handler is ordinary blocking code against a small socket surface: ``recv``,
``sendall``, ``sendfile``, ``settimeout``, ``shutdown`` and ``close``.  :class:`WSGIServer` is a
:class:`loop.server.StreamServer`: every connection runs in its own green thread on a green
socket, so each of those calls parks only that green thread and the same straight-line code
serves ten thousand connections.  There are no callbacks and no ``async``: a WSGI application
is blocking code, and the server around it reads best when it is too.  (An application that
blocks the OS thread -- a CPU loop, an unpatched C client library -- blocks every connection of
the process; run it under ``loop.monkey.patch_all()`` or with the gunicorn worker, which
patches.)

``WSGIServer.handle(sock, address)`` serves one accepted connection from start to close and does
not care who called it; the gunicorn worker (:mod:`loop.worker`) reuses it.

Parsing and strictness
----------------------
Bytes become requests in :mod:`loop._protocols.http`, a sans-IO reader on top of httptools (llhttp) with
our own checks added; its header explains the choice and the policy.  This module only moves
bytes between the socket and that reader.  Any :class:`~loop._protocols.http.ProtocolError` -- bad framing,
oversize line, headers or body, unsupported version or coding -- is answered with its status
code and ``Connection: close``, and the connection is closed: once framing is in doubt, reading
on could mean executing a request smuggled inside another.  The same rule covers two subtler
cases that produced CVEs elsewhere: a body the application did not read is drained (up to
``max_drain`` bytes) or the connection is closed, and a body announced with ``Expect:
100-continue`` that the application never asked for closes the connection, because we cannot
know whether the client sent it.

Speed
-----
A hello-world request should cost one ``recv``, one parse, one ``sendall``.  So: the per-connection
part of the environ is built once and copied per request; header-name to environ-key conversion
is memoised; status lines and the Date header are cached; the response head is built with one
``join`` and a one-element body is sent together with it; response headers from the app are
validated against a memo of names already seen.  ``TCP_NODELAY`` is set on every connection:
with Nagle's algorithm on, a response written as head and body in two sends can wait for the
peer's delayed ACK (gevent.pywsgi lost 8x on this).

Timeouts and limits
-------------------
A timeout on a working connection means *no progress*, never a deadline for a whole transfer:
``timeout`` bounds each wait for the client to take bytes we write (``send``, ``sendfile``) or
to send body bytes we read, so a slow but steady client gets a download of any size, and a
client that stops reading or sending is cut ``timeout`` seconds after its last byte.  Waits
that could otherwise be stretched for ever have total bounds: ``header_timeout`` from the first
byte of a request to the end of its head (slowloris), ``keepalive_timeout`` for the idle wait
for a next request, and a request body gets ``body_timeout`` seconds of waiting plus one second
per ``body_min_rate`` bytes received (one byte every few seconds cannot hold a connection).  A
body the application left unread is drained so the connection can be reused only if it is at
most ``max_drain`` bytes and arrives within ``drain_timeout``; otherwise we close.  Every cut we
make is logged on the error log (a stalled or too slow client at WARNING, a client that went
away at INFO); ``docs/servers.md`` has the table.  ``max_connections`` sizes the green pool:
further connections wait in the kernel's listen backlog.

Body reads are linear: :class:`Input` keeps the current ``recv`` piece and an offset instead of a
growing buffer, and the handler yields to the hub every megabyte a fast client delivers without
making ``recv`` wait, so one huge upload cannot stall the other connections.

Closing
-------
Closing a TCP socket with unread bytes in its receive buffer sends a reset, and a reset destroys
whatever of the response the client has not read yet.  So when the client may still be sending
(an unread body, the next request on a connection we close) the handler ends its side with a
FIN and discards what arrives for up to ``linger_timeout`` seconds before closing.

When a connection ends, nothing of it may stay reachable: exceptions that carried a socket error
lose their tracebacks (a frame that holds the exception that holds the frame is a cycle only
the full garbage collection frees), and the request's stream, environ and parser are detached,
so the handler, its frames and the response body are freed at once by reference counting.

Stopping: the drain
-------------------
:meth:`WSGIHandler.drain` is the connection-level graceful stop, and
:meth:`WSGIServer.drain_connections` applies it to every connection (``stop()`` calls it after
closing the listener; a process manager can call it directly).  The rule is that a request the
application ran is answered, and a request that will not be answered is never run:

* a connection waiting for a next request of which nothing has been read is woken and closed
  without reading (the client sees the connection close with no response; it can retry);
* a request in progress finishes, and its response says ``Connection: close`` if its head is
  not sent yet; nothing after it is read or run;
* a request whose head had partly arrived is read to its end and served, with ``Connection:
  close``.

``stop()`` then waits for the handlers cooperatively and kills what is left when its grace
period ends.  ``python -m loop.pywsgi`` stops this way on SIGTERM as on SIGINT.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import signal
import socket
import stat
import sys
import time
import traceback
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

from loop._core.api import signal_handler
from loop._core.hub import cancel_wait, sleep as _sleep, wait_writable
from loop.server import StreamServer
from loop._protocols.http import (
    CONNECTION_CLOSED, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, DEFAULT_MAX_REQUEST_LINE,
    END_OF_MESSAGE, NEED_DATA, ProtocolError, RequestReader, split_target,
)

__all__ = ["WSGIServer", "WSGIHandler", "FileWrapper", "Input", "main", "MAX_REQUEST_LINE",
           "Environ", "SecureEnviron", "WSGISecureEnviron", "LoggingLogAdapter"]

#: The longest request line (and header line) accepted by default, in bytes (gevent's name).
MAX_REQUEST_LINE = DEFAULT_MAX_REQUEST_LINE

RECV_SIZE = 65536
# Body reads ask for more per recv: a large upload then costs fewer calls and parser feeds.
BODY_RECV_SIZE = 262144
# A connection reading a body from a fast client lets the others run at least this often,
# and one writing a big response to a fast client at least every _YIELD_EVERY_SENT bytes.
_YIELD_EVERY = 1 << 20
_YIELD_EVERY_SENT = 4 << 20
# A closing connection discards at most this much of what the client still sends.
_LINGER_BYTES = 1 << 20
# Bodies up to this size go out in one send with their head (one copy is cheaper than two
# syscalls); larger ones are sent as they are.
_JOIN_LIMIT = 65536
# A list body of several pieces up to this size is joined and sent with its Content-Length.
_JOIN_LIMIT_LIST = 1 << 20
# sendfile() hands the kernel at most this much per call.
_SENDFILE_BLOCK = 1 << 24
_SENDFILE_UNSUPPORTED = frozenset(
    getattr(errno, name) for name in ("EINVAL", "ENOSYS", "EOPNOTSUPP", "ENOTSOCK")
    if hasattr(errno, name))
_access_default = logging.getLogger("loop.pywsgi.access")
_error_default = logging.getLogger("loop.pywsgi")

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 204: "No Content",
    304: "Not Modified", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
    414: "URI Too Long", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# Hop-by-hop fields belong to the server (PEP 3333: an application must not send them).
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "trailers", "transfer-encoding", "upgrade"))
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"[1-9][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*\Z")


# -- small caches ------------------------------------------------------------------------------

class _DateCache:
    """The Date header and the access-log timestamp change once a second; format them once."""

    def __init__(self):
        self._second = None
        self.header = b""
        self.log = ""

    def refresh(self):
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self.header = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
            self.log = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        return self.header


_date = _DateCache()

# raw header name (bytes, as sent) -> environ key, or "" to drop.  Memoised: names repeat.
_environ_keys = {}


def _environ_key(name):
    key = _environ_keys.get(name)
    if key is None:
        text = name.decode("latin-1")
        if "_" in text:
            # "X_Forwarded_For" and "X-Forwarded-For" would both become HTTP_X_FORWARDED_FOR;
            # a client could spoof a header a proxy set.  Like nginx and gunicorn, drop them.
            key = ""
        else:
            key = text.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
        if len(_environ_keys) < 4096:
            _environ_keys[name] = key
    return key


_status_lines = {}   # status text -> encoded status line

_checked_names = {}   # response header name -> lower-cased name, for names found valid
_header_blocks = {}   # tuple(app headers) -> (encoded header lines, Content-Length or None)


def _joinable(parts):
    """Whether a list body of several pieces is sent joined, with a Content-Length (as gevent
    does) rather than chunked: all bytes, together at most _JOIN_LIMIT_LIST."""
    total = 0
    for part in parts:
        if type(part) is not bytes:
            return False
        total += len(part)
    return total <= _JOIN_LIMIT_LIST


def _invalid(what, text, description):
    # A CR or LF is the response-splitting attempt: said in gevent's words (args[0]), which
    # ported code may test for; the offending text follows as args[1].
    if type(text) is str and ("\r" in text or "\n" in text):
        return ValueError(f"carriage return or newline in {what}", text)
    return ValueError(f"{description} {text!r}")


def _check_response_header(name, value):
    lower = _checked_names.get(name)
    if lower is None:
        if type(name) is not str or not _TOKEN.match(name):
            raise _invalid("header name", name, "invalid response header name")
        lower = name.lower()
        if lower in _HOP_BY_HOP:
            raise ValueError(f"hop-by-hop header {name!r} is not allowed from a WSGI app")
        if len(_checked_names) < 1024:
            _checked_names[name] = lower
    if type(value) is not str or _BAD_VALUE.search(value):
        raise _invalid("header value", value, f"invalid value for response header {name!r}:")
    return lower


def _status_line(status):
    line = _status_lines.get(status)
    if line is None:
        if type(status) is not str or not _STATUS.match(status):
            raise _invalid("status", status, "invalid status")
        try:
            line = b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n"
        except UnicodeEncodeError:
            raise ValueError(f"status must be latin-1 text: {status!r}") from None
        if len(_status_lines) < 512:
            _status_lines[status] = line
    return line


def _encode_headers(headers):
    """Validate the app's response headers; return (encoded lines, Content-Length or None)."""
    if type(headers) is not list:
        raise TypeError("response headers must be a list")
    content_length = None
    lines = []
    for header in headers:
        if type(header) is not tuple or len(header) != 2:
            raise TypeError(f"response header {header!r} is not a (name, value) tuple")
        name, value = header
        if _check_response_header(name, value) == "content-length":
            stripped = value.strip()
            if not stripped.isdigit():
                raise ValueError(f"invalid Content-Length {value!r}")
            content_length = int(stripped)
        lines.append(f"{name}: {value}\r\n")
    try:
        block = ("".join(lines).encode("latin-1"), content_length)
    except UnicodeEncodeError:
        raise ValueError("response headers must be latin-1 text") from None
    if len(_header_blocks) < 256:
        _header_blocks[tuple(headers)] = block
    return block


def _forget_traceback(exc):
    """Drop the tracebacks of a handled exception and of the ones it chained.

    A traceback holds its frames, the frames hold their locals, and a frame often holds the
    exception itself (``except ... as exc`` before the re-raise, a ``raise error`` from a local):
    a reference cycle that keeps a connection and its data alive until a full collection."""
    seen = 0
    while exc is not None and seen < 16:
        tb = exc.__traceback__
        if tb is not None:
            traceback.clear_frames(tb)
            exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
        seen += 1


def _simple_response(status, body=b"", close=True):
    reason = _REASONS.get(status, "Error")
    if not body:
        body = f"{status} {reason}\n".encode("ascii")
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii")), _date.refresh(),
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(body),
        b"Connection: close\r\n\r\n" if close else b"\r\n", body))


# -- wsgi.input and wsgi.file_wrapper ------------------------------------------------------------

class _FileBody:
    """The body source of an :class:`Input` made over a file-like object, as gevent's
    ``Input(rfile, content_length, chunked_input=...)``: the bytes are framed by the same strict
    reader as a connection's, fed so that nothing past the body's end is read from ``rfile``
    (exact sizes for a Content-Length body, one line at a time for a chunked one)."""

    __slots__ = ("_rfile", "_reader", "_left")

    def __init__(self, rfile, content_length, chunked):
        if chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
            self._left = None
        else:
            length = int(content_length or 0)
            if length < 0:
                raise ValueError("content_length must be >= 0")
            framing = b"Content-Length: %d\r\n" % length
            self._left = length
        self._rfile = rfile
        self._reader = reader = RequestReader()
        reader.feed(b"POST / HTTP/1.1\r\nHost: input\r\n" + framing + b"\r\n")
        reader.next_event()     # the Request the head above describes

    def _next_body_piece(self):
        reader = self._reader
        while True:
            try:
                event = reader.next_event()
            except ProtocolError as error:
                raise OSError("bad request body: %s" % (error.detail,)) from None
            if event is END_OF_MESSAGE:
                return None
            if event is not NEED_DATA:
                if self._left is not None:
                    self._left -= len(event)
                return event
            if self._left is None:
                data = self._rfile.readline(RECV_SIZE)
            else:
                data = self._rfile.read(min(self._left, RECV_SIZE))
            if not data:
                raise OSError("the request body ended early")
            reader.feed(bytes(data))


class Input:
    """``wsgi.input``: the request body as a stream, read from the socket as the app asks.

    It ends at the end of the body (Content-Length or the last chunk), never beyond, so an app
    can ``read()`` without a size.  The first read that needs data from the client sends
    ``100 Continue`` when the client asked for it.

    The body arrives as pieces (one per ``recv``).  The stream keeps the current piece and an
    offset into it, never a growing buffer: every byte is copied a bounded number of times, so
    ``read()``, ``read(n)``, ``readline()`` and iteration cost time linear in the body.
    """

    __slots__ = ("_handler", "_piece", "_pos", "_done")

    def __init__(self, rfile, content_length=None, socket=None, chunked_input=False):
        # The server hands its connection handler.  gevent's signature -- a file-like object
        # and the body's framing -- reads the body from that object instead (``socket``, where
        # gevent writes 100 Continue, is not used: nothing asked for it).
        if not isinstance(rfile, WSGIHandler):
            rfile = _FileBody(rfile, content_length, chunked_input)
        self._handler = rfile
        self._piece = b""      # the current body piece; bytes before _pos are consumed
        self._pos = 0
        self._done = False

    def _next_piece(self):
        """The next body piece from the connection, or None at the end of the body."""
        handler = self._handler
        if self._done or handler is None:
            return None
        piece = handler._next_body_piece()
        if piece is None:
            self._done = True
        return piece

    def _rest(self):
        """Take what is left of the current piece."""
        piece, pos = self._piece, self._pos
        self._piece = b""
        self._pos = 0
        return piece[pos:] if pos else piece

    def read(self, size=-1):
        if size is None or size < 0:
            parts = []
            if self._pos < len(self._piece):
                parts.append(self._rest())
            next_piece = self._next_piece
            while True:
                piece = next_piece()
                if piece is None:
                    break
                parts.append(piece)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        piece, pos = self._piece, self._pos
        available = len(piece) - pos
        if available >= size:
            self._pos = pos + size
            return piece[pos:pos + size]
        parts = [self._rest()] if available else []
        needed = size - available
        while True:
            piece = self._next_piece()
            if piece is None:
                break
            length = len(piece)
            if length >= needed:
                if length == needed:
                    parts.append(piece)
                else:
                    parts.append(piece[:needed])
                    self._piece = piece
                    self._pos = needed
                break
            parts.append(piece)
            needed -= length
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, size=-1):
        if size is None:
            size = -1
        piece, pos = self._piece, self._pos
        newline = piece.find(b"\n", pos)
        if newline >= 0 and (size < 0 or newline < pos + size):
            # The common case: the whole line is in the current piece.
            self._pos = newline + 1
            return piece[pos:newline + 1]
        parts = []
        wanted = size
        while True:
            piece, pos = self._piece, self._pos
            end = len(piece)
            if pos < end:
                limit = end if wanted < 0 else min(end, pos + wanted)
                newline = piece.find(b"\n", pos, limit)
                stop = newline + 1 if newline >= 0 else limit
                parts.append(piece[pos:stop])
                self._pos = stop
                if newline >= 0:
                    break
                if wanted >= 0:
                    wanted -= stop - pos
                    if wanted == 0:
                        break
            elif wanted == 0:
                break
            piece = self._next_piece()
            if piece is None:
                self._piece = b""
                self._pos = 0
                break
            self._piece = piece
            self._pos = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        readline = self.readline
        while True:
            line = readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    @property
    def finished(self):
        """The whole body has come off the connection (not necessarily read by the app)."""
        return self._done

    def _detach(self):
        # The request is over: no reference back to the connection (and no cycle through it,
        # should the application keep the environ).  Reads from now on find the end.
        self._handler = None


class Environ(dict):
    """An environ type for servers that want one other than ``dict`` (``environ_class``, as in
    gevent): its ``copy()`` keeps the type, and it pickles (and ``copy.copy``-es) as a plain
    dict, so nothing downstream depends on it."""
    __slots__ = ()

    def copy(self):
        return type(self)(self)

    def __reduce_ex__(self, protocol):
        return dict, (dict(self),)


class SecureEnviron(Environ):
    """An environ whose ``repr``/``str`` do not show its values (cookies, authorization headers,
    session data) when it lands in a log or a traceback: only how many keys it has, or, with
    ``whitelist_keys``, the values of those keys and ``<MASKED>`` for the others.  Each
    instance may set ``secure_repr`` and ``whitelist_keys``; unset, they come from the class's
    ``default_secure_repr`` (True) and ``default_whitelist_keys`` (none)."""
    __slots__ = ("secure_repr", "whitelist_keys")

    default_secure_repr = True
    default_whitelist_keys = ()

    def __getattr__(self, name):
        if name in SecureEnviron.__slots__:
            return getattr(type(self), "default_" + name)
        raise AttributeError(name)

    def __repr__(self):
        if not self.secure_repr:
            return dict.__repr__(self)
        shown = self.whitelist_keys
        if shown:
            return repr({key: value if key in shown else "<MASKED>"
                         for key, value in self.items()})
        return "<pywsgi.%s dict (keys: %d) at %#x>" % (type(self).__name__, len(self), id(self))

    __str__ = __repr__


#: gevent's other name for it.
WSGISecureEnviron = SecureEnviron


class FileWrapper:
    """``wsgi.file_wrapper``.  The server sends a wrapped regular file with ``sendfile``."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        blksize = self.blksize
        while True:
            data = read(blksize)
            if not data:
                return
            yield data


class _ClientGone(Exception):
    """The peer vanished (reset, EOF) or made no progress (timeout) while we talked to it.

    It carries only a description: the socket error it replaces had a traceback whose frames
    hold the connection and the data being sent, and an exception that a frame of its own
    traceback refers to is a reference cycle that only a full garbage collection frees."""


class _DrainWake(ConnectionAbortedError):
    """Raised in a connection waiting for its next request when the server drains."""


def _describe_failure(exc):
    """A description of a socket error, with its tracebacks dropped (see _ClientGone): its
    own and those of the errors it was raised from (a TLS timeout wraps the socket's)."""
    _forget_traceback(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or exc.__class__.__name__


# -- the handler ---------------------------------------------------------------------------------

class WSGIHandler:
    """Serves one connection: reads requests, runs the app, writes responses, until close."""

    def __init__(self, server, sock, address):
        self.server = server
        self.sock = sock
        self.address = address
        self._try_send = getattr(sock, "try_send", None)   # loop.server's ServerSocket
        self.reader = RequestReader(
            max_request_line=server.max_request_line, max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers, max_body=server.max_body)
        self.closing = False
        #: Set by drain(): serve what was already read, then close.
        self.draining = False
        self._idle_wait = False          # parked waiting for the first byte of a request
        self._peer_closed = False        # the client closed, reset or stalled: no linger
        self._timeout = None
        self._base_environ = None
        self._cgi_fits = False
        self.requests_served = 0
        self._unyielded = 0              # body bytes received since this thread last yielded
        self._start_request(None)

    #: Called by :meth:`drain` on a connection the application took over (see
    #: :func:`loop.websocket.upgrade`, which sets it).
    on_drain = None

    def _start_request(self, request):
        """Set every piece of per-request state: the one place that does, for the connection
        before its first request (``request`` None) and for each request it serves."""
        self.request = request
        self.environ = None
        self.input = None
        self.status = None
        self.response_headers = None
        self.headers_sent = False
        self.upgraded = False
        self._status_bytes = b""
        self._header_block = b""
        self._chunked = False
        self._content_length = None
        self._body_sent = 0
        self._written = 0               # bytes of the current response that went out
        self._expect_pending = (request is not None and request.expect_continue
                                and request.has_body)
        self._body_error = None
        self._body_received = 0
        self._body_waited = 0.0
        self._body_deadline = None

    @property
    def idle(self):
        """Waiting for a next request of which nothing has been read yet."""
        return self._idle_wait

    def drain(self):
        """Finish what this connection has started, then close it (a graceful stop).

        A request whose bytes the server has already read is served, and its response says
        ``Connection: close``; a request in progress finishes the same way.  A connection
        waiting for a next request of which nothing has been read closes now, without reading:
        whatever the client sent meanwhile stays unread, never run, and the client sees the
        connection close with no response to it.  Idempotent; the server's hub thread only.
        """
        if self.draining:
            return
        self.draining = True
        if self.upgraded:
            # the connection is the application's now (a WebSocket, say): what upgraded it may
            # have left a hook that tells the peer the server goes away
            hook = self.on_drain
            if hook is not None:
                hook()
            return
        if self._idle_wait:
            try:
                fd = self.sock.fileno()
            except (OSError, AttributeError):
                return
            if fd >= 0:
                cancel_wait(fd, _DrainWake("the server is stopping"))

    # -- IO helpers ------------------------------------------------------------------------------

    def _settimeout(self, timeout):
        if timeout != self._timeout:
            self._timeout = timeout
            self.sock.settimeout(timeout)

    def _send(self, data):
        # Nearly every response fits in the socket's send buffer: try a non-blocking send
        # first, which also saves switching the socket's timeout back and forth per request.
        try_send = self._try_send
        if try_send is not None:
            try:
                sent = try_send(data)
            except OSError as exc:
                failure = _describe_failure(exc)
            else:
                self._written += sent
                if sent == len(data):
                    return
                self._send_rest(memoryview(data)[sent:])
                return
            self._client_gone(failure)
        self._send_rest(memoryview(data))

    def _send_rest(self, view):
        """Send all of ``view``, cutting the client off only after ``timeout`` seconds in
        which it took no byte: a slow but steady reader gets everything, however long it
        takes (sendall's timeout would be a deadline for the whole write)."""
        self._settimeout(self.server.timeout)
        send = self.sock.send
        unyielded = 0
        try:
            while view:
                sent = send(view)
                self._written += sent
                view = view[sent:]
                # A client that reads as fast as we write never makes send wait: let the
                # other connections run now and then during a big response.
                unyielded += sent
                if unyielded >= _YIELD_EVERY_SENT and view:
                    unyielded = 0
                    _sleep(0)
            return
        except OSError as exc:
            failure = _describe_failure(exc)
        finally:
            view.release()
        self._client_gone(failure)

    def _client_gone(self, failure):
        """Log why the connection is cut and unwind to the connection loop."""
        self.closing = True
        self._peer_closed = True
        request = self.request
        what = (f"the response to {request.method} {request.target.decode('latin-1')!r}"
                if request is not None else "a response")
        if failure == "timed out":
            self.server.log_error(
                "client %s took no data for %s s: %s cut after %d bytes",
                self.address, self.server.timeout, what, self._written,
                level=logging.WARNING)
        else:
            self.server.log_error("client %s went away (%s) during %s", self.address, failure,
                                  what, level=logging.INFO)
        raise _ClientGone(failure)

    # -- connection loop -------------------------------------------------------------------------

    def handle(self):
        try:
            try:
                while not self.closing:
                    request = self._read_request()
                    if request is None:
                        break
                    if self.reader.error is not None:
                        # Already known to be bad (the body arrived with the head and failed):
                        # refuse before the application runs.
                        error = self.reader.pending_body_error()
                        if error is not None:
                            self.request = request
                            self._protocol_error(error)
                            break
                    self._handle_request(request)
                    self.requests_served += 1
            except _ClientGone:
                pass
            if not self._peer_closed and not self.upgraded:
                self._close_gracefully()
        finally:
            self._forget()

    def _forget(self):
        # Nothing of a finished connection may stay reachable: break the reference cycles
        # through the request (environ -> wsgi.input -> handler, loop.upgrade, the parser).
        wsgi_input = self.input
        if wsgi_input is not None:
            wsgi_input._detach()
        self.input = None
        self.environ = None
        self.response_headers = None
        self.reader.close()

    def _close_gracefully(self):
        """Before the socket is closed: let the client read what we wrote.

        Closing a TCP socket with unread bytes in its receive buffer sends a reset, and a
        reset can destroy the response still on its way or unread in the client's buffer.
        So when the client may still be sending (a body we did not read, a next request on a
        kept-alive connection we are closing), we end our side with a FIN and read and discard
        what comes, for at most ``linger_timeout`` seconds and a megabyte, until the client
        closes too.
        """
        if self._peer_closed or self.upgraded:
            return
        request = self.request
        if request is None:
            # Between requests: only a drain (or an error answer to a head) wrote last.
            if not (self.draining and self.requests_served) and not self.reader.in_request:
                return
        elif not request.keep_alive and self.input_finished and not self.reader.in_request:
            return      # the client said it sends nothing more
        server = self.server
        try:
            # On a TLS socket this also drops the TLS layer: what we read next is discarded
            # as raw bytes, and the client sees a plain FIN (no close_notify).
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + server.linger_timeout
        budget = max(server.max_drain, _LINGER_BYTES)
        try:
            while budget >= 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._settimeout(remaining)
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    return
                budget -= len(data)
        except OSError as exc:
            _describe_failure(exc)

    @property
    def input_finished(self):
        wsgi_input = self.input
        return wsgi_input is None or wsgi_input.finished

    def _read_request(self):
        """The next request head, or None when the connection should close."""
        reader = self.reader
        server = self.server
        self.request = None
        try:
            event = reader.next_event()
            if event is NEED_DATA:
                if not reader.in_message:      # (no events are queued: NEED_DATA)
                    # Nothing of a next request has been read: a draining connection closes
                    # here, and drain() wakes this wait.
                    if self.draining:
                        return None
                    first = self.requests_served == 0
                    self._settimeout(server.header_timeout if first else server.keepalive_timeout)
                    self._idle_wait = True
                    try:
                        data = self.sock.recv(RECV_SIZE)
                    except _DrainWake as exc:
                        exc.__traceback__ = None    # see _ClientGone
                        return None
                    except OSError as exc:
                        # idle too long, or reset: close quietly
                        _describe_failure(exc)
                        self._peer_closed = not isinstance(exc, TimeoutError)
                        return None
                    finally:
                        self._idle_wait = False
                    if not data:
                        self._peer_closed = True
                    reader.feed(data)
                    event = reader.next_event()
                if event is NEED_DATA:
                    # A head in pieces: the header timeout runs from its first byte.  A
                    # draining connection still reads it: it will be served, with close.
                    event = self._read_rest_of_head()
        except ProtocolError as error:
            error.__traceback__ = None
            self._protocol_error(error)
            return None
        if event is CONNECTION_CLOSED or event is None:
            return None
        return event

    def _read_rest_of_head(self):
        reader = self.reader
        server = self.server
        deadline = time.monotonic() + server.header_timeout
        event = NEED_DATA
        while event is NEED_DATA:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._head_timed_out()
                return None
            self._settimeout(remaining)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError as exc:
                _describe_failure(exc)
                self._head_timed_out()
                return None
            except OSError as exc:
                _describe_failure(exc)
                self._peer_closed = True
                return None
            if not data:
                self._peer_closed = True
            reader.feed(data)
            event = reader.next_event()
        return event

    def _head_timed_out(self):
        self.server.log_error("request head from %s not complete within %s s: 408, closed",
                              self.address, self.server.header_timeout, level=logging.INFO)
        self._answer_error(408)
        self.server.log_access_error(self, 408)

    def _protocol_error(self, error):
        self.server.log_error("rejected request from %s: %s %s", self.address, error.status,
                              error.detail, level=logging.INFO)
        if error.status is not None:
            self._answer_error(error.status)
            self.server.log_access_error(self, error.status)
        else:
            self._peer_closed = True

    def _answer_error(self, status):
        self.closing = True
        try:
            self._send(_simple_response(status))
        except _ClientGone:
            pass

    # -- the request body ------------------------------------------------------------------------

    def _next_body_piece(self):
        """Called by Input: the next piece of this request's body, or None at its end."""
        if self._expect_pending:
            self._expect_pending = False
            if not self.headers_sent:
                self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        reader = self.reader
        try:
            while True:
                event = reader.next_event()
                if event is NEED_DATA:
                    self._recv_body()
                    continue
                if event is END_OF_MESSAGE:
                    return None
                return event
        except ProtocolError as error:
            error.__traceback__ = None      # kept on the handler: no cycle through its frames
            self._body_error = error
            self.closing = True
            if error.status is None:
                self._peer_closed = True
                message = "client went away while sending the request body"
                self.server.log_error("client %s went away while sending a request body "
                                      "(%d bytes received)", self.address,
                                      self._body_received, level=logging.INFO)
            else:
                message = f"bad request body: {error.detail}"
                self.server.log_error("rejected request body from %s: %s %s", self.address,
                                      error.status, error.detail, level=logging.INFO)
        except _ClientGone as exc:
            if self._body_error is None:
                self._body_error = ProtocolError(None, "client went away")
            self.closing = True
            message = f"request body not received: {exc}"
        raise OSError(message)

    def _recv_body(self):
        """Receive more of the body.  Each wait is bounded by ``timeout`` (no progress), and
        all the waiting for one body by ``body_timeout`` plus one second per
        ``body_min_rate`` bytes received: a client trickling a body cannot hold the
        connection for ever."""
        server = self.server
        timeout = server.timeout
        limit = server.body_timeout
        if limit is not None:
            rate = server.body_min_rate
            if rate:
                limit += self._body_received / rate
            limit -= self._body_waited
        deadline = self._body_deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if limit is None or left < limit:
                limit = left
        if limit is not None and (timeout is None or limit < timeout):
            if limit <= 0:
                self._body_too_slow()
            timeout = limit
        self._settimeout(timeout)
        start = time.monotonic()
        try:
            data = self.sock.recv(BODY_RECV_SIZE)
        except TimeoutError as exc:
            _describe_failure(exc)
            self._body_waited += time.monotonic() - start
            if timeout == server.timeout:
                self._body_stalled()
            self._body_too_slow()
        except OSError as exc:
            failure = _describe_failure(exc)
            self._peer_closed = True
            self.server.log_error("client %s went away (%s) while sending a request body "
                                  "(%d bytes received)", self.address, failure,
                                  self._body_received, level=logging.INFO)
            raise _ClientGone(failure) from None
        self._body_waited += time.monotonic() - start
        if not data:
            self._peer_closed = True
        self.reader.feed(data)
        received = len(data)
        self._body_received += received
        # A fast client never makes recv wait, so this green thread would read a huge body
        # without letting any other connection run: yield every megabyte.
        unyielded = self._unyielded + received
        if unyielded >= _YIELD_EVERY:
            unyielded = 0
            _sleep(0)
        self._unyielded = unyielded

    def _body_stalled(self):
        self._body_error = ProtocolError(408, "request body stalled")
        self.server.log_error("client %s sent no body bytes for %s s (%d received): closed",
                              self.address, self.server.timeout, self._body_received,
                              level=logging.WARNING)
        raise _ClientGone("request body stalled")

    def _body_too_slow(self):
        self._body_error = ProtocolError(408, "request body too slow")
        what = "drain of an unread body" if self._body_deadline is not None else "body"
        self.server.log_error("client %s too slow sending a request %s (%d bytes in %.1f s of "
                              "waiting): closed", self.address, what, self._body_received,
                              self._body_waited, level=logging.WARNING)
        raise _ClientGone("request body too slow")

    # -- one request -----------------------------------------------------------------------------

    def _use_base_environ(self, base):
        """Make ``base`` the environ every request of this connection starts from."""
        self._base_environ = base
        # A field's key already in it (put there by the server's `environ` argument) is joined
        # with the field's value by _environ_for's loop; the C scanner's dict would replace it.
        self._cgi_fits = not any(key[:5] == "HTTP_" or key[:8] == "CONTENT_" for key in base)

    def _environ_for(self, request):
        base = self._base_environ
        if base is None:
            base = self.server._connection_environ(self.address)
            self._use_base_environ(base)
        environ = base.copy()
        cgi = request.cgi
        if cgi is not None and self._cgi_fits:
            # The C scanner built the request's variables (src/protocols/http_head.c): what
            # _add_request_variables makes of the same request.
            environ.update(cgi)
            if self.server.script_name:
                environ["PATH_INFO"] = self._below_script_name(cgi["PATH_INFO"])
        else:
            self._add_request_variables(environ, request)
        environ["wsgi.input"] = self.input = Input(self)
        if not request.has_body and self.reader.skip_end_of_message():
            self.input._done = True
        if request.upgrade:
            environ["loop.upgrade"] = self
        return environ

    def _below_script_name(self, path_info):
        """``path_info`` without the server's SCRIPT_NAME prefix, if it has it."""
        script_name = self.server.script_name
        if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
            return path_info[len(script_name):]
        return path_info

    def _add_request_variables(self, environ, request):
        target = request.target
        if target[:1] == b"/":
            path, _, query = target.partition(b"?")
        else:
            path, query = split_target(target)
        if path.find(b"%") >= 0:  # `b"%" in path` costs a TypeError raised and cleared
            path = unquote_to_bytes(path)
        environ["REQUEST_METHOD"] = request.method
        environ["PATH_INFO"] = self._below_script_name(path.decode("latin-1"))
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
        environ["SERVER_PROTOCOL"] = request.version
        for name, value in request.headers:
            key = _environ_key(name)
            if not key:
                continue
            value = value.decode("latin-1")
            if key in environ:
                if key == "HTTP_COOKIE":
                    # RFC 9113 8.2.3: cookie-pairs are separated by "; ", not ", ".
                    value = environ[key] + "; " + value
                else:
                    value = environ[key] + ", " + value
            environ[key] = value
        if request.chunked:
            environ.pop("CONTENT_LENGTH", None)

    def _handle_request(self, request):
        server = self.server
        self._start_request(request)
        # Closing is decided now and may only get stricter while we answer.
        self.closing = not request.keep_alive or self.draining or request.upgrade
        environ = self.environ = self._environ_for(request)

        result = None
        try:
            result = server.application(environ, self.start_response)
            if self.upgraded:
                self.closing = True
            else:
                self._write_result(result)
        except _ClientGone:
            self.closing = True
        except Exception as exc:
            self._app_failed(exc)
            _forget_traceback(exc)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    self.server.log_error("error closing the response iterable\n%s",
                                          "".join(traceback.format_exception(exc)))
                    _forget_traceback(exc)
                    self.closing = True
            result = None
        server.log_access(self)
        wsgi_input = self.input
        if not self.closing:
            # Our own stream: the app may have replaced or wrapped environ["wsgi.input"].
            self._finish_request_body(wsgi_input)
        wsgi_input._handler = None      # Input._detach, inlined: this runs per request
        if self.draining and not self.reader.in_request:
            # Nothing of a next request has been read: close now.  (One already read is
            # served, with Connection: close -- unless this response announced the close.)
            self.closing = True

    def _app_failed(self, exc):
        self.closing = True
        body_error = self._body_error
        if body_error is not None:
            # The app only failed because the request body was bad; that is the client's fault.
            if not self.headers_sent and body_error.status is not None:
                self.status = f"{body_error.status} {_REASONS.get(body_error.status, '')}"
                self._answer_error(body_error.status)
            return
        self.server.log_error("error in WSGI application for %s %r\n%s",
                              self.request.method, self.request.target,
                              "".join(traceback.format_exception(exc)))
        if not self.headers_sent:
            # Never send the traceback: it may hold secrets.
            self.status = "500 Internal Server Error"
            try:
                self._send(_simple_response(500))
            except _ClientGone:
                pass

    def _finish_request_body(self, wsgi_input):
        """Leave the reader at the start of the next request, or decide to close.

        What the application did not read of the body is read and discarded -- at most
        ``max_drain`` bytes within ``drain_timeout`` seconds -- so that the connection can
        serve its next request; a larger or slower rest closes the connection instead."""
        if self._expect_pending:
            # We never said "100 Continue": the client may or may not send the body, so the
            # next bytes cannot be attributed safely.  Close (gevent 25.4.1's fix, #2075).
            self.closing = True
            return
        if wsgi_input.finished:
            return
        server = self.server
        budget = server.max_drain
        length = self.request.content_length
        if length is not None and length - self._body_received > budget:
            self.closing = True
            return
        self._body_deadline = time.monotonic() + server.drain_timeout
        try:
            while True:
                piece = wsgi_input.read(min(RECV_SIZE, budget + 1))
                if not piece:
                    return
                budget -= len(piece)
                if budget < 0:
                    self.closing = True
                    return
        except OSError:
            self.closing = True

    # -- start_response and writing ----------------------------------------------------------------

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None     # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        line = _status_lines.get(status)
        if line is None:
            line = _status_line(status)
        # Apps send the same few header lists over and over: remember each validated and
        # encoded, keyed by its content.  Lists holding unhashable items miss and get checked.
        try:
            block = _header_blocks.get(tuple(headers))
        except TypeError:
            block = None
        if block is None:
            block = _encode_headers(headers)
        self.status = status
        self._status_bytes = line
        self.response_headers = headers
        self._header_block, self._content_length = block
        return self.write

    def _build_head(self, body_length=None):
        """The response head as bytes; ``body_length`` is known when we hold the whole body."""
        request = self.request
        parts = [self._status_bytes, _date.refresh(), self._header_block]
        if self._content_length is None and self._body_allowed_by_status:
            if body_length is not None:
                self._content_length = body_length
                parts.append(b"Content-Length: %d\r\n" % body_length)
            elif request.method != "HEAD":
                if request.version == "HTTP/1.1":
                    self._chunked = True
                    parts.append(b"Transfer-Encoding: chunked\r\n")
                else:
                    self.closing = True     # HTTP/1.0: the body ends when we close
        if self._expect_pending or self.draining:
            # The app answers without having read a body it was offered with "Expect:
            # 100-continue": whether the client sends it anyway is unknowable, so close.
            self.closing = True
        elif not self.input._done and not self.closing:
            # An unread rest of the body larger than we would drain: say now that we close.
            length = request.content_length
            if length is not None and length - self._body_received > self.server.max_drain:
                self.closing = True
        if self.closing:
            parts.append(b"Connection: close\r\n\r\n")
        elif request.version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    @property
    def _body_allowed_by_status(self):
        code = self.status[:3]
        return code != "204" and code != "304" and code[0] != "1"

    def _body_allowed(self):
        return self.request.method != "HEAD" and self._body_allowed_by_status

    def write(self, data):
        """The legacy write() callable returned by start_response."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
        if not self.headers_sent:
            self.headers_sent = True
            head = self._build_head()
            if data and self._body_allowed():
                self._send_body(head, data)
            else:
                self._send(head)
            return
        if data and self._body_allowed():
            self._send_body(b"", data)

    def _send_body(self, head, data):
        """Send ``head`` (may be empty) and ``data`` framed.  A large body is not copied
        into one buffer with its head: that would double the memory a big response costs."""
        if len(data) <= _JOIN_LIMIT:
            self._send(head + self._frame(data) if head else self._frame(data))
        elif self._chunked:
            self._body_sent += len(data)
            self._send(head + b"%x\r\n" % len(data))
            self._send(data)
            self._send(b"\r\n")
        else:
            data = self._frame(memoryview(data))
            if head:
                self._send(head)
            self._send(data)

    def _frame(self, data):
        """Apply chunked framing and enforce the declared Content-Length."""
        sent = self._body_sent + len(data)
        self._body_sent = sent
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        content_length = self._content_length
        if content_length is not None:
            if sent > content_length:
                self.server.log_error("app sent more than its Content-Length (%d) for %r; "
                                      "truncated", content_length, self.request.target)
                self.closing = True
                data = data[:len(data) - (sent - content_length)]
        return data

    def _write_result(self, result):
        if type(result) is FileWrapper and self._try_sendfile(result):
            return
        if (not self.headers_sent and self.status is not None and type(result) in (list, tuple)
                and (len(result) <= 1 or _joinable(result))):
            # The common case: the whole body is in hand.  One sendall, exact Content-Length.
            data = (result[0] if len(result) == 1 else b"".join(result)) if result else b""
            if type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
                data = bytes(data)      # PEP 3333 asks for bytes; gevent takes these too
            self.headers_sent = True
            head = self._build_head(len(data))
            if data and self._body_allowed():
                if len(data) <= _JOIN_LIMIT:
                    self._send(head + self._frame(data))
                else:
                    self._send_body(head, data)
            else:
                self._send(head)
            self._finish_response()
            return
        # A generator may call start_response lazily, before its first item; empty items before
        # the first real one must not commit the headers (PEP 3333).
        write = self.write
        for data in result:
            if data or self.headers_sent:
                write(data)
        self._finish_response()

    def _finish_response(self):
        if self.status is None:
            raise AssertionError("the application did not call start_response")
        if not self.headers_sent:
            self.headers_sent = True
            self._send(self._build_head(0))
        if self._chunked:
            self._send(b"0\r\n\r\n")
        elif (self._content_length is not None and self._body_sent < self._content_length
              and self._body_allowed()):
            self.server.log_error("app sent less than its Content-Length (%d) for %r",
                                  self._content_length, self.request.target)
            self.closing = True

    def _try_sendfile(self, wrapper):
        """Send a FileWrapper of a regular file with os.sendfile; False to iterate."""
        if (self.status is None or self.headers_sent or self.server.ssl_context is not None
                or not hasattr(os, "sendfile")):
            return False
        filelike = wrapper.filelike
        try:
            fileno = filelike.fileno()
            offset = filelike.tell()
            info = os.fstat(fileno)
            sockno = self.sock.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode) or sockno < 0:
            return False
        size = max(0, info.st_size - offset)
        if self._content_length is not None:
            size = min(size, self._content_length)
        self.headers_sent = True
        head = self._build_head(size)
        self._send(head)
        if not self._body_allowed() or not size:
            self._finish_response()
            return True
        timeout = self.server.timeout
        failure = None
        unsupported = False
        remaining = size
        unyielded = 0
        try:
            # No progress for ``timeout`` seconds cuts the client off; a slow but steady
            # reader gets the whole file (socket.sendfile's timeout is a total deadline).
            while remaining > 0:
                try:
                    sent = os.sendfile(sockno, fileno, offset, min(remaining, _SENDFILE_BLOCK))
                except BlockingIOError:
                    wait_writable(sockno, timeout, TimeoutError("timed out"))
                    continue
                except OSError as exc:
                    if remaining == size and exc.errno in _SENDFILE_UNSUPPORTED:
                        exc.__traceback__ = None
                        unsupported = True
                        break
                    raise
                if sent == 0:
                    break       # the file shrank under us; _finish_response notices
                offset += sent
                remaining -= sent
                self._body_sent += sent
                self._written += sent
                unyielded += sent
                if unyielded >= _YIELD_EVERY_SENT and remaining > 0:
                    unyielded = 0
                    _sleep(0)
        except OSError as exc:
            failure = _describe_failure(exc)
        finally:
            try:
                filelike.seek(offset)
            except (AttributeError, OSError, ValueError):
                pass
        if failure is not None:
            self._client_gone(failure)
        if unsupported:
            self._send_file_by_reading(filelike, remaining)
        self._finish_response()
        return True

    def _send_file_by_reading(self, filelike, remaining):
        read = filelike.read
        while remaining > 0:
            data = read(min(remaining, 262144))
            if not data:
                return
            remaining -= len(data)
            self._body_sent += len(data)
            self._send(data)

    # -- upgrades (used by loop.websocket) -------------------------------------------------------

    def take_over(self, head):
        """Send ``head`` (a 101 response) and hand the raw connection to the caller.

        Returns ``(sock, data)``: the socket and the bytes the client already sent past the
        request.  The server will not write to the connection again and closes it when the
        application returns.
        """
        if self.headers_sent or self.upgraded:
            raise RuntimeError("the response has already started")
        if not self.request.upgrade:
            raise RuntimeError("not an upgrade request")
        self.upgraded = True
        self.headers_sent = True
        self.status = "101 Switching Protocols"
        self.closing = True
        self._send(head)
        self._settimeout(None)
        return self.sock, self.reader.upgraded_data or b""


# -- the server ----------------------------------------------------------------------------------

class LoggingLogAdapter:
    """Gives an object with a ``log(level, message)`` method -- a ``logging.Logger``, or any
    logger-like object -- the file-like ``write()`` of a server log (gevent's name): each
    message is logged at ``level`` without its trailing newline.  Every other attribute, set
    or read, is the wrapped object's."""

    def __init__(self, logger, level=logging.INFO):
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "_level", level)

    def write(self, message):
        if message.endswith("\n"):
            message = message[:-1]
        self._logger.log(self._level, message)

    def flush(self):
        pass

    def __getattr__(self, name):
        return getattr(self._logger, name)

    def __setattr__(self, name, value):
        setattr(self._logger, name, value)

    def __delattr__(self, name):
        delattr(self._logger, name)


class _AccessLog:
    """Wraps a logging.Logger or a file-like object; None when disabled."""

    def __init__(self, target, default):
        if target is None or target == "default":
            target = default
        elif (not isinstance(target, (logging.Logger, logging.LoggerAdapter))
              and not hasattr(target, "write") and callable(getattr(target, "log", None))):
            target = LoggingLogAdapter(target)   # logger-like, without a file's write()
        self.target = target
        self.is_logger = isinstance(target, (logging.Logger, logging.LoggerAdapter))

    def enabled(self, level=logging.INFO):
        if self.target is False:
            return False
        return self.target.isEnabledFor(level) if self.is_logger else True

    def write(self, message, level=logging.INFO):
        if self.is_logger:
            self.target.log(level, "%s", message)
        else:
            self.target.write(message + "\n")
            flush = getattr(self.target, "flush", None)
            if flush is not None:
                flush()


class WSGIServer(StreamServer):
    """Serve ``application`` on ``listener``: a socket, ``(host, port)``, ``"host:port"`` or a
    unix socket path.  Every connection is a green thread on a green socket.

    ``spawn`` as for :class:`loop.server.StreamServer`; the default is a pool of
    ``max_connections`` green threads (further connections wait in the listen backlog).  ``log``
    receives one Combined Log Format line per request and ``error_log`` receives errors: each
    may be a ``logging.Logger``, a file-like object, ``False`` to disable, or ``None`` /
    ``"default"`` for the loggers ``loop.pywsgi.access`` and ``loop.pywsgi``.

    Timeouts, in seconds: ``timeout`` (no progress while reading a body or writing a
    response), ``header_timeout`` (a request head, from its first byte), ``keepalive_timeout``
    (idle between requests), ``body_timeout`` plus one second per ``body_min_rate`` bytes
    (all the waiting for one request body; ``None`` for no bound), ``drain_timeout`` (reading
    an unread body of at most ``max_drain`` bytes after the response), ``linger_timeout``
    (waiting for the client to close after we did).  Limits: ``max_request_line``,
    ``max_header_bytes``, ``max_headers``, ``max_body`` (413 above it), ``max_drain``.
    """

    handler_class = WSGIHandler
    #: The type of each request's environ: a plain dict (fastest), or :class:`Environ` /
    #: :class:`SecureEnviron` (or a subclass), settable on the class or the server.
    environ_class = dict
    stop_timeout = 10.0

    def __init__(self, listener, application=None, backlog=None, spawn="default", log=None,
                 error_log=None, handler_class=None, environ=None, ssl_context=None, *,
                 max_connections=1000, header_timeout=10.0, keepalive_timeout=5.0,
                 timeout=60.0, max_request_line=DEFAULT_MAX_REQUEST_LINE,
                 max_header_bytes=DEFAULT_MAX_HEADER_BYTES, max_headers=DEFAULT_MAX_HEADERS,
                 max_body=1 << 30, max_drain=1 << 16, script_name="", body_timeout=30.0,
                 body_min_rate=1024, drain_timeout=2.0, linger_timeout=2.0):
        if spawn == "default" and max_connections:
            spawn = max_connections
        StreamServer.__init__(self, listener, spawn=spawn, backlog=backlog,
                              ssl_context=ssl_context)
        self.application = application
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.timeout = timeout
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self.max_drain = max_drain
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.drain_timeout = drain_timeout
        self.linger_timeout = linger_timeout
        self.script_name = script_name.rstrip("/")
        if handler_class is not None:
            self.handler_class = handler_class
        self.access_log = _AccessLog(log, _access_default)
        self.error_log = _AccessLog(error_log, _error_default)
        #: What the access log is written to (gevent's ``server.log``): the file-like object or
        #: logger given, a logger-like object wrapped in a :class:`LoggingLogAdapter`.
        self.log = self.access_log.target
        self.extra_environ = dict(environ or {})
        #: Handlers of the open connections.
        self._connections = set()
        self._draining = False
        self._server_environ = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def server_address(self):
        return self.address

    def init_socket(self):
        sock = StreamServer.init_socket(self)
        self._server_environ = self._make_server_environ()
        return sock

    def drain_connections(self):
        """Wind every connection down without losing a request (see :meth:`WSGIHandler.drain`):
        what was read is served with ``Connection: close``, connections waiting for a next
        request close without reading it, and connections accepted from now on close
        unread.  :meth:`stop` calls it; it does not close the listener.  The server's hub
        thread only."""
        self._draining = True
        for handler in list(self._connections):
            handler.drain()

    def _begin_stop(self):
        # stop() then waits for the handlers cooperatively (Group.join).
        self.drain_connections()

    def _before_kill(self):
        for handler in list(self._connections):
            request = handler.request
            self.log_error("stop: grace period over, cutting the connection from %s%s",
                           handler.address,
                           f" during {request.method} {request.target.decode('latin-1')!r}"
                           if request is not None else "", level=logging.WARNING)
            _shutdown(handler.sock)

    # -- serving one connection -------------------------------------------------------------------

    def handle(self, sock, address):
        """Serve one accepted connection until it closes (the caller closes the socket)."""
        handler = None
        try:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass    # a unix socket, or a socket-like object without options
            handler = self.handler_class(self, sock, address)
            self._connections.add(handler)
            if self._draining or self._stopping:
                return
            handler.handle()
        except Exception as exc:
            self.log_error("unexpected error serving %s\n%s", address,
                           "".join(traceback.format_exception(exc)))
            _forget_traceback(exc)
        finally:
            if handler is not None:
                self._connections.discard(handler)

    # -- environ -----------------------------------------------------------------------------------

    def _make_server_environ(self):
        address = self.server_address
        if isinstance(address, tuple):
            host, port = address[0], str(address[1])
            # No reverse DNS here (gevent and wsgiref call getfqdn): it can take seconds, and a
            # server must start the same with or without a resolver.  The bound address is what
            # gunicorn reports too; apps wanting the client's view use HTTP_HOST.
            if host in ("", "0.0.0.0", "::"):
                name = socket.gethostname()
            else:
                name = host
        else:
            name, port = str(address), ""
        environ = {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "loop.pywsgi",
            "SERVER_NAME": name,
            "SERVER_PORT": port,
            "SCRIPT_NAME": self.script_name,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.ssl_context is not None else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        environ.update(self.extra_environ)
        return environ

    def _connection_environ(self, address):
        if self._server_environ is None:
            self._server_environ = self._make_server_environ()
        environ = self._server_environ.copy()
        if self.environ_class is not dict:
            environ = self.environ_class(environ)
        if isinstance(address, tuple):
            environ["REMOTE_ADDR"] = address[0]
            environ["REMOTE_PORT"] = str(address[1])
        else:
            environ["REMOTE_ADDR"] = str(address or "")
            environ["REMOTE_PORT"] = ""
        return environ

    # -- logging -----------------------------------------------------------------------------------

    def log_error(self, message, *args, level=logging.ERROR):
        if self.error_log.enabled(level):
            self.error_log.write(message % args if args else message, level)

    def log_access(self, handler):
        if not self.access_log.enabled():
            return
        request = handler.request
        status = handler.status[:3] if handler.status else "-"
        length = handler._body_sent
        self.access_log.write(self.format_access(
            handler.address, request.method, request.target, request.version, status,
            length if length else "-", _header(request, b"referer"),
            _header(request, b"user-agent"), handler.environ.get("REMOTE_USER")))

    def log_access_error(self, handler, status):
        """Log a request refused before the application saw it."""
        if not self.access_log.enabled():
            return
        request = handler.request
        if request is None:     # refused before its head could be parsed: no request line
            line = (handler.address, "-", b"", "", str(status), "-", None, None, None)
        else:
            line = (handler.address, request.method, request.target, request.version,
                    str(status), "-", _header(request, b"referer"),
                    _header(request, b"user-agent"), None)
        self.access_log.write(self.format_access(*line))

    @staticmethod
    def format_access(address, method, target, version, status, length, referer, agent, user):
        """One line of the Combined Log Format."""
        _date.refresh()
        host = address[0] if isinstance(address, tuple) else (address or "-")
        request_line = f"{method} {target.decode('latin-1')} {version}" if target else "-"
        return (f'{host} - {user or "-"} [{_date.log}] "{_escape(request_line)}" {status} '
                f'{length} "{_escape(referer or "-")}" "{_escape(agent or "-")}"')


def _header(request, lower_name):
    for name, value in request.headers:
        if name.lower() == lower_name:
            return value.decode("latin-1")
    return None


def _escape(text):
    # Keep one request on one line, whatever the client sent.
    if '"' in text or "\\" in text or not text.isprintable():
        return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return text


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


# -- command line --------------------------------------------------------------------------------

def _load_app(spec):
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    app = module
    for part in (attribute or "application").split("."):
        app = getattr(app, part)
    return app


def main(argv=None):
    """``python -m loop.pywsgi module:app --bind HOST:PORT``."""
    parser = argparse.ArgumentParser(prog="python -m loop.pywsgi", description="Serve a WSGI app.")
    parser.add_argument("app", help="module:attribute of the WSGI application")
    parser.add_argument("--bind", "-b", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain")
    parser.add_argument("--keyfile", help="private key for --certfile")
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--keepalive-timeout", type=float, default=5.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="cut a client that makes no progress for this long")
    parser.add_argument("--graceful-timeout", type=float, default=10.0,
                        help="on SIGTERM or SIGINT, how long requests in flight may take")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.path.insert(0, os.getcwd())
    app = _load_app(args.app)
    context = None
    if args.certfile:
        # Deferred: ssl is missing from a Python built without OpenSSL, and only --certfile
        # needs it.
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    server = WSGIServer(args.bind, app, ssl_context=context, max_connections=args.max_connections,
                        keepalive_timeout=args.keepalive_timeout,
                        header_timeout=args.header_timeout, timeout=args.timeout,
                        log=False if args.no_access_log else None)
    server.init_socket()
    host, port = server.server_address[:2]
    scheme = "https" if context else "http"
    _error_default.warning("loop.pywsgi serving %s on %s://%s:%s", args.app, scheme, host, port)
    # SIGTERM (what service managers and container runtimes send) stops as gracefully as
    # SIGINT: stop accepting, let requests in flight finish, close idle connections.
    signal_handler(signal.SIGTERM, server.stop, args.graceful_timeout)
    try:
        server.serve_forever(stop_timeout=args.graceful_timeout)
    except KeyboardInterrupt:
        server.stop(timeout=args.graceful_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
