"""Hostile requests against a live server: each must be refused with the right status, close the
connection, leave the server healthy, and never execute a request smuggled inside another.

The catalogue covers the request-smuggling classes behind gevent's CVE-2023-41419 (lenient
chunk-size parsing, Content-Length trusted next to Transfer-Encoding, unconsumed trailers) and
eventlet's CVE-2025-58068 (trailer fields not consumed, so the rest of the "body" was parsed as
a new request), plus the RFC 9112 rules a strict server must enforce.
"""
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsgi_helpers import Client, connect, get, serving

pytestmark = pytest.mark.timeout(60)

H = b"Host: example.com\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"

HOSTILE = [
    # -- framing: Content-Length and Transfer-Encoding -------------------------------------------
    ("TE and CL", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("CL and TE", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("duplicate CL, same", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("duplicate CL, different", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("CL list", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("CL plus sign", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    ("CL negative", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("CL hex", POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    ("CL empty", POST + b"Content-Length: \r\n\r\n", 400),
    ("CL inner space", POST + b"Content-Length: 1 2\r\n\r\n", 400),
    ("CL underscore", POST + b"Content-Length: 1_0\r\n\r\n", 400),
    ("CL overflow", POST + b"Content-Length: 99999999999999999999999999\r\n\r\n", 413),
    ("CL over body limit", POST + b"Content-Length: 2000000\r\n\r\n", 413),
    ("TE gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("TE identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("TE gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("TE chunked, gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 501),
    ("TE chunked twice", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 501),
    ("TE chunked list twice", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501),
    ("TE xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE obs-fold", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE vertical tab", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("TE space before colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    # -- chunks (CVE-2023-41419 class) -------------------------------------------------------------
    ("chunk size 0x", CHUNKED + b"0x3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size plus", CHUNKED + b"+3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size minus", CHUNKED + b"-3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size underscore", CHUNKED + b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", 400),
    ("chunk size leading space", CHUNKED + b" 3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size trailing space", CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size empty", CHUNKED + b"\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size overflow", CHUNKED + b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size non-hex", CHUNKED + b"3g\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk ext bare LF", CHUNKED + b"3;a\nb\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk ext bare CR", CHUNKED + b"3;a\rb\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk ext NUL", CHUNKED + b"3;a\x00b\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk ext ctl", CHUNKED + b"3;a=\x01\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size bare LF", CHUNKED + b"3\nabc\r\n0\r\n\r\n", 400),
    ("chunk data too long", CHUNKED + b"3\r\nabcdef\r\n0\r\n\r\n", 400),
    ("chunk data bare LF", CHUNKED + b"3\r\nabc\n0\r\n\r\n", 400),
    ("last chunk bare LF", CHUNKED + b"3\r\nabc\r\n0\n\r\n", 400),
    ("last chunk no final CRLF, bare LF", CHUNKED + b"0\r\n\n", 400),
    # -- trailers (CVE-2025-58068 class) -----------------------------------------------------------
    ("trailer bare LF", CHUNKED + b"0\r\nX-T: 1\n\r\n", 400),
    ("trailer obs-fold", CHUNKED + b"0\r\nX-T: 1\r\n continued\r\n\r\n", 400),
    ("trailer is a request line", CHUNKED + b"0\r\n" + SMUGGLED, 400),
    ("trailer Content-Length", CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer NUL", CHUNKED + b"0\r\nX-T: a\x00b\r\n\r\n", 400),
    ("trailer too large", CHUNKED + b"0\r\n" + b"X-T: " + b"a" * 70000 + b"\r\n\r\n", 431),
    # -- line endings, folding, field syntax -------------------------------------------------------
    ("bare LF request line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: example.com\n\n", 400),
    ("bare LF after header", b"GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", 400),
    ("bare CR in header", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("bare CR line end", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold with tab", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    ("whitespace before first header", b"GET / HTTP/1.1\r\n " + H + b"\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"X : y\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("CTL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("NUL in name", b"GET / HTTP/1.1\r\n" + H + b"X\x00Y: v\r\n\r\n", 400),
    ("space in name", b"GET / HTTP/1.1\r\n" + H + b"X Y: v\r\n\r\n", 400),
    ("parenthesis in name", b"GET / HTTP/1.1\r\n" + H + b"X(Y): v\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": v\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\n" + H + b"Host: evil.com\r\n\r\n", 400),
    ("unknown expectation", b"GET / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\n\r\n", 417),
    # -- request line and target -----------------------------------------------------------------
    ("target without slash", b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority target on GET", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk on GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment in target", b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CTL in target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("NUL in target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("8-bit in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("unknown method", b"BREW / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("garbage method", b"G\x00T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("HTTP/0.9", b"GET /\r\n\r\n", 505),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version garbage", b"GET / HTTP/1.1x\r\n" + H + b"\r\n", 400),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("TLS on plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    # -- sizes -------------------------------------------------------------------------------------
    ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header too large", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("too many headers", b"GET / HTTP/1.1\r\n" + H + b"".join(
        b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    # -- upgrades --------------------------------------------------------------------------------
    ("upgrade with a body", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\n"
     b"Upgrade: websocket\r\nContent-Length: 44\r\n\r\n" + SMUGGLED, 400),
]


class Counter:
    """An app that reads the body, then records the request as executed."""

    def __init__(self):
        self.paths = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read()
        with self.lock:
            self.paths.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture(scope="module")
def server():
    app = Counter()
    with serving(app, max_body=1_000_000, header_timeout=5) as server:
        server.counter = app
        yield server


@pytest.mark.parametrize("raw,status", [(raw, status) for _, raw, status in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_request_is_refused(server, raw, status):
    before = len(server.counter.paths)
    with connect(server) as sock:
        client = Client(sock)
        try:
            client.send(raw)
        except OSError:
            pass    # the server may refuse before we finish sending a large request
        response = client.read_response()
        assert response.status == status, response
        assert response.closes
        assert client.at_eof()
    assert len(server.counter.paths) == before, "a refused request reached the application"
    assert get(server).status == 200        # the server is still healthy


# -- smuggling: the hidden request must never run --------------------------------------------------

SMUGGLING = [
    # CL.TE / TE.CL: a front end using the other header would forward SMUGGLED as a new request
    ("CL.TE", POST + b"Content-Length: 49\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("TE.CL", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
     b"2c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
    # gevent < 23.9: int(size, 16) accepted these, desynchronising the body
    ("chunk size +0", CHUNKED + b"+0\r\n\r\n" + SMUGGLED),
    ("chunk size 0x0", CHUNKED + b"0x0\r\n\r\n" + SMUGGLED),
    ("chunk size with underscore", CHUNKED + b"0_2c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
    ("chunk size with space", CHUNKED + b"0 \r\n\r\n" + SMUGGLED),
    ("chunk ext with LF", CHUNKED + b"0;\n" + SMUGGLED),
    # eventlet < 0.40.3: trailers left unread and parsed as the next request
    ("trailer smuggle", CHUNKED + b"0\r\n" + SMUGGLED),
    ("trailer smuggle after field", CHUNKED + b"0\r\nX-T: 1\r\n" + SMUGGLED),
    # line-ending and folding desync
    ("bare LF hides CL", b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 44\r\n\r\n" + SMUGGLED),
    ("obs-fold hides TE", POST + b"X: y\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n"
     b"\r\n0\r\n\r\n" + SMUGGLED),
    ("Connection: close then more", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n" +
     SMUGGLED),
    ("non-websocket upgrade", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\n"
     b"Upgrade: h2c\r\n\r\n" + SMUGGLED),
]


class Ignorer(Counter):
    """Counts requests but answers without reading the body: the server must drain it."""

    def __call__(self, environ, start_response):
        with self.lock:
            self.paths.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.mark.parametrize("app_class", [Counter, Ignorer], ids=["app reads", "app ignores body"])
@pytest.mark.parametrize("raw", [raw for _, raw in SMUGGLING], ids=[n for n, _ in SMUGGLING])
def test_smuggled_request_never_runs(raw, app_class):
    app = app_class()
    with serving(app, header_timeout=2, keepalive_timeout=2) as server:
        with connect(server) as sock:
            client = Client(sock)
            client.send(raw)
            responses = []
            try:
                while True:
                    responses.append(client.read_response())
            except (EOFError, ConnectionResetError):
                pass
        assert get(server).status == 200
    assert "/smuggled" not in app.paths
    assert len(responses) <= 1


def test_unread_100_continue_body_is_not_executed():
    """The body of an Expect: 100-continue request the app never read is not a request
    (gevent 25.4.1's fix): the server closes instead of parsing it."""
    paths = []

    def app(environ, start_response):     # answers without reading the body
        paths.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(POST + b"Content-Length: 44\r\nExpect: 100-continue\r\n\r\n")
        response = client.read_response()
        assert response.status == 200 and response.closes
        try:
            client.send(SMUGGLED)
        except OSError:
            pass
        assert client.at_eof()
    assert paths == ["/"]


def test_valid_trailers_are_discarded_and_pipelining_continues():
    seen = []

    def app(environ, start_response):
        seen.append((environ["PATH_INFO"], environ["wsgi.input"].read(),
                     environ.get("HTTP_X_TRAILER")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST /first HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n0\r\nX-Trailer: sneaky\r\n\r\n"
                    b"GET /second HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        assert client.read_response().status == 200
        assert client.read_response().status == 200
        assert client.at_eof()
    assert seen == [("/first", b"abc", None), ("/second", b"", None)]


# -- fuzzing the live server ---------------------------------------------------------------------

_pieces = st.sampled_from([
    b"GET ", b"POST ", b"/", b"/a?b", b" HTTP/1.1", b" HTTP/1.0", b"\r\n", b"\n", b"\r", b"Host: x",
    b"Content-Length: ", b"Transfer-Encoding: chunked", b"0", b"5", b"ff", b";ext", b"abcde",
    b": ", b" ", b"\t", b"\x00", b"Expect: 100-continue", b"Connection: close",
    b"Connection: keep-alive", b"\r\n\r\n",
])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(_pieces, st.binary(max_size=8)), max_size=30))
def test_fuzz_server_never_crashes_or_desyncs(server, pieces):
    raw = b"".join(pieces)
    with connect(server, timeout=3) as sock:
        client = Client(sock)
        try:
            client.send(raw)
            sock.shutdown(1)    # EOF: the server must not wait for more
        except OSError:
            pass
        try:
            while True:
                response = client.read_response()
                assert 200 <= response.status < 600
        except (EOFError, ConnectionResetError):
            pass
        except OSError:
            pass            # a timeout: the server is waiting on an incomplete body; fine
    assert "/smuggled" not in server.counter.paths
    assert get(server).status == 200
