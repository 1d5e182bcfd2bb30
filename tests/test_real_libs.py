"""Real libraries under loop.monkey.patch_all(), against real servers on loopback.

Each test starts its server in the (unpatched) pytest process or as a child process, then runs
the client code in a *patched child process*: N green threads ("threads" to the code) each
block D seconds in the library; together they must finish in about D, far below N x D, with
every result right.  Skips, with the reason, when a library or server binary is missing.
Python packages: requests, redis, psycopg[binary] (the 'reallibs' extra).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import pg_helpers

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 20
D = 0.5


def run_patched(code, timeout=90, **env_extra):
    """Run ``code`` (then the concurrency check) under ``python -m loop.monkey``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(textwrap.dedent(code) + textwrap.dedent(CONCURRENCY_CHECK))
    try:
        proc = subprocess.run([sys.executable, "-m", "loop.monkey", f.name],
                              capture_output=True, text=True, timeout=timeout, env=env)
    finally:
        os.unlink(f.name)
    assert proc.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr)
    return proc.stdout


CONCURRENCY_CHECK = """
    elapsed = time.monotonic() - start
    # wide margin: serial would be N*D = %(serial).1f s
    assert elapsed < %(limit).1f, elapsed
    print("elapsed %%.2f" %% elapsed)
""" % {"serial": N * D, "limit": N * D / 4}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# -- requests against a slow HTTP server ---------------------------------------------------------

SLOW_SERVER = """
import sys, time, http.server
class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(float(sys.argv[2]))
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


@pytest.fixture
def slow_http_server():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(port), str(D)])
    try:
        assert wait_for_port(port), "slow HTTP server did not start"
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_requests_concurrent(slow_http_server):
    pytest.importorskip("requests")
    run_patched("""
        import threading, time, requests
        results = {}
        def fetch(i):
            r = requests.get("http://localhost:%d/item/%%d" %% i, timeout=30)
            results[i] = (r.status_code, r.text)
        start = time.monotonic()
        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(%d)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == {i: (200, "/item/%%d" %% i) for i in range(%d)}, results
    """ % (slow_http_server, N, N))


# -- redis-py against redis-server --------------------------------------------------------------

@pytest.fixture
def redis_server(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port(port), "redis-server did not start"
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_redis_blocking_pops_are_concurrent(redis_server):
    pytest.importorskip("redis")
    run_patched("""
        import threading, time, redis
        client = redis.Redis(host="127.0.0.1", port=%d, max_connections=%d + 5)
        results = {}
        def pop(i):
            # blocks in the server until the value is pushed, %s s from now
            results[i] = client.blpop(["queue:%%d" %% i], timeout=20)
        start = time.monotonic()
        threads = [threading.Thread(target=pop, args=(i,)) for i in range(%d)]
        for t in threads: t.start()
        time.sleep(%s)
        pusher = redis.Redis(host="127.0.0.1", port=%d)
        for i in range(%d):
            pusher.rpush("queue:%%d" %% i, "value %%d" %% i)
        for t in threads: t.join()
        assert results == {i: (b"queue:%%d" %% i, b"value %%d" %% i) for i in range(%d)}, results
    """ % (redis_server, N, D, N, D, redis_server, N, N))


# -- subprocess ----------------------------------------------------------------------------------

def test_subprocess_concurrent():
    run_patched("""
        import threading, time, subprocess
        results = {}
        def run(i):
            results[i] = subprocess.check_output(["sh", "-c", "sleep %s; echo $0", str(i)],
                                                 text=True).strip()
        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(%d)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert results == {i: str(i) for i in range(%d)}, results
    """ % (D, N, N))


# -- psycopg 3 against PostgreSQL ----------------------------------------------------------------

@pytest.fixture
def postgres_server():
    with pg_helpers.postgres_server() as port:
        yield port


def test_psycopg_queries_are_concurrent(postgres_server):
    pytest.importorskip("psycopg")
    run_patched("""
        import threading, time, psycopg, psycopg.waiting
        results = {}
        def query(i):
            with psycopg.connect(host="127.0.0.1", port=%d, user="postgres",
                                 dbname="postgres") as conn:
                row = conn.execute("SELECT pg_sleep(%s), %%s::int * 2", (i,)).fetchone()
                results[i] = row[1]
        start = time.monotonic()
        threads = [threading.Thread(target=query, args=(i,)) for i in range(%d)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert psycopg.waiting.wait is psycopg.waiting.wait_poll
        assert results == {i: i * 2 for i in range(%d)}, results
    """ % (postgres_server, D, N, N))
