"""loop.server.StreamServer, and WSGIServer's green-only behaviour (many idle connections,
stop from a green thread).  Server and clients are green threads of the test's own hub."""
import logging
import os
import socket as stdlib_socket

import pytest

from tls_helpers import make_certificate

import loop
from loop import socket
from loop.event import Event
from loop.pool import Pool
from loop.pywsgi import WSGIServer
from loop.server import StreamServer, parse_address

pytestmark = pytest.mark.timeout(60)


def echo(sock, address):
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def roundtrip(address, payload=b"ping", family=socket.AF_INET):
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(address)
        client.sendall(payload)
        received = b""
        while len(received) < len(payload):
            piece = client.recv(65536)
            if not piece:
                break
            received += piece
        return received


# -- addresses -----------------------------------------------------------------------------

def test_parse_address_forms():
    assert parse_address(("127.0.0.1", 80)) == (socket.AF_INET, ("127.0.0.1", 80))
    assert parse_address(("", 80)) == (socket.AF_INET, ("0.0.0.0", 80))
    assert parse_address(("::1", 80)) == (socket.AF_INET6, ("::1", 80))
    assert parse_address("127.0.0.1:8000") == (socket.AF_INET, ("127.0.0.1", 8000))
    assert parse_address(":8000") == (socket.AF_INET, ("0.0.0.0", 8000))
    assert parse_address("8000") == (socket.AF_INET, ("0.0.0.0", 8000))
    assert parse_address("[::1]:8000") == (socket.AF_INET6, ("::1", 8000))
    assert parse_address("/tmp/x.sock") == (socket.AF_UNIX, "/tmp/x.sock")
    assert parse_address("unix:rel.sock") == (socket.AF_UNIX, "rel.sock")
    with pytest.raises(ValueError):
        parse_address("host:port")


def test_ipv4_tuple_and_properties():
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    try:
        assert server.started
        assert server.server_host == "127.0.0.1" and server.server_port > 0
        assert roundtrip(server.address) == b"ping"
    finally:
        server.stop()
    assert server.closed and not server.started


def test_string_address():
    server = StreamServer("127.0.0.1:0", echo)
    with server:
        assert roundtrip(server.address, b"x" * 100000) == b"x" * 100000


@pytest.mark.skipif(not stdlib_socket.has_ipv6, reason="no IPv6")
def test_ipv6():
    try:
        server = StreamServer(("::1", 0), echo)
        server.init_socket()
    except OSError as exc:
        pytest.skip("cannot bind ::1: %s" % exc)
    with server:
        assert server.address[0] == "::1"
        assert roundtrip(server.address[:2], family=socket.AF_INET6) == b"ping"


def test_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    with StreamServer(path, echo) as server:
        assert server.address == path
        assert roundtrip(path, family=socket.AF_UNIX) == b"ping"
    assert not os.path.exists(path)     # the server that made the file removes it


def test_existing_listening_socket_and_bound_only_socket():
    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with StreamServer(listener, echo) as server:
        assert roundtrip(listener.getsockname()) == b"ping"
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    with StreamServer(bound, echo) as server:
        assert roundtrip(server.address) == b"ping"


def test_handlers_run_concurrently_in_green_threads():
    gate = Event()
    entered = []

    def handle(sock, address):
        entered.append(loop.getcurrent())
        gate.wait(5)
        sock.sendall(b"done")

    with StreamServer(("127.0.0.1", 0), handle) as server:
        clients = [loop.spawn(roundtrip, server.address, b"done") for _ in range(20)]
        while len(entered) < 20:
            loop.sleep(0.01)
        assert len(set(entered)) == 20
        gate.set()
        assert [c.get(timeout=5) for c in clients] == [b"done"] * 20


def test_socket_is_closed_when_handle_returns():
    with StreamServer(("127.0.0.1", 0), lambda sock, address: sock.sendall(b"bye")) as server:
        with socket.create_connection(server.address, timeout=5) as client:
            assert client.recv(10) == b"bye"
            assert client.recv(10) == b""


def test_connection_reads_keep_one_registration_and_close_drops_it():
    hub = loop.get_hub()
    seen = []

    def handle(sock, address):
        fd = sock.fileno()
        while True:
            data = sock.recv(100)
            if not data:
                break
            seen.append(hub._readers.get(fd))
            sock.sendall(data)
        seen.append(fd)

    with StreamServer(("127.0.0.1", 0), handle) as server:
        listener_slot = hub._readers[server.socket.fileno()]
        assert listener_slot.callback is not None  # accepting goes through the hub
        with socket.create_connection(server.address, timeout=5) as client:
            for i in range(5):
                loop.sleep(0.005)  # the handler waits in recv before each message
                client.sendall(b"%d" % i)
                assert client.recv(10) == b"%d" % i
            client.shutdown(socket.SHUT_WR)
            assert client.recv(10) == b""
        loop.sleep(0.05)
        slots, fd = seen[:-1], seen[-1]
        assert len(slots) == 5 and slots[0] is not None
        assert all(slot is slots[0] for slot in slots)  # registered once, kept across waits
        assert fd not in hub._readers and fd not in hub._writers  # closed: forgotten
    assert server.socket.fileno() == -1 and listener_slot not in hub._readers.values()


def test_pool_size_limits_concurrent_connections():
    active = []
    peak = []
    gate = Event()

    def handle(sock, address):
        active.append(1)
        peak.append(len(active))
        gate.wait(5)
        active.pop()
        sock.sendall(b"ok")

    with StreamServer(("127.0.0.1", 0), handle, spawn=3) as server:
        assert isinstance(server.pool, Pool)
        clients = [loop.spawn(roundtrip, server.address, b"ok") for _ in range(10)]
        loop.sleep(0.3)
        assert len(active) == 3             # the rest wait in the listen backlog
        gate.set()
        assert [c.get(timeout=10) for c in clients] == [b"ok"] * 10
        assert max(peak) == 3


def test_stop_lets_handlers_finish_then_kills_the_rest():
    finished = []
    killed = []

    def handle(sock, address):
        try:
            seconds = float(sock.recv(100))
            loop.sleep(seconds)
            finished.append(seconds)
            sock.sendall(b"ok")
        except loop.GreenletExit:
            killed.append(1)
            raise

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    quick = loop.spawn(roundtrip, server.address, b"0.2")
    slow = loop.spawn(roundtrip, server.address, b"30")
    loop.sleep(0.1)
    started = loop._core.originals.monotonic()
    server.stop(timeout=1)
    elapsed = loop._core.originals.monotonic() - started
    assert 0.15 < elapsed < 5
    assert finished == [0.2] and killed == [1]
    assert quick.get(timeout=5) == b"ok"
    assert slow.get(timeout=5) == b""
    with pytest.raises(OSError):
        roundtrip(server.address)


def test_stop_logs_the_connections_it_cuts():
    logged = []

    class Server(StreamServer):
        def log_error(self, message, *args, level=None):
            logged.append((message % args, level))

    def handle(sock, address):
        sock.recv(100)
        loop.sleep(30)

    server = Server(("127.0.0.1", 0), handle)
    server.start()
    clients = [loop.spawn(roundtrip, server.address, b"x") for _ in range(2)]
    loop.sleep(0.2)
    server.stop(timeout=0.2)
    assert [client.get(timeout=5) for client in clients] == [b"", b""]
    assert len(logged) == 1, logged
    message, level = logged[0]
    assert "2 connection(s) still open 0.2 s after stop() began" in message
    assert level == logging.WARNING


def test_close_stops_accepting_but_keeps_connections():
    gate = Event()

    def handle(sock, address):
        gate.wait(5)
        sock.sendall(b"late")

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    client = loop.spawn(roundtrip, server.address, b"late")
    loop.sleep(0.1)
    server.close()
    with pytest.raises(OSError):
        roundtrip(server.address)
    gate.set()
    assert client.get(timeout=5) == b"late"
    server.stop()


def test_a_stopped_server_keeps_its_address_and_refuses_connections():
    # After stop() the listener is closed: a probe to the address the server had must be
    # refused (not fail on the server's own closed socket while looking the address up).
    given = stdlib_socket.socket()
    given.bind(("127.0.0.1", 0))
    given.listen(16)
    built = StreamServer(("127.0.0.1", 0), echo)
    for server in (StreamServer(given, echo), built):
        server.start()
        bound = server.address
        assert bound[1] > 0 and roundtrip(bound) == b"ping"
        server.stop()
        assert server.address == bound
        assert (server.server_host, server.server_port) == bound[:2]
        assert "%s:%s" % bound[:2] in repr(server)
        with pytest.raises(ConnectionRefusedError):
            roundtrip(bound)
    assert given.fileno() == -1     # a given listener is closed with the server, as in gevent


class SpawnFailed(Exception):
    pass


def test_an_error_of_the_spawn_function_goes_to_the_hubs_handle_error(monkeypatch):
    # gevent's convention: an error raised by the spawn function, in the accept callback, is
    # reported with hub.handle_error(context, type, value, tb); the accepted connection is
    # closed and the server goes on accepting.
    hub = loop.get_hub()
    reported = []
    monkeypatch.setattr(hub, "handle_error",
                        lambda context, t, value, tb: reported.append((context, t, value)),
                        raising=False)
    failures = [SpawnFailed("no green thread for you")]

    def spawn(func, *args):
        if failures:
            raise failures.pop()
        return loop.spawn(func, *args)

    with StreamServer(("127.0.0.1", 0), echo, spawn=spawn) as server:
        with socket.create_connection(server.address, timeout=5) as client:
            assert client.recv(10) == b""       # closed by the server, nothing sent
        assert roundtrip(server.address) == b"ping"
    assert len(reported) == 1
    context, t, value = reported[0]
    assert t is SpawnFailed and str(value) == "no green thread for you"
    assert server in context


def test_serve_forever_returns_after_stop_from_another_green_thread():
    server = StreamServer(("127.0.0.1", 0), echo)
    loop.spawn_later(0.2, server.stop)
    runner = loop.spawn(server.serve_forever)
    assert runner.get(timeout=5) is None
    assert server.closed


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_accept_exhaustion_pauses_instead_of_spinning():
    # Out of descriptors: the server must neither crash nor spin; it serves again afterwards.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with StreamServer(("127.0.0.1", 0), echo) as server:
        hoard = []
        try:
            in_use = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 32, hard))
            try:
                while True:
                    hoard.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            os.close(hoard.pop())       # one for the client socket
            probe = stdlib_socket.socket()
            probe.setblocking(False)
            probe.connect_ex(server.address)
            loop.sleep(0.3)             # accept() fails with EMFILE, the server pauses
            probe.close()
        finally:
            for fd in hoard:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        loop.sleep(0.3)
        assert roundtrip(server.address) == b"ping"


def test_tls(tmp_path):
    ssl = pytest.importorskip("ssl")
    certificate = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with StreamServer(("127.0.0.1", 0), echo, ssl_context=context) as server:
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        from loop import ssl as green_ssl
        raw = socket.create_connection(server.address, timeout=5)
        tls = green_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        with tls.wrap_socket(raw) as client:
            client.sendall(b"secret")
            assert client.recv(100) == b"secret"


def _self_signed(tmp_path):
    pytest.importorskip("cryptography.x509")
    return make_certificate(tmp_path)


# -- gevent's StreamServer surface -----------------------------------------------------------

def test_backlog_with_a_socket_is_refused():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        # gevent raises TypeError, loop raised ValueError: both catch it
        with pytest.raises(TypeError):
            StreamServer(listener, echo, backlog=5)
        with pytest.raises(ValueError):
            StreamServer(listener, echo, backlog=5)


def test_stop_and_start_accepting():
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    try:
        assert roundtrip(server.address) == b"ping"
        server.stop_accepting()
        waiting = loop.spawn(roundtrip, server.address, b"later")
        loop.sleep(0.3)
        assert not waiting.ready()              # connected, but left in the backlog
        server.start_accepting()
        assert waiting.get(timeout=5) == b"later"
    finally:
        server.stop()


def test_set_handle_and_repr():
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    try:
        assert "handle=<function echo" in repr(server)

        def shout(sock, address):
            sock.sendall(sock.recv(100).upper())
        server.set_handle(shout)
        assert roundtrip(server.address) == b"PING"
        server.set_handle(server.handle)
        assert "shout at" in repr(server)

        class Server(StreamServer):
            def handle(self, sock, address):
                echo(sock, address)
        own = Server(("127.0.0.1", 0))
        own.set_handle(own.handle)
        assert "handle=<bound method handle of self>" in repr(own)
    finally:
        server.stop()


def test_tls_from_ssl_keywords(tmp_path):
    ssl = pytest.importorskip("ssl")
    certfile, keyfile = _self_signed(tmp_path)
    with pytest.raises(TypeError):
        StreamServer(("127.0.0.1", 0), echo, certfile=certfile, keyfile=keyfile, bogus=1)
    with StreamServer(("127.0.0.1", 0), echo, certfile=certfile, keyfile=keyfile) as server:
        from loop import ssl as green_ssl
        tls = green_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_verify_locations(certfile)
        raw = socket.create_connection(server.address, timeout=5)
        with tls.wrap_socket(raw, server_hostname="localhost") as client:
            client.sendall(b"secret")
            assert client.recv(100) == b"secret"


# -- WSGIServer, green -------------------------------------------------------------------------

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def _get(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"hello"):
        piece = sock.recv(4096)
        if not piece:
            raise ConnectionError("closed")
        data += piece
    return data


def test_wsgi_server_holds_2000_idle_keepalive_connections():
    count = 2000
    server = WSGIServer(("127.0.0.1", 0), hello, log=False, max_connections=count + 10,
                        keepalive_timeout=60, backlog=count)
    server.start()
    clients = []
    try:
        for _ in range(count):
            sock = socket.create_connection(server.address, timeout=10)
            clients.append(sock)
        # Each makes a request, then idles on its kept-alive connection.
        for batch in range(0, count, 200):
            jobs = [loop.spawn(_get, sock) for sock in clients[batch:batch + 200]]
            loop.joinall(jobs, timeout=30, raise_error=True)
        assert len(server._connections) == count
        # Still responsive for newcomers and for the idle ones.
        with socket.create_connection(server.address, timeout=10) as extra:
            assert _get(extra).startswith(b"HTTP/1.1 200")
        assert _get(clients[0]).startswith(b"HTTP/1.1 200")
        started = loop._core.originals.monotonic()
        server.stop(timeout=5)        # idle connections are closed at once
        assert loop._core.originals.monotonic() - started < 5
        assert clients[-1].recv(10) == b""
    finally:
        server.close()
        for sock in clients:
            sock.close()


def test_wsgi_graceful_stop_from_green_thread():
    entered = Event()

    def slow(environ, start_response):
        entered.set()
        loop.sleep(0.3)
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    server = WSGIServer(("127.0.0.1", 0), slow, log=False)
    server.start()
    busy = socket.create_connection(server.address, timeout=5)
    idle = socket.create_connection(server.address, timeout=5)
    getter = loop.spawn(_get, busy)
    entered.wait(5)
    server.stop(timeout=5)
    response = getter.get(timeout=5)
    assert b"Connection: close" in response
    assert idle.recv(10) == b""
    busy.close()
    idle.close()
