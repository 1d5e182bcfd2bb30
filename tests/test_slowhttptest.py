"""loop.pywsgi.WSGIServer under slowhttptest, an attack tool written by others.

slowhttptest opens hundreds of connections that send their request head (slowloris), their body
(R-U-Dead-Yet) or read the response (slow read) a few bytes per second, and probes the server with
a normal request every second, recording in its CSV report whether the service answered.  These
tests hold the server to three things through each attack: the probe is always answered, the
attacking connections are cut by the server's own timeouts (the tool ends early with "No open
connections left" when they all are), and the process's memory stays bounded.  The server runs in
its own process with short timeouts (3 s) so that an attack is over in seconds.
"""
import csv
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("slowhttptest") is None,
                       reason="slowhttptest is not installed (Debian package slowhttptest)"),
]

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

SERVER = r"""
import sys
from loop import monkey; monkey.patch_all()
from loop.pywsgi import WSGIServer

BIG = b"x" * 1_000_000

def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = b"read %d\n" % len(environ["wsgi.input"].read())
    else:
        body = BIG if environ["PATH_INFO"] == "/big" else b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

server = WSGIServer(("127.0.0.1", 0), app, header_timeout=3, body_timeout=3, timeout=3,
                    log=False)
server.init_socket()
print(server.server_address[1], flush=True)
server.serve_forever()
"""

#: Memory the server may hold after an attack of a few hundred connections; it starts near 35 MB.
MAX_RSS = 150 * 1024 * 1024


@pytest.fixture
def server(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(proc.stdout.readline())
        yield proc, "http://127.0.0.1:%d" % port
    finally:
        proc.kill()
        proc.wait(10)


def attack(tmp_path, url, mode, *options, seconds):
    """Run slowhttptest; its exit status line and the rows of its CSV report."""
    prefix = str(tmp_path / mode.strip("-"))
    out = subprocess.run(["slowhttptest", mode, *options, "-l", str(seconds), "-p", "3", "-g",
                          "-o", prefix, "-u", url],
                         capture_output=True, text=True, errors="replace", timeout=seconds + 60)
    status = [line for line in out.stdout.splitlines() if "Exit status" in line]
    with open(prefix + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, out.stdout[-2000:]
    return (status[-1] if status else ""), rows


def rss_bytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def check_after(proc, url):
    assert proc.poll() is None, "the server exited: " + proc.stderr.read()[-2000:]
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        assert response.read() == b"hello\n"
    assert rss_bytes(proc.pid) < MAX_RSS


@pytest.mark.parametrize("mode, options", [
    ("-H", ["-c", "400", "-r", "200", "-i", "1", "-x", "10"]),            # slowloris
    ("-B", ["-c", "300", "-r", "150", "-i", "1", "-x", "10", "-s", "100000"]),  # slow body
], ids=["slowloris", "slow-body"])
def test_slow_senders_are_cut_and_the_service_stays_available(server, tmp_path, mode, options):
    proc, url = server
    status, rows = attack(tmp_path, url + "/", mode, *options, seconds=30)
    assert all(int(row["Service Available"]) > 0 for row in rows), rows
    # Every attacking connection was closed by the server (header/body timeouts of 3 s), long
    # before the 30 s the tool would have kept them open.
    assert "No open connections left" in status, (status, rows[-3:])
    assert int(rows[-1]["Seconds"]) < 20, rows[-3:]
    check_after(proc, url)


def test_slow_readers_do_not_take_the_service_down(server, tmp_path):
    proc, url = server
    started = time.monotonic()
    status, rows = attack(tmp_path, url + "/big", "-X", "-c", "200", "-r", "100", "-w", "1",
                          "-y", "64", "-n", "1", "-z", "8", "-k", "3", seconds=10)
    assert time.monotonic() - started < 60
    assert any(int(row["Connected"]) >= 100 for row in rows), rows   # the attack did connect
    assert all(int(row["Service Available"]) > 0 for row in rows), rows
    check_after(proc, url)
    # Readers that stalled for the 3 s send timeout were cut and said so on stderr.
    proc.kill()
    assert "took no data for 3 s" in proc.stderr.read()
