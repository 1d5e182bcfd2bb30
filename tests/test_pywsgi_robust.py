"""loop.pywsgi under hostile and unlucky clients: huge and slow request bodies, slow and
vanishing readers, and graceful stops that race with requests.  Real clients on real sockets;
a scenario that could hang or leak runs its server in a child interpreter."""
import hashlib
import io
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

import loop

from wsgi_helpers import Client, connect, server_process, serving, SRC

pytestmark = pytest.mark.timeout(90)

# The start of every child server: an app is defined after it, then SERVE(app, **options).
PREAMBLE = """
import gc, json, os, sys, threading, time, weakref
import loop
from loop.pywsgi import WSGIServer, WSGIHandler

def SERVE(app, **options):
    options.setdefault("log", False)
    server = WSGIServer(("127.0.0.1", 0), app, **options)
    server.init_socket()
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()
    return server
"""


def http_get(address, path="/", timeout=10):
    with socket.create_connection(address, timeout=timeout) as sock:
        client = Client(sock)
        client.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return client.read_response()


# -- item: request bodies are read in linear time, without stalling other connections ----------

def test_huge_body_does_not_stall_other_connections():
    # Reading a body used to copy the whole buffer for every piece (quadratic) without ever
    # waiting for the socket, so the process served nobody else meanwhile.
    code = PREAMBLE + """
def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        answer = hashlib.sha256(body).hexdigest().encode()
    else:
        answer = b"pong"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer]
import hashlib
SERVE(app)
"""
    size = 48 << 20
    block = os.urandom(1 << 20)
    body = block * (size // len(block))
    expected = hashlib.sha256(body).hexdigest()
    with server_process(code) as server:
        result = {}

        def upload():
            with server.connect(timeout=60) as sock:
                client = Client(sock)
                client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
                client.send(body)
                result["response"] = client.read_response()

        uploader = threading.Thread(target=upload)
        uploader.start()
        latencies = []
        while True:     # GETs while the upload goes on (it takes well under a second now)
            start = time.monotonic()
            assert http_get(server.address, timeout=60).body == b"pong"
            latencies.append(time.monotonic() - start)
            if not uploader.is_alive() or len(latencies) >= 50:
                break
        uploader.join(60)
        assert not uploader.is_alive()
    assert result["response"].body.decode() == expected
    # A concurrency check with a wide margin: the old server answered after the whole upload.
    assert latencies and max(latencies) < 3.0, latencies


def _reference_reads(body, operations):
    stream = io.BytesIO(body)
    return [_apply(stream, op) for op in operations]


def _apply(stream, op):
    kind, size = op
    if kind == "read":
        return stream.read(size)
    if kind == "readline":
        return stream.readline(size)
    if kind == "readlines":
        return b"|".join(stream.readlines(size))
    return b"".join(stream)     # "iterate": the rest, line by line


def _random_operations(rng):
    operations = []
    for _ in range(400):
        kind = rng.choice(["read", "read", "readline", "readline", "readlines"])
        size = rng.choice([-1, 0, 1, 2, 7, 100, 4095, 65536, 70000, 300000]) \
            if kind != "readlines" else rng.choice([-1, 0, 5000, 100000])
        if size == -1 and kind != "readline" and rng.random() < 0.8:
            size = rng.randint(1, 9000)
        operations.append((kind, size))
    operations.append(("iterate", None))
    return operations


@pytest.mark.parametrize("chunked", [False, True])
def test_every_read_style_matches_a_file(chunked):
    # read(n), readline(n), readlines(hint) and iteration, mixed at random over a body with
    # lines of every length (some far longer than a socket read), must return exactly what
    # io.BytesIO returns for the same calls.
    rng = random.Random(1234 + chunked)
    lines = []
    for _ in range(3000):
        length = rng.choice([0, 1, 5, 80, 1000, 70000, 300000]) if rng.random() < 0.3 else \
            rng.randint(0, 200)
        lines.append(bytes(rng.getrandbits(7) | 1 for _ in range(min(length, 64))) *
                     (length // 64 + 1))
    body = b"\n".join(line[:200000] for line in lines)
    operations = _random_operations(rng)

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        results = [_apply(stream, op) for op in operations]
        digest = [hashlib.sha256(r).hexdigest() for r in results]
        payload = json.dumps(digest).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload]

    expected = [hashlib.sha256(r).hexdigest() for r in _reference_reads(body, operations)]
    with serving(app) as server, connect(server, timeout=30) as sock:
        client = Client(sock)
        if chunked:
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            position = 0
            while position < len(body):
                size = rng.choice([1, 10, 1000, 65536, 200000])
                piece = body[position:position + size]
                client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                position += size
            client.send(b"0\r\n\r\n")
        else:
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
                        + body)
        response = client.read_response()
    assert response.status == 200
    assert json.loads(response.body) == expected


# -- item: a graceful stop never runs a request and throws its response away ------------------

def test_stop_racing_a_next_request_runs_it_only_if_it_answers_it():
    # A kept-alive connection whose next request arrives just as the server stops: either it
    # is served (and the response says Connection: close) or it is never run and the client
    # sees the connection close with no response.  The old stop shut such a connection down
    # for writing while the request was already in the kernel: the app ran it, the response
    # was lost.
    for attempt in range(12):
        ran = []
        control = {}

        def app(environ, start_response):
            path = environ["PATH_INFO"]
            if path == "/charge":
                ran.append(environ["QUERY_STRING"])
                body = b"charged"
            elif path == "/stop":
                # Put the next request into connection A's kernel buffer, then stop at once,
                # before the hub has had a chance to see A readable.
                control["a"].sendall(b"POST /charge?%d HTTP/1.1\r\nHost: t\r\n"
                                     b"Content-Length: 0\r\n\r\n" % attempt)
                loop.spawn(control["server"].stop, 5)
                body = b"stopping"
            else:
                body = b"first"
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]

        with serving(app) as server:
            control["server"] = server
            a = connect(server)
            a_client = Client(a)
            a_client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            first = a_client.read_response()
            assert first.body == b"first" and not first.closes
            control["a"] = a
            with connect(server) as b:
                b_client = Client(b)
                b_client.send(b"GET /stop HTTP/1.1\r\nHost: t\r\n\r\n")
                assert b_client.read_response().body == b"stopping"
                assert b_client.at_eof()
            a.settimeout(10)
            try:
                second = a_client.read_response()
            except (EOFError, ConnectionResetError):
                second = None
            a.close()
            deadline = time.monotonic() + 10
            while not server._stopped_event.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        if second is None:
            assert ran == [], f"attempt {attempt}: the app ran a request it did not answer"
            assert a_client.buffer == b"", a_client.buffer
        else:
            # Served (before or after the stop began); the connection then closes.
            assert ran == [str(attempt)]
            assert second.body == b"charged"


def test_stop_lets_a_pipelined_request_go_unrun_after_connection_close():
    entered = threading.Event()
    ran = []

    def app(environ, start_response):
        ran.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            loop.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done " + environ["PATH_INFO"].encode()]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"POST /charge HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert entered.wait(5)
        stopper = threading.Thread(target=server.stop, args=(5,))
        stopper.start()
        response = client.read_response()
        assert response.body == b"done /slow"
        assert response.closes      # tells the client the pipelined request was not served
        assert client.at_eof()
        stopper.join(10)
    assert ran == ["/slow"]


def test_stop_serves_a_pipelined_request_read_after_a_keep_alive_response():
    # The stop begins after the first response's head went out without Connection: close,
    # and the next request is already in the server's buffer: it is served, with close.
    started = threading.Event()
    ran = []

    def app(environ, start_response):
        ran.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/stream":
            return _stream(started)
        return [b"charged"]

    def _stream(started):
        yield b"part one;"
        started.set()
        loop.sleep(0.5)
        yield b"part two"

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"POST /charge HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert started.wait(5)
        stopper = threading.Thread(target=server.stop, args=(5,))
        stopper.start()
        first = client.read_response()
        assert first.body == b"part one;part two" and not first.closes
        second = client.read_response("POST")
        assert second.body == b"charged" and second.closes
        assert client.at_eof()
        stopper.join(10)
    assert ran == ["/stream", "/charge"]


def test_stop_serves_a_request_whose_head_is_half_read():
    # The head had started to arrive when the stop began: the server has read part of it, so
    # it finishes reading it and serves it, with Connection: close.
    ran = []

    def app(environ, start_response):
        ran.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served"]

    with serving(app) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response().body == b"served"
        client.send(b"GET /second HTTP/1.1\r\nHo")
        time.sleep(0.3)     # the server has read the first half
        stopper = threading.Thread(target=server.stop, args=(5,))
        stopper.start()
        time.sleep(0.3)
        client.send(b"st: t\r\n\r\n")
        response = client.read_response()
        assert response.body == b"served" and response.closes
        assert client.at_eof()
        stopper.join(10)
    assert ran == ["/first", "/second"]


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory):
    pytest.importorskip("cryptography.x509")
    from tls_helpers import make_certificate
    certfile, keyfile = make_certificate(tmp_path_factory.mktemp("tls"))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)
    return server_context, ssl.create_default_context(cafile=certfile)


@pytest.mark.parametrize("tls", [False, True])
def test_response_survives_closing_with_unread_request_bytes(tls, request):
    # The server refuses a large body it will not read and closes.  Closing a socket with
    # unread bytes sends a reset, which destroys the part of the response still queued; the
    # server must end with a FIN and let the client read its whole answer.
    answer = b"no uploads here\n" * 131072     # 2 MB: much of it is still queued at close
    options = {}
    if tls:
        server_context, client_context = request.getfixturevalue("tls_contexts")
        options["ssl_context"] = server_context

    def app(environ, start_response):
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [answer]

    body = b"z" * (4 << 20)
    for _ in range(3):
        with serving(app, **options) as server, socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            raw.settimeout(10)
            raw.connect(server.server_address[:2])
            sock = client_context.wrap_socket(raw, server_hostname="localhost") if tls else raw
            client = Client(sock)
            client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                        % len(body))
            sent = 0
            try:
                while sent < 256 * 1024:
                    sock.sendall(body[sent:sent + 65536])
                    sent += 65536
            except OSError:
                pass
            time.sleep(0.3)     # the server has answered and decided to close meanwhile
            response = client.read_response()
            assert response.status == 403 and response.body == answer
            assert response.closes


# -- item: nothing of a failed connection stays reachable -------------------------------------

LEAK_SERVER = PREAMBLE + """
gc.disable()
alive = weakref.WeakSet()

class Handler(WSGIHandler):
    def __init__(self, *args):
        super().__init__(*args)
        alive.add(self)

import tracemalloc
tracemalloc.start(1)

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/report":
        report = json.dumps({"handlers": len(alive) - 1,
                             "memory": tracemalloc.get_traced_memory()[0]}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [report]
    if path == "/upload":
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"stored"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    big = bytes(4 << 20)
    if path == "/chunks":
        return [big[:1 << 20]] * 4 + [b"end"]
    return [big]

context = None
if len(sys.argv) > 2:
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
SERVE(app, handler_class=Handler, timeout=0.5, error_log=False, ssl_context=context)
"""


class _Connector:
    """Plain or TLS connections to a child server."""

    def __init__(self, server, client_context=None):
        self.server = server
        self.context = client_context

    def __call__(self, rcvbuf=None):
        raw = socket.socket()
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(10)
        raw.connect(self.server.address)
        if self.context is None:
            return raw
        return self.context.wrap_socket(raw, server_hostname="localhost")

    def get(self, path):
        with self() as sock:
            client = Client(sock)
            client.send(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return client.read_response()


def _reset(sock):
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    raw.close()
    sock.close()


def _slow_readers(connect_to, path, count, reset):
    socks = []
    for _ in range(count):
        sock = connect_to(rcvbuf=4096)
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        socks.append(sock)
    time.sleep(0.2 if reset else 1.5)     # a reset comes mid-write; otherwise the write times out
    for sock in socks:
        if reset:
            _reset(sock)
        else:
            sock.close()


def _half_uploads(connect_to, count):
    for _ in range(count):
        sock = connect_to()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8000000\r\n\r\n")
        sock.sendall(bytes(3 << 20))
        _reset(sock)


@pytest.mark.parametrize("tls", [False, True])
def test_failed_connections_are_freed_without_the_garbage_collector(tls, request):
    # With the cyclic collector off, everything of a connection whose client timed out or
    # reset must be freed by reference counting alone: the handler, its frames and the body.
    args, client_context = [], None
    if tls:
        from tls_helpers import make_certificate
        pytest.importorskip("cryptography.x509")
        certfile, keyfile = make_certificate(request.getfixturevalue("tmp_path"))
        args = [str(certfile), str(keyfile)]
        client_context = ssl.create_default_context(cafile=certfile)
    with server_process(LEAK_SERVER, args=args) as server:
        connect_to = _Connector(server, client_context)
        for _ in range(3):    # warm up caches and allocator pools
            connect_to.get(b"/")
        baseline = json.loads(connect_to.get(b"/report").body)
        for round_ in range(3):
            _slow_readers(connect_to, b"/", 8, reset=False)
            _slow_readers(connect_to, b"/", 8, reset=True)
            _slow_readers(connect_to, b"/chunks", 8, reset=False)
            _half_uploads(connect_to, 4)
        deadline = time.monotonic() + 15
        while True:     # the last handlers notice their clients are gone
            after = json.loads(connect_to.get(b"/report").body)
            if after["handlers"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert after["handlers"] == 0, after
    # 72 failed 4 MB responses and 12 uploads cut after 3 MB: a leak of even one would show.
    assert after["memory"] - baseline["memory"] < 2 << 20, (baseline, after)


# -- item: timeouts on a working connection mean "no progress" ----------------------------------

SLOW_DOWNLOAD_SERVER = PREAMBLE + """
import tempfile
from loop.pywsgi import FileWrapper
SIZE = 8 << 20
path = tempfile.mktemp()
with open(path, "wb") as f:
    f.write(bytes(range(256)) * (SIZE // 256))
data = open(path, "rb").read()

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    if environ["PATH_INFO"] == "/file":
        return FileWrapper(open(path, "rb"))
    if environ["PATH_INFO"] == "/chunked":
        return iter([data[:SIZE // 2], data[SIZE // 2:]])
    return [data]

try:
    SERVE(app, timeout=2.0, error_log=sys.stderr)
finally:
    os.unlink(path)
"""


def _read_slowly(sock, total_expected, rate, limit):
    """Read at about ``rate`` bytes/s; return everything read (the head included)."""
    chunks = []
    got = 0
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            data = sock.recv(16384)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        chunks.append(data)
        got += len(data)
        if got >= total_expected:
            break
        ahead = got / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/file", "/single", "/chunked"])
def test_slow_but_steady_reader_gets_the_whole_download(path):
    # The server's timeout is 2 s; the download takes about 5 s at 1.6 MB/s.  Progress never
    # stops for long, so nothing may be cut (the old timeout was one deadline per write).
    size = 8 << 20
    with server_process(SLOW_DOWNLOAD_SERVER) as server:
        with server.connect(timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                         b"Connection: close\r\n\r\n")
            raw = _read_slowly(sock, size + 200, rate=1.6e6, limit=40)
    head, _, body = raw.partition(b"\r\n\r\n")
    if path == "/chunked":
        body = _dechunk(body)
    assert len(body) == size, (len(body), server.stderr[-2000:])
    assert body == bytes(range(256)) * (size // 256)
    assert "cut" not in server.stderr


def _dechunk(data):
    out = []
    while data:
        line, _, data = data.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)


@pytest.mark.parametrize("path", ["/file", "/single"])
def test_stalled_reader_is_cut_and_logged(path):
    with server_process(SLOW_DOWNLOAD_SERVER) as server:
        with server.connect(timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(4.0)     # read nothing: after 2 s without progress the server cuts
            sock.settimeout(10)
            raw = _read_slowly(sock, 1 << 30, rate=1e9, limit=10)
        assert len(raw) < 8 << 20
        http_get(server.address)        # still serving; and its log is written by now
    assert "took no data for 2.0 s" in server.stderr, server.stderr[-2000:]


# -- item: bodies and drains have a total time bound --------------------------------------------

TRICKLE_SERVER = PREAMBLE + """
def app(environ, start_response):
    if environ["PATH_INFO"] == "/read":
        environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"answered"]

SERVE(app, timeout=10.0, error_log=sys.stderr, **json.loads(sys.argv[1]))
"""


def _trickle(sock, interval, limit):
    """Send a byte every ``interval`` s until the server closes; return the seconds it took."""
    start = time.monotonic()
    sock.settimeout(0.01)
    received = b""
    while time.monotonic() - start < limit:
        try:
            sock.sendall(b"x")
        except OSError:
            break
        try:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(interval)
    return time.monotonic() - start, received


def test_trickled_body_is_cut_after_its_total_time():
    # One byte every 0.2 s keeps each read within the 10 s timeout for ever; the body as a
    # whole gets body_timeout (1.5 s) plus a second per body_min_rate (1000) bytes.
    options = json.dumps({"body_timeout": 1.5, "body_min_rate": 1000})
    with server_process(TRICKLE_SERVER, args=[options]) as server:
        with server.connect(timeout=10) as sock:
            sock.sendall(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
            elapsed, received = _trickle(sock, 0.2, limit=20)
        assert elapsed < 8, elapsed
        assert received.startswith(b"HTTP/1.1 408 "), received
        http_get(server.address)
    assert "too slow sending a request body" in server.stderr, server.stderr[-2000:]


def test_unread_trickled_body_is_not_drained_for_ever():
    # The app answers without reading the (small) body; draining it so the connection can be
    # reused must not wait on a client that sends a byte every 0.2 s.
    with server_process(TRICKLE_SERVER, args=["{}"]) as server:
        with server.connect(timeout=10) as sock:
            sock.sendall(b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
            elapsed, received = _trickle(sock, 0.2, limit=20)
        assert received.startswith(b"HTTP/1.1 200 OK") and b"answered" in received
        assert elapsed < 10, elapsed    # drain_timeout (2 s) and linger (2 s) at most
        http_get(server.address)
    assert "drain of an unread body" in server.stderr, server.stderr[-2000:]


def test_large_unread_body_closes_at_once():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"answered"]

    with serving(app, max_drain=1000) as server, connect(server) as sock:
        client = Client(sock)
        client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n" + b"x" * 10)
        response = client.read_response()
        assert response.body == b"answered" and response.closes
        start = time.monotonic()
        assert client.at_eof()
        assert time.monotonic() - start < 4


# -- item: python -m loop.pywsgi drains on SIGTERM ----------------------------------------------

def test_command_line_sigterm_lets_requests_in_flight_finish(tmp_path):
    (tmp_path / "slowapp.py").write_text(
        "import loop\n"
        "def app(environ, start_response):\n"
        "    loop.sleep(1.0)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'finished']\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "loop.pywsgi", "slowapp:app", "--bind", f"127.0.0.1:{port}",
         "--no-access-log"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        clients = []
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            clients.append(sock)
        time.sleep(0.4)     # all ten are in the app now
        process.send_signal(signal.SIGTERM)
        for sock in clients:
            with sock:
                response = Client(sock).read_response()
                assert response.body == b"finished" and response.closes
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_stop_grace_period_cut_is_logged():
    from test_pywsgi import make_logger
    logger, messages = make_logger("test.pywsgi.stopcut")

    def app(environ, start_response):
        loop.sleep(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"never"]

    with serving(app, error_log=logger) as server, connect(server) as sock:
        sock.sendall(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        server.stop(timeout=0.5)
        assert Client(sock).at_eof()
    assert any("grace period over" in m and "/stuck" in m for m in messages), messages


def test_drain_connections_without_stopping():
    # The connection-level drain a process manager uses before it stops the server itself:
    # idle connections close unread, requests in flight finish with Connection: close, and
    # connections accepted afterwards close without being read.
    entered = threading.Event()
    ran = []

    def app(environ, start_response):
        ran.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            loop.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app) as server:
        idle = connect(server)
        idle_client = Client(idle)
        idle_client.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        assert not idle_client.read_response().closes
        busy = connect(server)
        busy_client = Client(busy)
        busy_client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(5)
        server._call_in_hub_thread(server.drain_connections)
        assert idle_client.at_eof()
        response = busy_client.read_response()
        assert response.body == b"ok" and response.closes
        assert busy_client.at_eof()
        late = connect(server)
        late.sendall(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Client(late).at_eof()
        for sock in (idle, busy, late):
            sock.close()
    assert ran == ["/first", "/slow"]
