"""Every example in examples/ runs and does what its docstring says (each in a subprocess)."""
import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from chat_support import free_port

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def _start(args, pattern, env=None, cwd=ROOT):
    """Start a long-running example; wait for the line matching ``pattern``."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(pattern, line)
        if match:
            return proc, match
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"{args} did not start:\n{out}\n{err}")


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"{proc.args} did not exit on SIGTERM")
    return proc.returncode


def test_hello_with_the_readme_command():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loop.pywsgi", "examples.hello:app",
                             "--bind", f"127.0.0.1:{port}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response, body = _get(("127.0.0.1", port), "/")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
        assert (response.status, body) == (200, b"Hello from loop\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise


def test_echo_server():
    proc, match = _start([os.path.join(EXAMPLES, "echo_server.py"), "--port", "0"],
                         r"echo server on ([\d.]+):(\d+)")
    try:
        address = (match.group(1), int(match.group(2)))
        clients = [socket.create_connection(address, timeout=10) for _ in range(50)]
        for n, client in enumerate(clients):
            client.sendall(f"ping {n}\n".encode())
        for n, client in enumerate(clients):
            expected = f"ping {n}\n".encode()
            received = b""
            while len(received) < len(expected):
                received += client.recv(100)
            assert received == expected
            client.close()
    finally:
        assert _stop(proc) == 0


def _get(address, path, method="GET", body=None, timeout=10):
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def _exercise_wsgi_app(address):
    response, body = _get(address, "/")
    assert (response.status, body) == (200, b"hello from loop\n")
    response, body = _get(address, "/echo", "POST", b"x" * 100000)
    assert body == b"x" * 100000
    response, body = _get(address, "/stream")
    assert body == b"".join(f"line {n}\n".encode() for n in range(5))
    assert response.status == 200
    assert _get(address, "/nope")[0].status == 404
    # Ten slow requests at once: served concurrently by green threads (checked by their
    # count, not by a speed assertion: each one answers).
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        _get(address, "/sleep?seconds=0.5", timeout=30)[1])) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [b"slept 0.5\n"] * 10


def test_wsgi_app_on_wsgiserver():
    proc, match = _start([os.path.join(EXAMPLES, "wsgi_app.py"), "--port", "0"],
                         r"serving on http://([\d.]+):(\d+)/")
    try:
        _exercise_wsgi_app((match.group(1), int(match.group(2))))
    finally:
        assert _stop(proc) == 0


def test_wsgi_app_under_gunicorn():
    pytest.importorskip("gunicorn", reason="gunicorn is not installed")
    pytest.importorskip("loop.worker", reason="loop.worker (the gunicorn worker) is not there yet")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "loop.worker.GreenWorker", "-w", "1",
         "-b", f"127.0.0.1:{port}", "examples.wsgi_app:app"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    "gunicorn did not start:\n" + (proc.stdout.read() if proc.poll() else "")
                time.sleep(0.1)
        _exercise_wsgi_app(("127.0.0.1", port))
    finally:
        assert _stop(proc) == 0


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        time.sleep(0.2)
        body = f"page {self.path}\n".encode() * 10
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def test_crawler(web_server):
    pytest.importorskip("requests", reason="requests is not installed")
    host, port = web_server
    urls = [f"http://{host}:{port}/page/{n}" for n in range(20)]
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "crawler.py"), "-c", "10",
                          *urls, f"http://{host}:{port}/missing"],
                         capture_output=True, text=True, timeout=90)
    lines = out.stdout.splitlines()
    assert out.returncode == 1, out.stderr          # one URL was a 404 on purpose
    assert sorted(line.split()[-1] for line in lines[:-1]) == sorted(
        urls + [f"http://{host}:{port}/missing"])
    assert sum(line.startswith("200 ") for line in lines) == 20
    assert any(line.startswith("404 ") for line in lines)
    assert lines[-1].startswith("20/21 ok in ")


def test_asyncio_interop():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "asyncio_interop.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for n in range(5):
        assert f"green thread got: GREEN {n}" in out.stdout
    assert "asyncio got: sum=45, echoed='GREEN 9'" in out.stdout
