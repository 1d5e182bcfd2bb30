"""loop.worker against a real gunicorn master: start, concurrency, heartbeat, every signal.

Each test starts ``gunicorn -k loop.worker.<Class>`` in a subprocess on a free port with a tiny
app written to a temp dir, talks to it over plain sockets and signals the master.  Skipped when
gunicorn is not installed.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("gunicorn")

pytestmark = pytest.mark.timeout(60)

WORKERS = ["loop.worker.GreenWorker", "loop.worker.GreenWSGIWorker"]
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

APP = textwrap.dedent('''
    import os, time

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path.startswith("/sleep/"):
            time.sleep(float(path[7:]))          # patched in the worker: green
        elif path.startswith("/block/"):
            from loop.monkey import get_original
            get_original("time", "sleep")(float(path[7:]))   # really blocks the hub
        body = ("pid=%d\\n" % os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    def __init__(self, tmp_path, worker_class, *args):
        (tmp_path / "wapp.py").write_text(APP)
        self.port = free_port()
        self.access_log = tmp_path / "access.log"
        self.error_log = tmp_path / "error.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([SRC, str(tmp_path), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "gunicorn", "-k", worker_class,
                   "-b", "127.0.0.1:%d" % self.port, "--access-logfile", str(self.access_log),
                   "--error-logfile", str(self.error_log), "--log-level", "debug",
                   "--graceful-timeout", "10", "--no-control-socket", *args, "wapp:app"]
        self.proc = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("gunicorn exited: %s" % self.log())
            try:
                return self.get("/")
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gunicorn did not come up: %s" % self.log())

    def log(self):
        try:
            return self.error_log.read_text()
        except OSError:
            return ""

    def request(self, path="/", timeout=10):
        """Send a request; return a callable that reads (status, body)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())

        def read():
            data = b""
            try:
                while True:
                    piece = sock.recv(65536)
                    if not piece:
                        break
                    data += piece
            finally:
                sock.close()
            if not data:
                raise ConnectionError("closed without a response")
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body
        return read

    def get(self, path="/", timeout=10):
        return self.request(path, timeout)()

    def pid(self):
        status, body = self.get("/")
        assert status == 200
        return int(body.split(b"=")[1])

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(params=WORKERS)
def worker_class(request):
    return request.param


@pytest.fixture
def start(tmp_path):
    started = []

    def start(worker_class, *args):
        server = Gunicorn(tmp_path, worker_class, *args)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


def test_import_is_side_effect_free():
    code = ("import sys, socket, time; import loop.worker, loop._hub as h; "
            "assert h.get_hub_if_exists() is None; "
            "assert socket.socket.__module__ == 'socket', socket.socket; "
            "assert time.sleep.__module__ is None or 'loop' not in str(time.sleep.__module__); "
            "assert 'loop.monkey' not in sys.modules and 'asyncio' not in sys.modules; "
            "print('clean')")
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "clean", out.stderr


def test_concurrent_slow_requests_on_one_worker(start, worker_class):
    server = start(worker_class, "-w", "1", "--worker-connections", "100")
    started = time.monotonic()
    readers = [server.request("/sleep/1") for _ in range(20)]
    results = [read() for read in readers]
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in results)
    assert len({body for _, body in results}) == 1      # one worker served them all
    assert elapsed < 6, elapsed                          # 20 x 1 s in sequence would be 20 s


def test_heartbeat_keeps_busy_worker_alive_and_kills_stuck_one(start):
    server = start("loop.worker.GreenWorker", "-w", "1", "--timeout", "2")
    pid = server.pid()
    # Green sleeps longer than the timeout: the hub keeps beating, the worker survives.
    assert server.get("/sleep/3")[0] == 200
    assert server.pid() == pid
    # A request that blocks the hub stops the heartbeat: the arbiter kills that worker.
    reader = server.request("/block/8", timeout=15)
    with pytest.raises((ConnectionError, OSError)):
        reader()
    server.wait_ready()
    assert server.pid() != pid
    assert "WORKER TIMEOUT" in server.log()


def test_term_is_graceful(start, worker_class):
    server = start(worker_class, "-w", "1")
    reader = server.request("/sleep/1")
    time.sleep(0.3)
    server.signal(signal.SIGTERM)
    status, _ = reader()
    assert status == 200                 # the request in flight was finished
    assert server.proc.wait(15) == 0


@pytest.mark.parametrize("signum", [signal.SIGQUIT, signal.SIGINT])
def test_quit_and_int_are_quick(start, worker_class, signum):
    server = start(worker_class, "-w", "1")
    reader = server.request("/sleep/20", timeout=30)
    time.sleep(0.3)
    started = time.monotonic()
    server.signal(signum)
    server.proc.wait(10)
    assert time.monotonic() - started < 5
    with pytest.raises((ConnectionError, OSError)):
        reader()


def test_hup_reloads_and_keeps_serving(start, worker_class):
    server = start(worker_class, "-w", "1")
    pid = server.pid()
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    new_pid = pid
    while new_pid == pid and time.monotonic() < deadline:
        try:
            new_pid = server.pid()
        except OSError:
            pass
        time.sleep(0.1)
    assert new_pid != pid
    assert server.get("/")[0] == 200


def test_usr1_reopens_log_files(start, worker_class):
    server = start(worker_class, "-w", "1")
    server.get("/first")
    rotated = server.access_log.with_name("access.log.1")
    deadline = time.monotonic() + 5
    while "/first" not in server.access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.rename(server.access_log, rotated)
    server.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        server.get("/second")
        if server.access_log.exists() and "/second" in server.access_log.read_text():
            break
        time.sleep(0.2)
    assert "/second" in server.access_log.read_text()
    assert "/first" in rotated.read_text()


def test_max_requests_restarts_the_worker(start, worker_class):
    # wait_ready() made one request already: 1 + 3 stay under the limit of 5.
    server = start(worker_class, "-w", "1", "--max-requests", "5")
    first = {server.pid() for _ in range(3)}
    assert len(first) == 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if server.pid() not in first:
                break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail("worker was not restarted after max_requests")
    assert "Autorestarting worker" in server.log()


def test_many_workers_share_the_listener(start, worker_class):
    server = start(worker_class, "-w", "2")
    pids = set()
    deadline = time.monotonic() + 10
    readers = []
    while len(pids) < 2 and time.monotonic() < deadline:
        readers = [server.request("/sleep/0.2") for _ in range(10)]
        pids.update(int(body.split(b"=")[1]) for _, body in (r() for r in readers))
    assert len(pids) == 2
