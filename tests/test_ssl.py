"""loop.ssl: cooperative TLS, server and client side, with a certificate made at test time."""
import ssl as stdlib_ssl
import time

import pytest

from tls_helpers import make_certificate

import loop
from loop import socket as gsocket
from loop import ssl as gssl
from loop.event import Event

pytestmark = pytest.mark.timeout(60)

cryptography = pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("certs"), days=10)


@pytest.fixture
def contexts(cert_files):
    certfile, keyfile = cert_files
    server = gssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = gssl.create_default_context(cafile=certfile)
    return server, client


def start_echo_server(server_context, handler=None):
    listener = gsocket.create_server(("127.0.0.1", 0))
    tls_listener = server_context.wrap_socket(listener, server_side=True)

    def echo(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def serve():
        while True:
            try:
                conn, _ = tls_listener.accept()
            except OSError:
                return
            loop.spawn(handler or echo, conn)

    return tls_listener, loop.spawn(serve)


def test_classes():
    s = gsocket.socket()
    ctx = gssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = stdlib_ssl.CERT_NONE
    wrapped = ctx.wrap_socket(s)
    assert isinstance(wrapped, stdlib_ssl.SSLSocket) and isinstance(wrapped, gsocket.socket)
    wrapped.close()


def test_client_and_server_roundtrip(contexts):
    server_ctx, client_ctx = contexts
    listener, acceptor = start_echo_server(server_ctx)
    port = listener.getsockname()[1]
    with gsocket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert type(tls) is gssl.SSLSocket
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            payload = b"x" * 300000
            sender = loop.spawn(tls.sendall, payload)
            got = b""
            while len(got) < len(payload):
                got += tls.recv(65536)
            sender.get(timeout=10)
            assert got == payload
            f = tls.makefile("rwb")
            f.write(b"line\n")
            f.flush()
            assert f.readline() == b"line\n"
            f.close()
    acceptor.kill()
    listener.close()


def test_handshakes_are_concurrent(contexts):
    server_ctx, client_ctx = contexts
    listener, acceptor = start_echo_server(server_ctx)
    port = listener.getsockname()[1]

    def client(i):
        with client_ctx.wrap_socket(gsocket.create_connection(("127.0.0.1", port)),
                                    server_hostname="localhost") as tls:
            tls.sendall(b"%d" % i)
            return tls.recv(100) == b"%d" % i

    clients = [loop.spawn(client, i) for i in range(30)]
    loop.joinall(clients, timeout=30)
    assert all(c.value for c in clients)
    acceptor.kill()
    listener.close()


def test_read_timeout_and_other_green_threads_run(contexts):
    server_ctx, client_ctx = contexts

    done = Event()

    def silent(conn):
        done.wait(5)   # set at the end, so no sleeping green thread outlives the test
        conn.close()

    listener, acceptor = start_echo_server(server_ctx, silent)
    port = listener.getsockname()[1]
    tls = client_ctx.wrap_socket(gsocket.create_connection(("127.0.0.1", port)),
                                 server_hostname="localhost")
    tls.settimeout(0.2)
    ticks = loop.spawn(lambda: [loop.sleep(0.01) for _ in range(5)])
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        tls.recv(10)
    assert time.monotonic() - start >= 0.15
    assert ticks.ready()
    done.set()
    tls.close()
    acceptor.kill()
    listener.close()


def test_unwrap(contexts):
    server_ctx, client_ctx = contexts

    def unwrapping(conn):
        assert conn.recv(5) == b"hello"
        plain = conn.unwrap()
        plain.sendall(b"plain")
        plain.close()

    listener, acceptor = start_echo_server(server_ctx, unwrapping)
    port = listener.getsockname()[1]
    tls = client_ctx.wrap_socket(gsocket.create_connection(("127.0.0.1", port)),
                                 server_hostname="localhost")
    tls.sendall(b"hello")
    plain = tls.unwrap()
    assert type(plain) is gssl.SSLSocket and plain._sslobj is None
    assert plain.recv(5) == b"plain"
    plain.close()
    acceptor.kill()
    listener.close()


def test_handshake_failure_is_reported(contexts):
    server_ctx, _ = contexts
    listener, acceptor = start_echo_server(server_ctx)
    port = listener.getsockname()[1]
    strict = gssl.create_default_context()  # does not trust our self-signed certificate
    with pytest.raises(stdlib_ssl.SSLCertVerificationError):
        strict.wrap_socket(gsocket.create_connection(("127.0.0.1", port)),
                           server_hostname="localhost")
    acceptor.kill()
    listener.close()


def test_get_server_certificate(contexts, cert_files):
    server_ctx, _ = contexts
    listener, acceptor = start_echo_server(server_ctx)
    port = listener.getsockname()[1]
    pem = gssl.get_server_certificate(("127.0.0.1", port))
    assert "BEGIN CERTIFICATE" in pem
    acceptor.kill()
    listener.close()
