"""loop.pywsgi over real sockets on 127.0.0.1: a green server in its own OS thread and hub,
plain blocking clients in the test thread."""
import datetime
import io
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from wsgiref.validate import validator

import pytest

from tls_helpers import make_certificate

import loop

from loop.pywsgi import WSGIHandler
from wsgi_helpers import Client, connect, get, roundtrip, serving

pytestmark = pytest.mark.timeout(30)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


def read_all(stream):
    """Read a whole body the way wsgiref.validate allows (it insists on a size argument)."""
    pieces = []
    while True:
        piece = stream.read(65536)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


def echo_body(environ, start_response):
    body = read_all(environ["wsgi.input"])
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


class ListLogger(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def make_logger(name):
    logger = logging.getLogger(name)
    logger.handlers[:] = []
    handler = ListLogger()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, handler.messages


# -- basics and environ ----------------------------------------------------------------------------

def test_hello_world_validated():
    with serving(validator(hello)) as server:
        response = get(server)
    assert response.status == 200
    assert response.body == b"Hello, world!"
    assert response.header("date")


def test_single_item_list_gets_content_length():
    with serving(hello) as server:
        response = get(server)
    assert response.header("content-length") == "13"
    assert response.header("transfer-encoding") is None


def test_environ():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [read_all(environ["wsgi.input"])]

    with serving(validator(app), script_name="/mount") as server:
        raw = (b"POST /mount/caf%C3%A9/a%2Fb?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 4\r\nX-Multi: a\r\nX-Multi: b\r\n"
               b"X_Forwarded_For: spoofed\r\nCookie: a=1\r\nCookie: b=2\r\n"
               b"Connection: close\r\n\r\nbody")
        response = roundtrip(server, raw)
        port = server.server_address[1]
    assert response.body == b"body"
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == "/mount"
    # PEP 3333: PATH_INFO is percent-decoded bytes, presented as latin-1 str
    assert seen["PATH_INFO"] == "/caf\u00c3\u00a9/a/b"
    assert seen["QUERY_STRING"] == "x=1&y=%20"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SERVER_PORT"] == str(port)
    assert seen["SERVER_NAME"]
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert int(seen["REMOTE_PORT"]) > 0
    assert seen["CONTENT_TYPE"] == "text/plain"
    assert seen["CONTENT_LENGTH"] == "4"
    assert "HTTP_CONTENT_TYPE" not in seen
    assert seen["HTTP_HOST"] == "example.com"
    assert seen["HTTP_X_MULTI"] == "a, b"
    assert seen["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_FORWARDED_FOR" not in seen          # underscore names are dropped
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.input_terminated"] is True
    assert seen["RAW_URI"] == "/mount/caf%C3%A9/a%2Fb?x=1&y=%20"


def test_absolute_form_target():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return hello(environ, start_response)

    with serving(app) as server:
        response = roundtrip(server, b"GET http://example.com/p/q?z HTTP/1.1\r\nHost: example.com"
                                     b"\r\nConnection: close\r\n\r\n")
    assert response.status == 200
    assert seen["PATH_INFO"] == "/p/q"
    assert seen["QUERY_STRING"] == "z"


def test_tcp_nodelay_is_set():
    flags = []

    class Spy(WSGIHandler):
        def handle(self):
            flags.append(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super().handle()

    with serving(hello, handler_class=Spy) as server:
        assert get(server).status == 200
    assert flags and flags[0] != 0


# -- keep-alive and pipelining --------------------------------------------------------------------

def test_keep_alive_http11():
    with serving(validator(hello)) as server, connect(server) as sock:
        client = Client(sock)
        for _ in range(3):
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = client.read_response()
            assert response.status == 200 and not response.closes
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert client.read_response().closes
        assert client.at_eof()


def test_keep_alive_http10():
    with serving(hello) as server, connect(server) as sock:
        client = Client(sock)
        for _ in range(2):
            client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = client.read_response()
            assert response.status == 200
            assert response.header("connection").lower() == "keep-alive"
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert client.read_response().status == 200
        assert client.at_eof()


def test_pipelined_requests_answered_in_order():
    def app(environ, start_response):
        body = read_all(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode() + b":" + body]

    with serving(validator(app)) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                    b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nde\r\n0\r\n\r\n"
                    b"GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        bodies = [client.read_response().body for _ in range(4)]
        assert client.at_eof()
    assert bodies == [b"/1:", b"/2:abc", b"/3:de", b"/4:"]


# -- request bodies ----------------------------------------------------------------------------------

def test_chunked_request_body_read_styles():
    results = {}

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        results["line"] = stream.readline()
        results["part"] = stream.read(3)
        results["lines"] = stream.readlines()
        results["rest"] = read_all(stream)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    body = b"first line\nabcsecond\nthird\nlast"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5])
                      for i in range(0, len(body), 5)) + b"0\r\n\r\n"
    with serving(validator(app)) as server:
        response = roundtrip(server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                     b"\r\nConnection: close\r\n\r\n" + chunks)
    assert response.status == 200
    assert results == {"line": b"first line\n", "part": b"abc",
                       "lines": [b"second\n", b"third\n", b"last"], "rest": b""}


def test_input_iteration_and_readline_size():
    lines = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        lines.append(stream.readline(4))
        lines.extend(stream)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with serving(validator(app)) as server:
        response = roundtrip(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n"
                                     b"Connection: close\r\n\r\nabcdefgh\nij\nklmn")
    assert response.status == 200
    assert lines == [b"abcd", b"efgh\n", b"ij\n", b"klmn"]


def test_big_bodies_both_ways():
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with serving(echo_body) as server, connect(server, timeout=20) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload))
        client.send(payload)
        response = client.read_response()
        assert response.body == payload
        # and chunked, in uneven pieces
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 100_003):
            piece = payload[i:i + 100_003]
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        client.send(b"0\r\n\r\n")
        assert client.read_response().body == payload


def test_body_over_limit_is_413():
    with serving(echo_body, max_body=1000) as server:
        response = roundtrip(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        assert response.status == 413 and response.closes
        with connect(server) as sock:
            client = Client(sock)
            client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                        b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n" + b"x" * 512 + b"\r\n")
            response = client.read_response()
            assert response.status == 413
            assert client.at_eof()


def test_unread_body_is_drained_and_connection_reused():
    with serving(hello) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        assert client.read_response().status == 200
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
        assert response.status == 200 and not response.closes


def test_unread_body_over_drain_limit_closes():
    with serving(hello, max_drain=1000) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                    b"x" * 100000)
        assert client.read_response().status == 200
        assert client.at_eof()


# -- Expect: 100-continue --------------------------------------------------------------------------

def test_100_continue_sent_when_app_reads():
    with serving(validator(echo_body)) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        assert client._line() == b"HTTP/1.1 100 Continue"
        assert client._line() == b""
        client.send(b"hello")
        response = client.read_response()
        assert response.body == b"hello" and not response.closes


def test_100_continue_not_sent_when_app_does_not_read():
    with serving(hello) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        client.interim = None
        response = client.read_response()
        assert client.interim is None
        assert response.status == 200
        # The body's fate is unknown, so the connection must not be reused.
        assert response.closes
        assert client.at_eof()


# -- responses ----------------------------------------------------------------------------------------

def test_chunked_response_without_content_length():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        yield b""
        yield b"two"

    with serving(validator(app)) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == b"one two"
        # HTTP/1.0: no chunking, the body ends at close
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = client.read_response()
        assert response.header("transfer-encoding") is None
        assert response.body == b"one two"


def test_write_callable():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]

    with serving(validator(app)) as server:
        response = get(server)
    assert response.body == b"written returned"


def test_lazy_start_response_in_generator():
    def app(environ, start_response):
        yield b""
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        yield b"lazy"

    with serving(app) as server:
        response = get(server)
    assert response.status == 200 and response.body == b"lazy"


def test_iterable_close_is_called():
    closed = threading.Event()

    class Body:
        def __iter__(self):
            yield b"body"

        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    with serving(validator(app)) as server:
        assert get(server).body == b"body"
    assert closed.wait(2)


def test_head_has_no_body():
    with serving(hello) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response("HEAD")
        assert response.header("content-length") == "13"
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # framing intact afterwards
        assert client.read_response().body == b"Hello, world!"


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(status):
    def app(environ, start_response):
        start_response(status, [])
        return [b"this must not be sent"]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
        assert response.status == int(status[:3])
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") is None
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert client.read_response().status == int(status[:3])
        assert client.at_eof()


def test_content_length_from_app_is_respected_and_enforced():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12", b"345", b"6789"]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_response().body == b"12345"
        assert client.at_eof()      # the app lied about its length: no reuse


def test_file_wrapper_sendfile_and_iterated():
    data = os.urandom(300_000)
    with tempfile.NamedTemporaryFile() as named:
        named.write(data)
        named.flush()

        def app(environ, start_response):
            file = open(named.name, "rb")       # closed by the server through the wrapper
            file.seek(1000)
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return environ["wsgi.file_wrapper"](file, 8192)

        # Unwrapped: the server sees its own FileWrapper and uses sendfile.
        with serving(app) as server, connect(server) as sock:
            client = Client(sock)
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = client.read_response()
            assert response.header("content-length") == str(len(data) - 1000)
            assert response.body == data[1000:]
            client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.read_response("HEAD").header("content-length") == str(len(data) - 1000)
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.read_response().body == data[1000:]
        # Behind wsgiref.validate the wrapper is hidden: the server iterates it.
        with serving(validator(app)) as server:
            response = get(server)
            assert response.body == data[1000:]


def test_file_wrapper_on_non_file_falls_back():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 20000), 1000)

    with serving(app) as server:
        response = get(server)
    assert response.body == b"x" * 20000


# -- errors ----------------------------------------------------------------------------------------

def test_app_error_is_500_without_traceback():
    logger, messages = make_logger("test.pywsgi.errors")

    def app(environ, start_response):
        raise RuntimeError("secret-token-42")

    with serving(app, error_log=logger) as server:
        response = get(server)
    assert response.status == 500
    assert b"secret" not in response.body and b"Traceback" not in response.body
    assert any("secret-token-42" in m and "Traceback" in m for m in messages)


def test_app_error_after_headers_closes_connection():
    logger, messages = make_logger("test.pywsgi.errors2")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("late failure")

    with serving(app, error_log=logger) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(EOFError):
            client.read_response()      # the chunked body is never terminated
    assert any("late failure" in m for m in messages)


@pytest.mark.parametrize("headers", [
    [("Connection", "close")],
    [("Transfer-Encoding", "chunked")],
    [("X-Bad", "a\r\nInjected: yes")],
    [("Bad Name", "x")],
    [("X-Bad", "nul\x00")],
])
def test_invalid_app_headers_give_500(headers):
    logger, _ = make_logger("test.pywsgi.errors3")

    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]

    with serving(app, error_log=logger) as server:
        response = get(server)
    assert response.status == 500
    assert response.header("injected") is None


def test_start_response_exc_info_replaces_headers():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("x")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"sorry"]

    with serving(validator(app)) as server:
        response = get(server)
    assert response.status == 503 and response.body == b"sorry"


# -- logging ---------------------------------------------------------------------------------------

COMBINED = re.compile(
    r'^(?P<host>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) '
    r'(?P<size>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$')


def test_access_log_combined_format():
    logger, messages = make_logger("test.pywsgi.access")
    with serving(hello, log=logger) as server:
        get(server, "/path?q=1", b"Referer: http://ref/\r\nUser-Agent: tester/1.0\r\n")
        roundtrip(server, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                          b"Content-Length: 2\r\n\r\n")
    match = COMBINED.match(messages[0])
    assert match, messages[0]
    assert match["host"] == "127.0.0.1"
    assert match["request"] == "GET /path?q=1 HTTP/1.1"
    assert match["status"] == "200" and match["size"] == "13"
    assert match["referer"] == "http://ref/" and match["agent"] == "tester/1.0"
    datetime.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z")
    match = COMBINED.match(messages[1])
    assert match and match["status"] == "400"


def test_access_log_to_file_object():
    stream = io.StringIO()
    with serving(hello, log=stream) as server:
        get(server)
    assert COMBINED.match(stream.getvalue().strip())


# -- timeouts, limits, stop ---------------------------------------------------------------------

def test_header_timeout_slowloris():
    with serving(hello, header_timeout=0.5) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            for _ in range(20):
                time.sleep(0.1)
                client.send(b"X-Slow: 1\r\n")      # trickling bytes must not extend the deadline
        except OSError:
            pass
        response = client.read_response()
        assert response.status == 408
        assert client.at_eof()
        assert time.monotonic() - started < 5


def test_idle_new_connection_times_out():
    with serving(hello, header_timeout=0.3) as server, connect(server) as sock:
        assert Client(sock).at_eof(timeout=5)


def test_keepalive_idle_timeout():
    with serving(hello, keepalive_timeout=0.3) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_response().status == 200
        assert client.at_eof(timeout=5)


def test_max_connections_queues_extra_connections():
    with serving(hello, max_connections=1) as server:
        first = connect(server)
        first_client = Client(first)
        first_client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert first_client.read_response().status == 200
        # The only slot is held by the idle keep-alive connection: the second waits.
        second = connect(server, timeout=0.5)
        second_client = Client(second)
        second_client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with pytest.raises(socket.timeout):
            second_client.read_response()
        first.close()
        second.settimeout(5)
        assert second_client.read_response().status == 200
        second.close()


def test_graceful_stop_drains_in_flight_requests():
    entered = threading.Event()

    def slow(environ, start_response):
        entered.set()
        loop.sleep(0.5)     # green: the server's hub keeps running (stop() runs there)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    with serving(slow) as server:
        idle = connect(server)
        busy = connect(server)
        busy_client = Client(busy)
        busy_client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(5)
        stopper = threading.Thread(target=server.stop, args=(5,))
        stopper.start()
        response = busy_client.read_response()
        assert response.body == b"finished" and response.closes
        assert busy_client.at_eof()
        assert Client(idle).at_eof()
        stopper.join(5)
        assert not stopper.is_alive()
        with pytest.raises(OSError):
            c = connect(server, timeout=1)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            Client(c).read_response()
        idle.close()
        busy.close()


# -- SSL ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    pytest.importorskip("cryptography.x509")
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_ssl(certificate):
    certfile, keyfile = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)
    client_context = ssl.create_default_context(cafile=certfile)
    schemes = []

    def app(environ, start_response):
        schemes.append(environ["wsgi.url_scheme"])
        return echo_body(environ, start_response)

    with serving(app, ssl_context=server_context) as server:
        with connect(server) as raw, \
                client_context.wrap_socket(raw, server_hostname="localhost") as sock:
            client = Client(sock)
            for _ in range(2):
                client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecret")
                assert client.read_response().body == b"secret"
        # a plain-text client on the TLS port is dropped without harm
        with connect(server) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.settimeout(5)
            try:
                assert not plain.recv(100).startswith(b"HTTP/1.1 200")
            except ConnectionResetError:
                pass
    assert schemes == ["https", "https"]


# -- command line -------------------------------------------------------------------------------

def test_command_line(tmp_path):
    (tmp_path / "cliapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from the command line']\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.abspath(src), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "loop.pywsgi", "cliapp:app", "--bind", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with sock:
            client = Client(sock)
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert client.read_response().body == b"from the command line"
    finally:
        process.terminate()
        process.communicate(timeout=10)
