"""A strict, sans-IO HTTP/1.1 request reader.

Design
======

This module turns bytes into HTTP request events and does nothing else: it never touches a
socket, a clock or a thread.  The WSGI server (:mod:`loop.pywsgi`) owns the IO, feeds whatever it
received into :class:`RequestReader` and pulls events back out.  Keeping the protocol free of IO
is what lets it import and run without the C extension or a hub, and it is what makes the parser
testable byte by byte: the fuzz tests feed it arbitrary input and every possible split of a
valid request without opening a single connection.  The PROXY protocol header that may precede
a connection's first request is read the same way, by :mod:`loop._protocols.proxy`.

Why httptools
-------------
We parse with httptools, the Python binding of llhttp (the parser inside Node.js), rather than
with h11.  Both are well kept; both are strict.  The difference is speed: llhttp is generated C
and parses a typical browser request several times faster than h11's pure-Python state machine
(``python bench/http_parser.py`` prints the numbers; on the reference machine this reader, checks
included, parsed 4x as many requests per second as h11 with a fresh parser per request and about
10x on a keep-alive connection, where h11 must also serialise a response before it will parse
the next request).  A WSGI server spends a large share of a hello-world request in
parsing, so the parser sets the ceiling of the whole server.

llhttp in its default (non-lenient) mode already rejects most of what smuggling attacks are made
of: Transfer-Encoding together with Content-Length, duplicate or malformed Content-Length,
obs-fold, bare CR and bare LF, control characters in names and values, malformed chunk sizes and
chunk extensions, and trailers with invalid fields.  We never enable its "dangerous leniencies".

What we add on top
------------------
llhttp is a general parser: it accepts things a *server* should not.  The checks below are ours,
made in the callbacks so that an offending request is refused before any application code sees
it:

* only HTTP/1.0 and HTTP/1.1 (505 otherwise; llhttp happily parses ``HTTP/2.0`` and ``HTTP/0.9``);
* Transfer-Encoding must be exactly one ``chunked`` coding (501 for anything else, such as
  ``gzip, chunked`` which llhttp accepts), and never on an HTTP/1.0 request (400);
* exactly one Host header on HTTP/1.1 (400);
* request targets in origin form (``/path?query``), absolute form (``http://host/path``) or
  ``*`` for OPTIONS, without a fragment; CONNECT is refused (we are not a proxy);
* an Upgrade request may not carry a body: llhttp would hand the body bytes over as "upgraded"
  data, which is exactly the kind of framing disagreement smuggling relies on;
* trailer fields are consumed and discarded, never merged into the request headers (the
  CVE-2025-58068 class of bug);
* size limits: request line (414), header section (431), body (413) -- the parser itself has no
  limits at all.

Every refusal is a :class:`ProtocolError` carrying the status code to answer with.  After a
protocol error the connection's framing can no longer be trusted, so the only correct reaction
is to answer (if the peer is still there) and close; the reader enforces this by refusing to
parse anything after an error.

Events
------
:meth:`RequestReader.next_event` returns, in order for each request: one :class:`Request`, zero
or more ``bytes`` body pieces, then :data:`END_OF_MESSAGE`.  It returns :data:`NEED_DATA` when
it needs more input and :data:`CONNECTION_CLOSED` after a clean EOF between requests.  A
pipelined client's requests come out one after another; events are queued, so a protocol error
in a later request is raised only after the earlier requests' events have been consumed.

Byte searches on the per-request path use ``data.find(b"x")`` rather than ``b"x" in data``:
CPython first tries the operand as an integer and builds and clears a TypeError before it
searches, two to eight times the cost of the search itself on 3.11-3.13 (about 7,000
instructions per request in all, measured with ``bench/profile_request.py``).
"""

from __future__ import annotations

import re
from collections import deque

import httptools

try:
    # The common request head read in C (src/protocols/http_head.c); a strict subset of what
    # llhttp and the checks below accept, so without it every request takes the llhttp path.
    from loop._protocols._http_head import scan as _scan_head
except ImportError:
    _scan_head = None

__all__ = [
    "RequestReader", "Request", "ProtocolError",
    "NEED_DATA", "END_OF_MESSAGE", "CONNECTION_CLOSED",
    "DEFAULT_MAX_REQUEST_LINE", "DEFAULT_MAX_HEADER_BYTES", "DEFAULT_MAX_HEADERS",
]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
END_OF_MESSAGE = _Sentinel("END_OF_MESSAGE")
CONNECTION_CLOSED = _Sentinel("CONNECTION_CLOSED")

DEFAULT_MAX_REQUEST_LINE = 8190      # the same as Apache's and gunicorn's default
DEFAULT_MAX_HEADER_BYTES = 65536     # sum of all field lines
DEFAULT_MAX_HEADERS = 100


class ProtocolError(Exception):
    """The request cannot be served; answer ``status`` and close the connection.

    ``status`` is an HTTP status code (400, 413, 414, 431, 501, 505), or ``None`` when the peer
    went away in the middle of a request and there is nobody left to answer.
    """

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def __repr__(self):
        return f"ProtocolError({self.status!r}, {self.detail!r})"


class Request:
    """The head of one request.  Header names and values are raw ``bytes``; names keep the
    client's case, values are stripped of surrounding whitespace; trailers are not included."""

    __slots__ = ("method", "target", "version", "headers", "content_length", "chunked",
                 "keep_alive", "expect_continue", "upgrade", "cgi")

    def __init__(self, method, target, version, headers, content_length, chunked, keep_alive,
                 expect_continue, upgrade, cgi=None):
        self.method = method                    # str, e.g. "GET"
        self.target = target                    # bytes, as sent
        self.version = version                  # "HTTP/1.1" or "HTTP/1.0"
        self.headers = headers                  # list of (name, value) bytes pairs
        self.content_length = content_length    # int or None
        self.chunked = chunked                  # bool
        self.keep_alive = keep_alive            # what the client asked for
        self.expect_continue = expect_continue  # "Expect: 100-continue" was sent
        self.upgrade = upgrade                  # a Connection: upgrade request (e.g. WebSocket)
        # The request's own CGI variables (REQUEST_METHOD ... SERVER_PROTOCOL, HTTP_*), as a
        # WSGI server adds them to its environ, when the C scanner read the head; else None.
        self.cgi = cgi

    @property
    def has_body(self):
        return self.chunked or bool(self.content_length)

    def __repr__(self):
        return f"<Request {self.method} {self.target!r} {self.version}>"


# Header names whose handling affects framing or connection state; everything else is passed
# through untouched, so the per-header fast path is a single set lookup.
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"connection", b"host",
                              b"expect"))

# llhttp reports errors as text only.  These fragments pick the status for the errors where
# 400 is not the right answer; everything else is a 400.
_PARSER_ERROR_STATUS = (
    ("can't be present with", 400),   # Transfer-Encoding and Content-Length, either order
    ("Transfer-Encoding", 501),       # "Invalid `Transfer-Encoding` header value", ...
    ("Invalid HTTP version", 505),
    ("Content-Length overflow", 413),
)

# A well-formed method token that llhttp does not know is "not implemented"; garbage is 400.
_METHOD_TOKEN = re.compile(rb"[A-Z]{1,20} ")
_ABSOLUTE_FORM = re.compile(rb"https?://[^/?#]+", re.IGNORECASE)


class RequestReader:
    """Feed bytes with :meth:`feed`, take events with :meth:`next_event`.

    ``max_body`` (bytes, ``None`` for no limit) bounds each request's body, both the declared
    Content-Length and the sum of chunk sizes.
    """

    def __init__(self, *, max_request_line=DEFAULT_MAX_REQUEST_LINE,
                 max_header_bytes=DEFAULT_MAX_HEADER_BYTES, max_headers=DEFAULT_MAX_HEADERS,
                 max_body=None):
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self._events = deque()
        self._error = None
        self._eof = False
        # Bytes that followed an Upgrade request; they belong to the new protocol.
        self.upgraded_data = None
        self._reset_message()
        #: Bytes of a request have been fed and its message is not complete yet.
        self.in_message = False
        # Bytes fed while a head was incomplete; bounds memory against a never-ending head even
        # when no callback fires (e.g. one enormous header value arriving slowly).
        self._head_bytes = 0
        self._head_limit = max_request_line + max_header_bytes + 4096
        # Bytes fed after a head that brought no body data and no whole trailer field (feed()).
        self._stalled_bytes = 0
        # Bytes still to come of a body whose head the C scanner read (_take_plain_heads).
        self._plain_body_left = 0

    def _reset_message(self):
        self._url_parts = []
        self._url_length = 0
        self._headers = []
        self._header_bytes = 0
        self._headers_done = False
        self._body_bytes = 0
        self._content_length = None
        self._te = None
        self._host_count = 0
        self._connection = b""
        self._expect = None

    # -- feeding --------------------------------------------------------------------------------

    def feed(self, data):
        """Give the reader bytes received from the peer; ``b""`` means EOF."""
        if self._error is not None or self._eof or self.upgraded_data is not None:
            return
        if not data:
            self._eof = True
            if self.in_message:
                self._fail(ProtocolError(None, "connection closed in the middle of a request"))
            else:
                self._events.append(CONNECTION_CLOSED)
            return
        if self._plain_body_left:
            data = self._take_plain_body(data)
            if data is None:
                return
        if not self.in_message and _scan_head is not None:
            data = self._take_plain_heads(data)
            if data is None:
                return
        in_head = not self._headers_done
        if not in_head:
            headers = self._headers                     # a new list per message
            progress = self._body_bytes + self._header_bytes
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded_data = bytes(data[exc.args[0]:]) if exc.args else b""
            return
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, ProtocolError):
                self._fail(context)
            else:   # a bug of ours; do not let it look like a parse result
                self._fail(ProtocolError(400, f"internal parser callback error: {context!r}"))
            return
        except httptools.HttpParserInvalidMethodError:
            status = 501 if _METHOD_TOKEN.match(data) else 400
            self._fail(ProtocolError(status, "unknown or invalid method"))
            return
        except httptools.HttpParserError as exc:
            self._fail(self._translate(exc))
            return
        if not in_head:
            # Past the head, bytes that bring neither body data nor a whole trailer field are a
            # chunk-size line or a trailer field still arriving, which the parser keeps in
            # memory until it ends: bounded like a head, so a field that never ends cannot
            # pin the server's memory.
            if (self._headers is headers and self.in_message
                    and self._body_bytes + self._header_bytes == progress):
                self._stalled_bytes += len(data)
                if self._stalled_bytes > self._head_limit:
                    self._fail(ProtocolError(431, "chunk line or trailer section too large"))
            else:
                self._stalled_bytes = 0
        elif self.in_message and not self._headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > self._head_limit:
                if self._url_length and not self._headers and data.find(b"\n") < 0:
                    self._fail(ProtocolError(414, "request line too long"))
                else:
                    self._fail(ProtocolError(431, "request header section too large"))

    def _take_plain_heads(self, data):
        """Queue the requests at the start of ``data`` that the C scanner reads (see
        src/protocols/http_head.c), with their Content-Length bodies; return the rest for
        llhttp, or None if nothing is left.  llhttp is between messages here, so it starts
        the rest afresh; a body that is still arriving is counted off by _take_plain_body."""
        offset = 0
        limit = len(data)
        events = self._events
        while True:
            head = _scan_head(data, offset, self.max_request_line, self.max_header_bytes,
                              self.max_headers, self.max_body)
            if head is None:
                break
            offset, method, target, version, headers, keep_alive, length, cgi = head
            events.append(Request(method, target, version, headers, length, False, keep_alive,
                                  False, False, cgi))
            if length:
                end = offset + length
                if end > limit:
                    if offset < limit:
                        events.append(bytes(data[offset:]))
                    self._plain_body_left = end - limit
                    self.in_message = True
                    return None
                events.append(bytes(data[offset:end]))
                offset = end
            events.append(END_OF_MESSAGE)
            if offset == limit:
                return None
        return data[offset:] if offset else data

    def _take_plain_body(self, data):
        """The next bytes of a body whose head the scanner read: queue them, and the end of
        the message once Content-Length bytes came; return what follows, or None."""
        left = self._plain_body_left
        size = len(data)
        if size < left:
            self._plain_body_left = left - size
            self._events.append(bytes(data))
            return None
        self._events.append(bytes(data[:left]))
        self._events.append(END_OF_MESSAGE)
        self._plain_body_left = 0
        self.in_message = False
        return data[left:] if size > left else None

    def next_event(self):
        """Return the next event, :data:`NEED_DATA`, or raise the pending :class:`ProtocolError`."""
        if self._events:
            event = self._events.popleft()
            if event.__class__ is ProtocolError:
                self._events.appendleft(event)   # keep raising it
                # A fresh exception each time: the stored one must not collect tracebacks,
                # whose frames would refer back to this reader (a reference cycle).
                raise ProtocolError(event.status, event.detail)
            return event
        return NEED_DATA

    @property
    def error(self):
        return self._error

    @property
    def in_request(self):
        """Bytes of a request not yet fully taken out have been fed: a head in pieces, or
        events (a pipelined request) waiting in the queue."""
        return self.in_message or bool(self._events)

    def close(self):
        """Forget the connection: the parser (which refers back to this reader) and anything
        still queued.  Nothing is parsed afterwards."""
        self._eof = True
        self._parser = None
        self._events.clear()

    def skip_end_of_message(self):
        """Consume an END_OF_MESSAGE that is next in line; True if there was one.

        Lets a server finish a body-less request without going through its body reader."""
        events = self._events
        if events and events[0] is END_OF_MESSAGE:
            events.popleft()
            return True
        return False

    def pending_body_error(self):
        """The error that will end the current message's body, if it is already known.

        A server calls this after taking a :class:`Request`: when the whole (bad) body arrived
        with the head, the request can be refused before any application code runs.  An error
        that belongs to a later, pipelined request is not reported here.
        """
        if self._error is None:
            return None
        for event in self._events:
            if event is END_OF_MESSAGE:
                return None
            if event.__class__ is ProtocolError:
                return event
        return None

    def _fail(self, error):
        # Kept and raised again later: drop where it was raised (its frames hold this reader and
        # the data fed, a reference cycle) and what it was raised from.
        error.__traceback__ = None
        error.__context__ = None
        self._error = error
        self._events.append(error)

    @staticmethod
    def _translate(exc):
        message = str(exc)
        for fragment, status in _PARSER_ERROR_STATUS:
            if fragment in message:
                return ProtocolError(status, message)
        return ProtocolError(400, message)

    # -- httptools callbacks --------------------------------------------------------------------
    # Raising ProtocolError in a callback stops llhttp; feed() turns it into the error event.

    def on_message_begin(self):
        self.in_message = True
        self._head_bytes = 0

    def on_url(self, part):
        self._url_length += len(part)
        if self._url_length > self.max_request_line:
            raise ProtocolError(414, "request target too long")
        self._url_parts.append(part)

    def on_header(self, name, value):
        # Called once per field, so it does as little as possible; the fields are checked in
        # one pass in on_headers_complete.  Memory stays bounded meanwhile by the head-bytes
        # check in feed().
        if self._headers_done:
            # A trailer field.  llhttp has already checked its syntax; we consume and drop it so
            # that it can never be mistaken for a request header (CVE-2025-58068) -- but it still
            # counts against the header budget.
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > self.max_header_bytes:
                raise ProtocolError(431, "trailer section too large")
            return
        self._headers.append((name, value))

    def _check_headers(self):
        headers = self._headers
        if len(headers) > self.max_headers:
            raise ProtocolError(431, "too many header fields")
        size = 4 * len(headers)
        for index in range(len(headers)):
            name, value = headers[index]
            size += len(name) + len(value)
            # llhttp keeps trailing whitespace (SP or HTAB before CRLF); RFC 9112 says to
            # strip it.  Leading whitespace is already skipped.
            if value and value[-1] in b" \t":
                value = value.rstrip(b" \t")
                headers[index] = (name, value)
            lowered = name.lower()
            if lowered in _FRAMING_HEADERS:
                self._note_framing_header(lowered, value)
        if size > self.max_header_bytes:
            raise ProtocolError(431, "request header section too large")

    def _note_framing_header(self, name, value):
        if name == b"content-length":
            # llhttp has rejected duplicates, lists and non-digits already; this is a second
            # line of defence that costs nothing on the common path.
            if self._content_length is not None:
                raise ProtocolError(400, "duplicate Content-Length")
            if not value.isdigit():
                raise ProtocolError(400, "invalid Content-Length")
            self._content_length = int(value)
        elif name == b"transfer-encoding":
            if self._te is not None:
                raise ProtocolError(501, "Transfer-Encoding given more than once")
            if value.lower() != b"chunked":
                raise ProtocolError(501, "only Transfer-Encoding: chunked is implemented")
            self._te = value
        elif name == b"connection":
            self._connection = (self._connection + b"," + value) if self._connection else value
        elif name == b"host":
            self._host_count += 1
            if self._host_count > 1:
                raise ProtocolError(400, "more than one Host header")
        else:   # expect
            if value.lower() == b"100-continue":
                self._expect = True
            else:
                raise ProtocolError(417, "unsupported Expect")

    def on_headers_complete(self):
        self._check_headers()
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            version = "HTTP/1.1"
            if self._host_count != 1:
                raise ProtocolError(400, "HTTP/1.1 request without Host")
        elif version == "1.0":
            version = "HTTP/1.0"
            if self._te is not None:
                # RFC 9112 6.1: framing of a 1.0 message with Transfer-Encoding is faulty.
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        else:
            raise ProtocolError(505, f"HTTP version {version} not supported")

        method = parser.get_method().decode("ascii")
        target = b"".join(self._url_parts) if len(self._url_parts) != 1 else self._url_parts[0]
        self._check_target(method, target)

        chunked = self._te is not None
        content_length = self._content_length
        if chunked and content_length is not None:
            raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
        max_body = self.max_body
        if max_body is not None and content_length is not None and content_length > max_body:
            raise ProtocolError(413, "request body too large")

        connection = self._connection.lower()
        if version == "HTTP/1.1":
            keep_alive = not connection or b"close" not in _tokens(connection)
        else:
            keep_alive = bool(connection) and b"keep-alive" in _tokens(connection)
        upgrade = bool(connection) and b"upgrade" in _tokens(connection) and any(
            name.lower() == b"upgrade" for name, _ in self._headers)
        if upgrade and (chunked or content_length):
            raise ProtocolError(400, "an Upgrade request may not have a body")

        self._events.append(Request(
            method, target, version, self._headers, content_length, chunked, keep_alive,
            bool(self._expect) and version == "HTTP/1.1", upgrade))
        self._headers_done = True
        self._header_bytes = 0      # from here on it counts trailer bytes

    def on_body(self, data):
        self._body_bytes += len(data)
        max_body = self.max_body
        if max_body is not None and self._body_bytes > max_body:
            raise ProtocolError(413, "request body too large")
        self._events.append(data)

    def on_message_complete(self):
        self._events.append(END_OF_MESSAGE)
        self._reset_message()
        self.in_message = False

    @staticmethod
    def _check_target(method, target):
        if method == "CONNECT":
            raise ProtocolError(400, "CONNECT is not supported by this server")
        first = target[:1]
        if first == b"/":
            if target[:2] == b"//":
                # Not absolute form, but a path whose first segment is empty: legal, and some
                # apps rely on it.  Nothing to check.
                pass
        elif target == b"*":
            if method != "OPTIONS":
                raise ProtocolError(400, "asterisk-form target outside OPTIONS")
        elif not _ABSOLUTE_FORM.match(target):
            raise ProtocolError(400, "invalid request target")
        if target.find(b"#") >= 0:
            raise ProtocolError(400, "fragment in request target")


def _tokens(value):
    """The comma-separated tokens of an already lower-cased header value."""
    if value.find(b",") < 0:
        return (value.strip(b" \t"),)
    return [token.strip(b" \t") for token in value.split(b",")]


def split_target(target):
    """Split a request target into (path, query) bytes; absolute form loses scheme and host."""
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        match = _ABSOLUTE_FORM.match(target)
        target = target[match.end():] or b"/"
    path, sep, query = target.partition(b"?")
    return path, query
