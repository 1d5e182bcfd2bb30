"""Django and Flask, unchanged, served by loop: ``loop.pywsgi.WSGIServer`` after ``patch_all()``
and ``gunicorn -k loop.worker.GreenWorker``, on both hub backends.

The apps live in ``tests/apps`` (``djsite``: ORM on SQLite or PostgreSQL, a template, an
outbound HTTP call with urllib; ``flaskapp``: an outbound call with requests, a Jinja template,
``flask.g``).  Each request waits on I/O for D seconds (a slow HTTP service in its own process,
and ``pg_sleep`` on PostgreSQL).  N requests sent at once by N real client threads must finish in
about one request's time (under 5 x D; serial handling would take N x D), and every
answer must be the one for its own request.  ``DJANGO_ALLOW_ASYNC_UNSAFE`` is never set: Django's
guard against ORM calls from inside an event loop must not see one in a green thread.

Skips, with the reason, when Django, Flask, requests, gunicorn, psycopg or the PostgreSQL
server binaries are missing.
"""
import concurrent.futures
import contextlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import pg_helpers

pytestmark = pytest.mark.timeout(240)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
APPS = os.path.join(HERE, "apps")
N = 50
D = 0.5
#: Row numbers unique per test, so tests sharing one PostgreSQL database never see each
#: other's rows.
_number_blocks = itertools.count(1)


def child_env(backend, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, APPS, env.get("PYTHONPATH", "")])
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("LOOP_BACKEND", None)
    if backend != "uvloop":
        env["LOOP_BACKEND"] = backend
    env.update(extra)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- services ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_service():
    """The slow outbound HTTP service (plain threads, no loop); yields its base URL."""
    proc = subprocess.Popen([sys.executable, os.path.join(APPS, "slow_http.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), "slow HTTP service did not start: %r" % (line,)
        yield "http://127.0.0.1:%d" % int(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth); yields its port."""
    pytest.importorskip("psycopg")
    with pg_helpers.postgres_server(max_connections=200) as port:
        yield port


# -- serving -------------------------------------------------------------------------------------

class Served:
    """A server process running a WSGI app; ``log()`` is what it wrote to stderr."""

    def __init__(self, proc, port, log_path):
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def get(self, path, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def wait_ready(self, deadline=60):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("server exited (%s):\n%s" % (self.proc.returncode,
                                                                  self.log()))
            try:
                status, body = self.get("/ping", timeout=5)
            except OSError:
                time.sleep(0.1)
                continue
            assert (status, body) == (200, "pong"), (status, body, self.log())
            return
        raise AssertionError("server did not come up:\n%s" % self.log())


@contextlib.contextmanager
def serve(target, server, backend, tmp_path, **env):
    """Run WSGI app ``target`` ("module:attribute") under ``server``."""
    log_path = str(tmp_path / ("%s.log" % server))
    env = child_env(backend, **env)
    with open(log_path, "w") as log:
        if server == "WSGIServer":
            proc = subprocess.Popen([sys.executable, os.path.join(APPS, "serve_wsgi.py"), target],
                                    stdout=subprocess.PIPE, stderr=log, text=True,
                                    cwd=str(tmp_path), env=env)
            line = proc.stdout.readline()
            port = int(line) if line.strip().isdigit() else None
        else:
            gunicorn = pytest.importorskip("gunicorn")
            port = free_port()
            command = [sys.executable, "-m", "gunicorn", "-k", "loop.worker.GreenWorker",
                       "-w", "1", "--worker-connections", "500", "-b", "127.0.0.1:%d" % port,
                       "--timeout", "60", "--graceful-timeout", "5", target]
            if tuple(int(p) for p in gunicorn.__version__.split(".")[:2]) >= (25, 0):
                command.insert(-1, "--no-control-socket")
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                    cwd=str(tmp_path), env=env)
    served = Served(proc, port, log_path)
    try:
        if port is None:
            proc.wait(30)
            raise AssertionError("server did not start:\n%s" % served.log())
        served.wait_ready()
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if server == "WSGIServer" else signal.SIGQUIT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def check_concurrent(served, paths_and_expected, one_wait):
    """GET one path alone, then all of them at once from real client threads; every answer
    must be its own, and the batch must take far less than the requests one after another."""
    path, expected = paths_and_expected[0]
    start = time.monotonic()
    status, body = served.get(path)
    single = time.monotonic() - start
    assert (status, body.strip()) == (200, expected), (status, body, served.log())

    batch = paths_and_expected[1:]

    def fetch(item):
        path, expected = item
        try:
            status, body = served.get(path)
        except OSError as exc:
            return path, expected, None, repr(exc)
        return path, expected, status, body.strip()

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(batch)) as clients:
        answers = list(clients.map(fetch, batch))
    elapsed = time.monotonic() - start
    wrong = [answer for answer in answers if (answer[2], answer[3]) != (200, answer[1])]
    assert not wrong, "%d of %d answers wrong, first: %r\nserver log:\n%s" % (
        len(wrong), len(batch), wrong[0], served.log())
    print("one request %.2f s, %d concurrent %.2f s (serial would be %.1f s)"
          % (single, len(batch), elapsed, len(batch) * one_wait))
    # wide margin: about one wait when concurrent, N waits when serial
    assert elapsed < 5 * one_wait, (elapsed, "serial would be", len(batch) * one_wait)


@pytest.fixture(params=["uvloop", "asyncio"])
def backend(request):
    return request.param


@pytest.fixture(params=["WSGIServer", "GreenWorker"])
def server(request):
    return request.param


# -- Django --------------------------------------------------------------------------------------

def django_requests(db_wait, vendor):
    pytest.importorskip("django")
    first = next(_number_blocks) * 1000
    items = []
    for number in range(first, first + N + 1):
        path = "/visit/%d?http=%s&label=%%3Cb%%3E%d" % (number, D, number)
        echo = "%d" % number
        if db_wait:
            path += "&db=%s" % db_wait
            echo += "/db%d" % number
        expected = "visit %d label=&lt;b&gt;%d echo=%s count=1 db=%s" % (
            number, number, echo, vendor)
        items.append((path, expected))
    return items


def test_django_sqlite(server, backend, slow_service, tmp_path):
    items = django_requests(None, "sqlite")
    with serve("djsite.wsgi:application", server, backend, tmp_path,
               DJSITE_DB="sqlite", DJSITE_SQLITE_PATH=str(tmp_path / "db.sqlite3"),
               DJSITE_SLOW_URL=slow_service) as served:
        check_concurrent(served, items, D)


def test_django_postgres(server, backend, slow_service, postgres, tmp_path):
    items = django_requests(D, "postgresql")
    with serve("djsite.wsgi:application", server, backend, tmp_path,
               DJSITE_DB="postgres", DJSITE_PG_PORT=str(postgres),
               DJSITE_SLOW_URL=slow_service) as served:
        # each request: the outbound call, then pg_sleep
        check_concurrent(served, items, 2 * D)


# -- Flask ---------------------------------------------------------------------------------------

def test_flask(server, backend, slow_service, tmp_path):
    pytest.importorskip("flask")
    pytest.importorskip("requests")
    items = []
    for number in range(N + 1):
        path = "/visit/%d?http=%s&label=%%3Cb%%3E%d" % (number, D, number)
        expected = "visit %d label=&lt;b&gt;%d echo=%d path=/visit/%d user=u%d" % (
            number, number, number, number, number)
        items.append((path, expected))
    with serve("flaskapp:app", server, backend, tmp_path,
               FLASKAPP_SLOW_URL=slow_service) as served:
        check_concurrent(served, items, D)
