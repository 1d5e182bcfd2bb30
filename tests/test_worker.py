"""loop.worker against a real gunicorn master: start, concurrency, heartbeat, every signal, and
the gunicorn settings each worker class honours.

Each test starts ``gunicorn -k loop.worker.<Class>`` in a subprocess on a free port with a tiny
app written to a temp dir, talks to it over plain sockets and signals the master.  Skipped when
gunicorn is not installed.  Behaviours gunicorn itself provides in ``GreenGunicornWorker`` are
checked on both classes, so the two stay interchangeable where docs/servers.md says they are.
"""
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from load_clients import LedgerLoad
from tls_helpers import make_certificate

gunicorn = pytest.importorskip("gunicorn")

pytestmark = pytest.mark.timeout(60)

WORKERS = ["loop.worker.GreenWorker", "loop.worker.GreenGunicornWorker"]
TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(TESTS), "src")
GUNICORN_VERSION = tuple(int(part) for part in gunicorn.__version__.split(".")[:2])

APP = textwrap.dedent('''
    import json, os, time

    INFO_KEYS = ("wsgi.url_scheme", "REMOTE_ADDR", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                 "PROXY_PROTOCOL", "PROXY_ADDR")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path.startswith("/sleep/"):
            time.sleep(float(path[7:]))          # patched in the worker: green
        elif path.startswith("/block/"):
            from loop.monkey import get_original
            get_original("time", "sleep")(float(path[7:]))   # really blocks the hub
        elif path.startswith("/spin/"):
            end = time.perf_counter() + float(path[6:])   # CPU work, holding the hub
            while time.perf_counter() < end:
                pass
        elif path == "/error":
            raise RuntimeError("boom from the app")
        elif path == "/hints":
            environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
        elif path == "/ledger":
            from load_clients import ledger_app       # records the X-Id of each request it runs
            return ledger_app(environ, start_response)
        if path.startswith("/bytes/"):
            body = b"x" * int(path[7:])
        elif path.endswith("/info"):
            info = {key: environ.get(key) for key in INFO_KEYS}
            info["pid"] = os.getpid()
            body = json.dumps(info).encode()
        else:
            body = ("pid=%d\\n" % os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')

HOOKS = textwrap.dedent('''
    HOOK_LOG = {path!r}

    def pre_request(worker, req):
        with open(HOOK_LOG, "a") as f:
            f.write("pre %s %s %s\\n" % (req.method, req.path, dict(req.headers).get("X-TEST")))

    def post_request(worker, req, environ, resp):
        with open(HOOK_LOG, "a") as f:
            f.write("post %s %s %s\\n" % (req.method, environ["PATH_INFO"],
                                         str(resp.status).split()[0]))
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(sock):
    """One response off a kept-alive connection: (status, head, body).  Interim 1xx responses
    are skipped; the body must have a Content-Length."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError("closed before a response: %r" % data)
            data += piece
        head, _, data = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        if status >= 200:
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(data) < length:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed in the body")
        data += piece
    return status, head, data[:length]


class Gunicorn:
    def __init__(self, tmp_path, worker_class, *args, tls=None):
        (tmp_path / "wapp.py").write_text(APP)
        self.port = free_port()
        self.access_log = tmp_path / "access.log"
        self.error_log = tmp_path / "error.log"
        self.client_context = None
        if tls is not None:
            certfile, keyfile = tls
            args += ("--certfile", certfile, "--keyfile", keyfile)
            self.client_context = ssl.create_default_context(cafile=certfile)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([SRC, str(tmp_path), TESTS, env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "gunicorn", "-k", worker_class,
                   "-b", "127.0.0.1:%d" % self.port, "--access-logfile", str(self.access_log),
                   "--error-logfile", str(self.error_log), "--log-level", "debug",
                   "--graceful-timeout", "10", *args, "wapp:app"]
        if GUNICORN_VERSION >= (25, 0):
            command.insert(-1, "--no-control-socket")
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

    def connect(self, timeout=10):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.client_context is not None:
            sock = self.client_context.wrap_socket(sock, server_hostname="localhost")
        return sock

    def request(self, path="/", timeout=10, headers=b"", prefix=b""):
        """Send a request; return a callable that reads (status, body)."""
        sock = self.connect(timeout)
        sock.sendall(prefix + b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
                     % (path.encode(), headers))

        def read():
            data = self._read_all(sock)
            if not data:
                raise ConnectionError("closed without a response")
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body
        return read

    @staticmethod
    def _read_all(sock):
        data = b""
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        finally:
            sock.close()
        return data

    def raw(self, data, timeout=10):
        """Send raw bytes; return everything the server sends until it closes."""
        sock = self.connect(timeout)
        sock.sendall(data)
        return self._read_all(sock)

    def get(self, path="/", timeout=10, **kwargs):
        return self.request(path, timeout, **kwargs)()

    def info(self, path="/info", **kwargs):
        status, body = self.get(path, **kwargs)
        assert status == 200, body
        return json.loads(body)

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

    def start(worker_class, *args, **kwargs):
        server = Gunicorn(tmp_path, worker_class, *args, **kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    pytest.importorskip("cryptography.x509")
    return make_certificate(tmp_path_factory.mktemp("tls"))


def wait_for_workers(server, count, timeout=15):
    """Until ``count`` distinct workers have answered (gunicorn is ready with the first)."""
    pids = set()
    deadline = time.monotonic() + timeout
    while len(pids) < count:
        assert time.monotonic() < deadline, "only %d workers came up" % len(pids)
        readers = [server.request("/sleep/0.1") for _ in range(8)]
        pids.update(int(body.split(b"=")[1]) for _, body in (read() for read in readers))
    return pids


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the arbiter's side ------------------------------------------------------------------------

def test_import_is_side_effect_free():
    code = ("import sys, socket, time; import loop.worker, loop._core.hub as h; "
            "assert h.get_hub_if_exists() is None; "
            "assert socket.socket.__module__ == 'socket', socket.socket; "
            "assert time.sleep.__module__ is None or 'loop' not in str(time.sleep.__module__); "
            "assert 'loop.monkey' not in sys.modules and 'asyncio' not in sys.modules; "
            "assert 'loop.pywsgi' not in sys.modules and 'loop.server' not in sys.modules; "
            "print('clean')")
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "clean", out.stderr


def test_gunicorn_stays_optional():
    """Importing loop, its WSGI server or the PROXY reader does not import gunicorn: only
    loop.worker (and the private modules behind it) does."""
    code = ("import sys, loop, loop.pywsgi, loop._protocols.proxy, loop._protocols.http; "
            "loop.spawn; "
            "assert not [m for m in sys.modules if m.startswith('gunicorn')]; "
            "import loop.worker; assert 'gunicorn' in sys.modules; "
            "assert 'loop._gunicorn.serving' not in sys.modules; "
            "print('clean')")
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "clean", out.stderr


def test_public_names_of_loop_worker():
    import loop.worker
    from loop._gunicorn import process
    assert sorted(loop.worker.__all__) == ["GreenGunicornWorker", "GreenWSGIWorker",
                                           "GreenWorker"]
    for name in loop.worker.__all__:
        assert getattr(loop.worker, name) is getattr(process, name)
    # classes at module level, importable by their qualified name (gunicorn's -k takes it)
    assert loop.worker.GreenWorker.__qualname__ == "GreenWorker"
    assert loop.worker.GreenGunicornWorker.__qualname__ == "GreenGunicornWorker"


def test_old_class_name_still_works(start):
    import loop.worker
    assert loop.worker.GreenWSGIWorker is loop.worker.GreenWorker
    server = start("loop.worker.GreenWSGIWorker", "-w", "1")
    assert server.get("/")[0] == 200


# -- concurrency and the heartbeat -------------------------------------------------------------

def test_concurrent_slow_requests_on_one_worker(start, worker_class):
    server = start(worker_class, "-w", "1", "--worker-connections", "100")
    started = time.monotonic()
    readers = [server.request("/sleep/1") for _ in range(20)]
    results = [read() for read in readers]
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in results)
    assert len({body for _, body in results}) == 1      # one worker served them all
    assert elapsed < 6, elapsed                          # 20 x 1 s in sequence would be 20 s


def test_worker_connections_caps_concurrency(start, worker_class):
    server = start(worker_class, "-w", "1", "--worker-connections", "2")
    started = time.monotonic()
    readers = [server.request("/sleep/1") for _ in range(4)]
    assert all(read()[0] == 200 for read in readers)
    elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 3.9, elapsed                  # two at a time: two rounds


def test_heartbeat_keeps_busy_worker_alive_and_kills_stuck_one(start, worker_class):
    server = start(worker_class, "-w", "1", "--timeout", "2")
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


def test_unix_socket_listener(start, worker_class, tmp_path):
    path = tmp_path / "g.sock"
    start(worker_class, "-w", "1", "-b", "unix:%s" % path)     # next to the TCP listener
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        for _ in range(2):
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == 200
            # a unix socket peer counts as a trusted proxy, as in gunicorn
            assert json.loads(body)["wsgi.url_scheme"] == "https"


def test_many_workers_share_the_listener(start, worker_class):
    server = start(worker_class, "-w", "2")
    pids = set()
    deadline = time.monotonic() + 10
    readers = []
    while len(pids) < 2 and time.monotonic() < deadline:
        readers = [server.request("/sleep/0.2") for _ in range(10)]
        pids.update(int(body.split(b"=")[1]) for _, body in (r() for r in readers))
    assert len(pids) == 2


def _keepalive_load(port, connections, stop, path, depth=1):
    """``connections`` kept-alive clients, ``depth`` requests outstanding each, until ``stop``."""
    selector = selectors.DefaultSelector()
    request = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        sock.sendall(request * depth)
        selector.register(sock, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            for key, _ in selector.select(0.1):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                answered = data.count(b"HTTP/1.1 200")
                if answered:
                    key.fileobj.sendall(request * answered)
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()


def _connection_burst(port, count, timeout=30):
    """Open ``count`` new connections at once, one request each; the seconds until each was
    answered, sorted (None for a connection not answered within ``timeout``)."""
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)
    latencies = []
    try:
        while selector.get_map() and time.monotonic() - started < timeout:
            for key, events in selector.select(0.2):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                assert data.startswith(b"HTTP/1.1 200"), data
                latencies.append(time.monotonic() - started)
                selector.unregister(sock)
                sock.close()
    finally:
        for key in list(selector.get_map().values()):
            latencies.append(None)
            key.fileobj.close()
        selector.close()
    return latencies


def test_a_burst_of_connections_is_spread_over_the_workers(start, worker_class):
    # Accepting in batches must not let the first worker to wake take a whole burst of
    # kept-alive connections (they stay where they land) while its sibling idles.
    server = start(worker_class, "-w", "2", "--keep-alive", "30", "--access-logfile", "/dev/null",
                   "--log-level", "warning")
    wait_for_workers(server, 2)
    shares = []
    for _ in range(3):
        socks = [server.connect() for _ in range(100)]
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        pids = [read_response(sock)[2] for sock in socks]
        shares.append(min(pids.count(pid) for pid in set(pids)) if len(set(pids)) == 2 else 0)
        for sock in socks:
            sock.close()
        time.sleep(0.3)
    # 27-48 of 100 for the less loaded worker, taking one connection per turn or in batches
    # that follow the backlog; 0 when a worker takes the whole backlog at once.
    assert max(shares) >= 10, shares


def test_new_connections_are_not_starved_by_keepalive_load(start, worker_class):
    # Two workers busy with kept-alive clients whose requests each cost some CPU: every turn of
    # a worker's event loop serves a batch of them.  A burst of new connections must get in
    # within a few turns, not one connection per worker per turn.  (Each client sends its next
    # request once it has its answer, so that handlers wait between requests and the test
    # measures accepting, not how long a handler whose client never lets it wait runs on.)
    server = start(worker_class, "-w", "2", "--keep-alive", "30", "--access-logfile", "/dev/null",
                   "--log-level", "warning")
    wait_for_workers(server, 2)
    stop = threading.Event()
    load = threading.Thread(target=_keepalive_load, args=(server.port, 100, stop, b"/spin/0.0005"),
                            daemon=True)
    load.start()
    try:
        time.sleep(1)
        bursts = []
        for _ in range(3):
            latencies = _connection_burst(server.port, 100)
            assert None not in latencies
            bursts.append(max(latencies))
            time.sleep(0.2)
    finally:
        stop.set()
        load.join(10)
    # Accepting one connection per turn: 2.6-7 s for the slowest of each burst; in batches that
    # follow the backlog: 0.1-0.7 s.  The bound leaves a wide margin for a loaded machine.
    assert min(bursts) < 1.5, bursts


# -- signals -----------------------------------------------------------------------------------

def test_term_is_graceful(start, worker_class):
    server = start(worker_class, "-w", "1")
    reader = server.request("/sleep/1")
    time.sleep(0.3)
    server.signal(signal.SIGTERM)
    status, _ = reader()
    assert status == 200                 # the request in flight was finished
    assert server.proc.wait(15) == 0


def test_term_with_keepalive_connections(start):
    # GreenWorker only: gunicorn's own request loop (GreenGunicornWorker, -k gevent) waits out
    # the keep-alive timeout of an idle connection and does not mark a response in flight.
    server = start("loop.worker.GreenWorker", "-w", "1", "--keep-alive", "30")
    idle = server.connect()
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle)[0] == 200
    busy = server.connect()
    busy.sendall(b"GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert idle.recv(100) == b""                     # closed at once, not after 30 s
    status, head, _ = read_response(busy)            # the one in flight is answered...
    assert status == 200
    assert b"connection: close" in head.lower()      # ...and told the connection ends
    assert server.proc.wait(15) == 0
    assert time.monotonic() - started < 5
    idle.close()
    busy.close()


def _process_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"    # exited, not yet reaped
    except OSError:
        return True


def test_usr2_upgrade_loses_no_request(start, worker_class, tmp_path):
    # USR2 starts a new arbiter (with its own workers) on the same listeners; TERM to the old
    # one then stops its workers gracefully while the new ones serve.
    ledger = tmp_path / "ledger"
    pidfile = tmp_path / "gunicorn.pid"
    server = start(worker_class, "-w", "2", "--pid", str(pidfile), "--env", "LEDGER=%s" % ledger)
    old_master = server.proc.pid
    old_workers = wait_for_workers(server, 2)
    load = LedgerLoad(server.port, connections=20).start(4)
    time.sleep(0.5)
    server.signal(signal.SIGUSR2)
    try:
        # the new arbiter writes its pid next to the old one's (gunicorn.pid.2) while both run
        new_pidfile = tmp_path / "gunicorn.pid.2"
        assert wait_for(lambda: new_pidfile.exists() and new_pidfile.read_text().strip(), 15)
        assert wait_for(lambda: server.pid() not in old_workers, 15)
        server.signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
        _assert_nothing_lost(load, ledger, server)
        assert server.pid() not in old_workers          # the new arbiter's workers serve on
    finally:
        # The new arbiter is not our child: find it by its pid file (renamed once it is alone).
        for path in (tmp_path / "gunicorn.pid.2", pidfile):
            try:
                pid = int(path.read_text())
            except (OSError, ValueError):
                continue
            if pid != old_master:
                os.kill(pid, signal.SIGQUIT)
                assert wait_for(lambda: _process_gone(pid), 15)


def test_graceful_timeout_cuts_what_is_left_and_logs_it(start, worker_class):
    server = start(worker_class, "-w", "1", "--graceful-timeout", "2")
    reader = server.request("/sleep/30", timeout=30)
    time.sleep(0.3)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    with pytest.raises((ConnectionError, OSError)):
        reader()
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 5
    # cut by the worker itself, before the arbiter's kill at graceful_timeout, and said so
    assert "1 connection(s) still open" in server.log(), server.log()[-2000:]


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
    assert wait_for(lambda: "/first" in server.access_log.read_text(), 5)
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


# -- gunicorn settings -------------------------------------------------------------------------

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


def test_max_requests_jitter(start, worker_class):
    server = start(worker_class, "-w", "1", "--max-requests", "3",
                   "--max-requests-jitter", "3")
    pid = server.pid()
    served = 2                            # wait_ready() and pid()
    while True:
        try:
            if server.pid() != pid:
                break
        except OSError:
            continue
        served += 1
        # 3 + jitter (0..3) requests, and one more may slip in while the worker winds down
        assert served <= 7, "not restarted within max_requests + jitter"
    assert served >= 3


def test_last_request_before_max_requests_says_close(start):
    server = start("loop.worker.GreenWorker", "-w", "1", "--max-requests", "3")
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")      # the second request
    status, head, _ = read_response(sock)
    assert b"connection: close" not in head.lower()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")      # the third: the last one
    status, head, _ = read_response(sock)
    assert status == 200 and b"connection: close" in head.lower()
    assert sock.recv(100) == b""
    sock.close()


# -- winding down without losing a request ------------------------------------------------------
#
# The rule for every graceful stop: a request the app ran gets its response (the last one served
# on a connection says Connection: close); a request that will not be served is not run, and its
# client sees the connection close without response bytes.

def _assert_nothing_lost(load, ledger, server):
    load.join()
    summary = load.summary(ledger)
    assert not load.mismatched, (load.mismatched[:3], summary)
    assert not load.lost(ledger), summary
    assert load.cut_with_bytes == 0, summary
    assert load.unfinished == 0, summary
    assert len(load.answered) > 100, summary          # the load really ran
    return summary


def _read_until_closed(sock):
    received = b""
    try:
        while True:
            piece = sock.recv(65536)
            if not piece:
                return received
            received += piece
    except ConnectionResetError:
        return received


def test_recycling_never_runs_a_request_it_then_drops(start, worker_class, tmp_path):
    # The race, made reproducible.  The request that reaches max_requests and the ones after it
    # each block the worker's hub for PERIOD seconds, one per turn of its event loop, so the
    # worker decides to stop and closes its idle connections a few turns later while the turns
    # stay slow.  In the middle of each blocked turn, one of the idle keep-alive connections
    # sends its next request: whichever turn the worker closes idle connections in, one next
    # request has just arrived.  Each may be served (with Connection: close) or left unread
    # (its client sees the connection close without a byte); none may be run and its response
    # thrown away.
    period = 0.5
    rounds = 6
    ledger = tmp_path / "ledger"
    idle = []
    blockers = []
    # wait_ready() and one warm-up request per connection, then the trigger: the last one.
    server = start(worker_class, "-w", "1", "--max-requests", str(2 + 2 * rounds),
                   "--env", "LEDGER=%s" % ledger)
    for index in range(rounds):
        for group, name in ((idle, b"a%d" % index), (blockers, b"c%d" % index)):
            sock = server.connect()
            sock.sendall(b"GET /ledger HTTP/1.1\r\nHost: x\r\nX-Id: warm-%s\r\n\r\n" % name)
            assert read_response(sock)[0] == 200
            group.append(sock)
    trigger = server.connect()
    trigger.sendall(b"GET /block/%g HTTP/1.1\r\nHost: x\r\n\r\n" % period)
    started = time.monotonic()
    for index in range(rounds):
        # the middle of the turn that runs the previous blocking request
        time.sleep(max(0, started + (index + 0.5) * period - time.monotonic()))
        for sock, request in ((idle[index], b"GET /ledger HTTP/1.1\r\nHost: x\r\nX-Id: a%d\r\n\r\n"
                               % index),
                              (blockers[index], b"GET /block/%g HTTP/1.1\r\nHost: x\r\n\r\n"
                               % period)):
            try:
                sock.sendall(request)
            except OSError:
                pass                      # already closed by the stopping worker
    assert read_response(trigger)[0] == 200
    replies = {"a%d" % index: _read_until_closed(sock) for index, sock in enumerate(idle)}
    for sock in blockers:
        _read_until_closed(sock)
    executed = set(ledger.read_text().split())
    for request_id, received in replies.items():
        if request_id in executed:
            assert received.startswith(b"HTTP/1.1 200"), (request_id, received)
            assert received.endswith(request_id.encode()), (request_id, received)
        else:
            assert received == b"", (request_id, received)
    for sock in idle + blockers + [trigger]:
        sock.close()


def test_recycling_turns_away_no_new_connection(start, worker_class):
    # One client, one new connection per request (Connection: close), through many recyclings.
    # A worker that reached max_requests must stop accepting at once: a connection it accepts
    # after that decision would be closed by the wind-down without its request being read,
    # and the client sees a reset (or a close without a response) on a fresh connection,
    # which no HTTP client retries.  The connections it leaves in the shared backlog are
    # served by its sibling or its replacement.
    server = start(worker_class, "-w", "2", "--max-requests", "15")
    failures = []
    served = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        try:
            status, _ = server.get("/")
            assert status == 200
            served += 1
        except OSError as exc:
            failures.append(repr(exc))
    restarts = server.log().count("Autorestarting worker")
    assert restarts >= 4, (served, restarts)          # it really recycled, several times
    assert not failures, (len(failures), served, failures[:3])


BOOT_HOOK = textwrap.dedent('''
    import time
    MARKER = {marker!r}

    def post_fork(server, worker):
        # Stretch the worker's boot (loop.monkey.patch_all and the imports after it) so that
        # a signal surely arrives in the middle of it.
        patch = worker.patch

        def slow_patch():
            open(MARKER, "w").close()
            time.sleep(1.5)
            patch()
        worker.patch = slow_patch
''')


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGQUIT])
def test_a_signal_during_the_worker_boot_is_not_lost(start, worker_class, tmp_path, signum):
    # Until a worker has installed its own signal handlers it runs those of the arbiter it was
    # forked from, which only queue the signal in the arbiter's memory (of which the child has
    # a copy): a TERM or QUIT the arbiter sends in that window would be lost, and the arbiter
    # would wait out the whole graceful timeout (10 s here) before killing the worker.
    marker = tmp_path / "booting"
    conf = tmp_path / "boot_hook.py"
    conf.write_text(BOOT_HOOK.format(marker=str(marker)))
    server = start(worker_class, "-w", "1", "-c", str(conf))
    pid = server.pid()
    marker.unlink()
    os.kill(pid, signal.SIGKILL)                      # the arbiter boots a new worker
    assert wait_for(marker.exists), server.log()[-2000:]
    time.sleep(0.3)                                   # the new worker is in its boot now
    started = time.monotonic()
    server.signal(signum)
    assert server.proc.wait(15) == 0
    assert time.monotonic() - started < 6, server.log()[-2000:]
    assert "was sent SIGKILL" not in server.log().split("Handling signal")[-1]


def test_max_requests_recycling_loses_no_request(start, worker_class, tmp_path):
    ledger = tmp_path / "ledger"
    server = start(worker_class, "-w", "2", "--max-requests", "40", "--env", "LEDGER=%s" % ledger)
    load = LedgerLoad(server.port, connections=20).start(3)
    summary = _assert_nothing_lost(load, ledger, server)
    restarts = server.log().count("Autorestarting worker")
    assert restarts >= 3, summary                     # recycled under load, several times


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_term_and_hup_lose_no_request(start, worker_class, tmp_path, signum):
    # HUP starts new workers and stops the old ones gracefully (TERM); USR2 + WINCH/TERM of the
    # old master end in the same TERM of its workers.
    ledger = tmp_path / "ledger"
    server = start(worker_class, "-w", "2", "--env", "LEDGER=%s" % ledger)
    load = LedgerLoad(server.port, connections=20).start(2.5)
    time.sleep(1)
    server.signal(signum)
    if signum == signal.SIGTERM:
        assert server.proc.wait(15) == 0
    summary = _assert_nothing_lost(load, ledger, server)
    if signum == signal.SIGHUP:
        assert server.get("/")[0] == 200, summary


def test_timeout_cuts_a_client_that_takes_no_bytes(start):
    # gunicorn's --timeout kills a sync worker stuck on one client; GreenWorker cuts only that
    # connection once it made no progress for that long.  (GreenGunicornWorker keeps gunicorn's
    # own request handling, which has no such bound, like -k gevent.)
    server = start("loop.worker.GreenWorker", "-w", "1", "--timeout", "2")
    size = 32 << 20
    sock = server.connect(timeout=15)
    sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
    time.sleep(5)                                   # take nothing for longer than --timeout
    received = len(_read_until_closed(sock))
    sock.close()
    assert received < size, received
    assert wait_for(lambda: "took no data for 2" in server.log(), 5), server.log()[-2000:]
    assert server.get("/")[0] == 200                # the worker goes on


@pytest.mark.parametrize("keepalive", ["0", "1"])
def test_keepalive_setting(start, worker_class, keepalive):
    server = start(worker_class, "-w", "1", "--keep-alive", keepalive)
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head, _ = read_response(sock)
    assert status == 200
    if keepalive == "0":
        # no keep-alive at all: said in the response, and the connection ends
        assert b"connection: close" in head.lower()
        assert sock.recv(100) == b""
    else:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200            # kept alive within the timeout
        started = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(100) == b""                     # closed once idle for 1 s
        assert 0.5 < time.monotonic() - started < 4
    sock.close()


def test_access_log_format(start, worker_class):
    server = start(worker_class, "-w", "1", "--access-logformat",
                   '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %({x-test}i)s %({content-type}o)s '
                   '%(m)s %(U)s %(q)s')
    server.get("/fmt?q=1", headers=b"X-Test: hello\r\nUser-Agent: probe\r\n")
    assert wait_for(lambda: "/fmt" in server.access_log.read_text(), 5)
    line = [line for line in server.access_log.read_text().splitlines() if "/fmt" in line][0]
    assert line == ('127.0.0.1 "GET /fmt?q=1 HTTP/1.1" 200 %d "probe" hello text/plain '
                    'GET /fmt q=1' % len("pid=%d\n" % server.pid())), line


def test_app_error_is_logged_and_answered_500(start, worker_class):
    server = start(worker_class, "-w", "1")
    status, body = server.get("/error")
    assert status == 500
    assert b"boom" not in body                           # never the traceback
    assert wait_for(lambda: "boom from the app" in server.log(), 5)
    assert server.get("/")[0] == 200                     # the worker goes on
    assert wait_for(lambda: '"GET /error HTTP/1.1" 500' in server.access_log.read_text(), 5)


def test_request_hooks(start, worker_class, tmp_path):
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "hooks.py").write_text(HOOKS.format(path=str(hook_log)))
    server = start(worker_class, "-w", "1", "-c", "python:hooks")
    server.get("/hooked", headers=b"X-Test: yes\r\n")
    assert wait_for(lambda: hook_log.exists() and "post GET /hooked" in hook_log.read_text())
    lines = hook_log.read_text().splitlines()
    assert "pre GET /hooked yes" in lines
    assert "post GET /hooked 200" in lines


def test_ssl_from_gunicorn_settings(start, worker_class, certificate):
    server = start(worker_class, "-w", "1", tls=certificate)
    assert server.info()["wsgi.url_scheme"] == "https"
    sock = server.connect()
    for _ in range(2):                                   # keep-alive over TLS
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
    sock.close()


def test_secure_scheme_headers_from_trusted_peer(start, worker_class):
    server = start(worker_class, "-w", "1")         # forwarded_allow_ips: 127.0.0.1 by default
    assert server.info()["wsgi.url_scheme"] == "http"
    info = server.info(headers=b"X-Forwarded-Proto: https\r\n")
    assert info["wsgi.url_scheme"] == "https"
    assert server.info(headers=b"X-Forwarded-Proto: http\r\n")["wsgi.url_scheme"] == "http"
    # two scheme headers that disagree: refused
    status, _ = server.get("/info", headers=b"X-Forwarded-Proto: https\r\n"
                                            b"X-Forwarded-Ssl: off\r\n")
    assert status == 400


def test_untrusted_peer_cannot_set_scheme_or_proxy(start, worker_class):
    if GUNICORN_VERSION < (24, 1):
        pytest.skip("proxy_protocol modes need gunicorn 24.1")
    server = start(worker_class, "-w", "1", "--forwarded-allow-ips", "10.9.9.9",
                   "--proxy-protocol", "auto", "--proxy-allow-from", "10.9.9.9")
    info = server.info(headers=b"X-Forwarded-Proto: https\r\n")
    assert info["wsgi.url_scheme"] == "http"
    status, _ = server.get("/info", prefix=b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n")
    assert status == 403


def _proxy_v2(source, destination, sport, dport):
    addresses = (socket.inet_aton(source) + socket.inet_aton(destination)
                 + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11])
            + len(addresses).to_bytes(2, "big") + addresses)


def test_proxy_protocol(start, worker_class):
    if GUNICORN_VERSION < (24, 1):
        pytest.skip("proxy_protocol modes need gunicorn 24.1")
    server = start(worker_class, "-w", "1", "--proxy-protocol", "auto")
    info = server.info(prefix=b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n")
    assert (info["REMOTE_ADDR"], info["PROXY_PROTOCOL"], info["PROXY_ADDR"]) == \
        ("1.2.3.4", "TCP4", "5.6.7.8")
    info = server.info(prefix=_proxy_v2("9.8.7.6", "5.4.3.2", 2222, 443))
    assert (info["REMOTE_ADDR"], info["PROXY_PROTOCOL"], info["PROXY_ADDR"]) == \
        ("9.8.7.6", "TCP4", "5.4.3.2")
    assert server.info()["REMOTE_ADDR"] == "127.0.0.1"   # the header is optional
    reply = server.raw(b"PROXY TCP4 1.2.3.4 nonsense 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert wait_for(lambda: "1.2.3.4" in server.access_log.read_text(), 5)


def test_proxy_header_in_pieces_and_from_a_peer_not_allowed(start):
    """GreenWorker reads the PROXY header through the sans-IO reader: a header in pieces is
    put together, UNKNOWN keeps the connection's address, and a peer that may not send a
    header is refused on its first bytes rather than after the header timeout."""
    if GUNICORN_VERSION < (24, 1):
        pytest.skip("proxy_protocol modes need gunicorn 24.1")
    server = start("loop.worker.GreenWorker", "-w", "1", "--proxy-protocol", "auto")
    header = _proxy_v2("9.8.7.6", "5.4.3.2", 2222, 443)
    sock = server.connect()
    try:
        for piece in (header[:5], header[5:14], header[14:20], header[20:]):
            sock.sendall(piece)
            time.sleep(0.05)
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = server._read_all(sock)
    finally:
        sock.close()
    info = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (info["REMOTE_ADDR"], info["PROXY_ADDR"]) == ("9.8.7.6", "5.4.3.2")
    info = server.info(prefix=b"PROXY UNKNOWN ff::1 whatever\r\n")
    assert (info["REMOTE_ADDR"], info["PROXY_PROTOCOL"]) == ("127.0.0.1", "UNKNOWN")
    server.stop()

    server = start("loop.worker.GreenWorker", "-w", "1", "--proxy-protocol", "auto",
                   "--proxy-allow-from", "10.9.9.9")
    sock = server.connect(timeout=5)
    try:
        sock.sendall(header[:14])       # the signature and more: a header, not yet complete
        reply = sock.recv(65536)        # before: nothing until the 10 s header timeout
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 403"), reply


def test_script_name_from_the_environment(start, worker_class):
    server = start(worker_class, "-w", "1", "-e", "SCRIPT_NAME=/mount")
    info = server.info("/mount/info")
    assert (info["SCRIPT_NAME"], info["PATH_INFO"]) == ("/mount", "/info")


def test_early_hints(start, worker_class):
    if GUNICORN_VERSION < (23, 0) and worker_class.endswith("GreenGunicornWorker"):
        pytest.skip("wsgi.early_hints needs gunicorn 23")
    server = start(worker_class, "-w", "1")
    reply = server.raw(b"GET /hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 103 Early Hints\r\n"), reply
    hints, _, rest = reply.partition(b"\r\n\r\n")
    assert b"Link: </style.css>; rel=preload; as=style" in hints
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    # an HTTP/1.0 client gets no 1xx
    reply = server.raw(b"GET /hints HTTP/1.0\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply
