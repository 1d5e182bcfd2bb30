"""Shared helpers for the WSGI server tests: a green server in its own OS thread (with its own
hub) and a strict little blocking client in the test's thread.

The client parses responses itself (rather than with http.client) so that tests see exactly
what went over the wire: status line, raw headers, framing.
"""
import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading

from loop.pywsgi import WSGIServer
from script_helpers import SRC

TIMEOUT = 5.0


@contextlib.contextmanager
def serving(app, listener=("127.0.0.1", 0), server_class=WSGIServer, **options):
    """Run a green WSGI server in a background OS thread (its own hub) while the block runs.

    The test's own thread stays an ordinary blocking thread: clients use plain sockets, and
    ``server.stop()`` called from here runs in the server's hub (StreamServer supports that)."""
    options.setdefault("log", False)
    server = server_class(listener, app, **options)
    server.init_socket()
    started = threading.Event()
    failure = []

    def run():
        try:
            server.start()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            started.set()
        server.serve_forever()

    thread = threading.Thread(target=run, name="green server", daemon=True)
    thread.start()
    started.wait(TIMEOUT)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        if not server._stopping:
            server.stop(timeout=2)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the server thread did not finish"


def connect(server, timeout=TIMEOUT):
    sock = socket.create_connection(server.server_address[:2], timeout=timeout)
    return sock


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (lower-cased name, value) str pairs
        self.body = body

    def header(self, name, default=None):
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else default

    @property
    def closes(self):
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:60]!r}>"


class Client:
    """Reads responses one after another from a socket, honouring framing exactly."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buffer += data

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, n):
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, data):
        self.sock.sendall(data)

    def read_response(self, method="GET"):
        while True:
            line = self._line().decode("latin-1")
            version, status, reason = (line.split(" ", 2) + [""])[:3]
            assert version in ("HTTP/1.1", "HTTP/1.0"), line
            headers = []
            while True:
                field = self._line()
                if not field:
                    break
                assert b"\n" not in field and b"\r" not in field
                name, _, value = field.decode("latin-1").partition(":")
                assert name and name == name.strip(), field
                headers.append((name.lower(), value.strip()))
            status = int(status)
            if status >= 200 or status == 101:
                break
            # 1xx interim response: read the final one too, but remember we saw it
            self.interim = status
        response = Response(version, status, reason, headers, b"")
        if method == "HEAD" or status in (204, 304) or status < 200:
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            assert response.header("content-length") is None
            body = []
            while True:
                size = int(self._line(), 16)
                if size == 0:
                    assert self._line() == b""
                    break
                body.append(self._exactly(size))
                assert self._exactly(2) == b"\r\n"
            response.body = b"".join(body)
        elif response.header("content-length") is not None:
            response.body = self._exactly(int(response.header("content-length")))
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            response.body, self.buffer = self.buffer, b""
        return response

    def at_eof(self, timeout=TIMEOUT):
        """True when the server closes the connection (nothing more arrives)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return not self.buffer
                self.buffer += data
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def roundtrip(server, raw, method="GET"):
    """One connection, one raw request, one response."""
    with connect(server) as sock:
        client = Client(sock)
        client.send(raw)
        return client.read_response(method)


def get(server, path="/", headers=b""):
    return roundtrip(server, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + headers +
                     b"Connection: close\r\n\r\n")


class ServerProcess:
    """A WSGI server in a child interpreter (for scenarios that could hang or leak): the
    script prints ``PORT <n>`` on stdout once it listens; its stderr is collected."""

    def __init__(self, process, port):
        self.process = process
        self.port = port
        self.address = ("127.0.0.1", port)
        self.stderr = ""
        self.stdout = ""

    def connect(self, timeout=TIMEOUT):
        return socket.create_connection(self.address, timeout=timeout)

    def finish(self, timeout=20):
        """Wait for the child to exit by itself; return its exit status."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            self.stdout += out
            self.stderr += err
            raise AssertionError("the server process did not exit:\n" + self.stderr[-3000:])
        self.stdout += out
        self.stderr += err
        return self.process.returncode


@contextlib.contextmanager
def server_process(code, env=None, args=()):
    """Run ``code`` (dedented) in a child interpreter that imports this checkout's loop."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                               env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    child = None
    try:
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"server did not start: {line!r}\n{err[-3000:]}")
        child = ServerProcess(process, int(line.split()[1]))
        yield child
    finally:
        if process.poll() is None:
            process.kill()
        out, err = process.communicate()
        if child is not None:
            child.stdout += out
            child.stderr += err
