"""A short soak of both servers: ordinary and hostile clients at once, then a graceful stop.

``WSGIServer`` (in a subprocess) and ``gunicorn -k loop.worker.GreenWorker`` each get, at the
same time: kept-alive clients with their next request always on the wire, one-shot clients,
slow readers (steady, reading a 1 MiB response at about 256 KB/s), slow writers (a head and a
64 KiB body in small pieces), stalled readers (who ask for 4 MiB and take nothing), stalled
writers (a head or a body that stops), and clients that reset mid-request or mid-response.

Checked, per server:

* every request of a client that waited for its answer was answered, with its own body, and
  nothing was answered that the application did not run;
* after the soak, once the server's no-progress timeout has cut the stalled clients, the
  process's RSS is back near what it was after a warm-up with the same mix (a failed connection
  that kept its response alive until a full garbage collection would show here: 4 MiB per
  stalled reader);
* a graceful stop (SIGTERM) under load runs no request that it does not answer;
* nothing unexpected in the server's error output (no traceback).

``LOOP_SOAK_SECONDS`` sets the length of the mixed phase per server (default 8); the whole test
takes about 20 s more per server (start, warm-up, settling, the stop).
"""
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from load_clients import LedgerLoad

TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(TESTS), "src")

SOAK_SECONDS = float(os.environ.get("LOOP_SOAK_SECONDS", "8"))
WARMUP_SECONDS = 3.0
#: The servers' no-progress timeout (WSGIServer's ``timeout``, gunicorn's ``--timeout``).
TIMEOUT = 4
#: Long enough after the last stalled client for the timeout to have cut it.
SETTLE_SECONDS = TIMEOUT + 2.5
#: How much the RSS may grow from after the warm-up to after the soak.
RSS_MARGIN_KB = 40 * 1024

pytestmark = pytest.mark.timeout(60 + 6 * SOAK_SECONDS)

APP = textwrap.dedent('''
    import os
    from load_clients import ledger_app

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/rss":
            with open("/proc/self/status") as status:
                rss = [line.split()[1] for line in status if line.startswith("VmRSS:")][0]
            body = ("%d %s" % (os.getpid(), rss)).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        return ledger_app(environ, start_response)
''')

WSGI_SERVER = textwrap.dedent('''
    import signal, sys
    import loop
    from loop.pywsgi import WSGIServer
    from soakapp import app

    server = WSGIServer(("127.0.0.1", 0), app, log=False, timeout={timeout},
                        header_timeout={timeout}, keepalive_timeout=5)
    server.init_socket()
    print(server.server_port, flush=True)
    loop.signal_handler(signal.SIGTERM, server.stop, 10)
    server.serve_forever()
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process under test: its port, its error output, its ledger."""

    def __init__(self, tmp_path, kind):
        (tmp_path / "soakapp.py").write_text(APP)
        self.ledger = tmp_path / "ledger"
        self.errors = tmp_path / "errors.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([SRC, str(tmp_path), TESTS,
                                             env.get("PYTHONPATH", "")])
        env["LEDGER"] = str(self.ledger)
        self._error_file = open(self.errors, "wb")
        if kind == "WSGIServer":
            command = [sys.executable, "-c", WSGI_SERVER.format(timeout=TIMEOUT)]
            self.proc = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                                         stdout=subprocess.PIPE, stderr=self._error_file)
            self.port = int(self.proc.stdout.readline())
        else:
            self.port = free_port()
            command = [sys.executable, "-m", "gunicorn", "-k", "loop.worker.GreenWorker",
                       "-w", "1", "-b", "127.0.0.1:%d" % self.port, "--timeout", str(TIMEOUT),
                       "--graceful-timeout", "10", "--keep-alive", "5", "--log-level", "info",
                       "--no-control-socket", "soakapp:app"]
            self.proc = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                                         stdout=subprocess.DEVNULL, stderr=self._error_file)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.rss()
                break
            except OSError:
                assert self.proc.poll() is None, self.log()
                assert time.monotonic() < deadline, self.log()
                time.sleep(0.1)

    def log(self):
        return self.errors.read_text(errors="replace")

    def rss(self):
        """(pid, RSS in kB) of the process that serves (gunicorn's worker)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"GET /rss HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = _read_all(sock)
        pid, rss = data.partition(b"\r\n\r\n")[2].split()
        return int(pid), int(rss)

    def executed(self):
        return set(self.ledger.read_text().split()) if self.ledger.exists() else set()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._error_file.close()


def _read_all(sock):
    data = b""
    try:
        while True:
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece
    except ConnectionResetError:
        return data


def _reset(sock):
    """Close with a reset (RST) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Tally:
    """What the clients of one phase sent, got answered, and gave up on themselves."""

    def __init__(self, phase):
        self.phase = phase
        self.lock = threading.Lock()
        self.must_answer = set()        # sent by clients that wait for their answer
        self.answered = set()
        self.gave_up = set()            # the client reset or stopped reading or sending
        self.problems = []
        self._next = 0

    def new_id(self, kind):
        with self.lock:
            self._next += 1
            return "%s-%s%d" % (self.phase, kind, self._next)

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 20:
                self.problems.append(text)


def _request(request_id, size=0, method=b"GET", body=b"", close=False):
    head = b"%s /ledger?size=%d HTTP/1.1\r\nHost: x\r\nX-Id: %s\r\n" % (
        method, size, request_id.encode())
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n"


def _read_response(sock, buffer=b"", chunk=65536, pause=0.0):
    """One response: (head, body, rest of the buffer); pause between reads to read slowly.
    Raises ConnectionError if the connection ends first."""
    while b"\r\n\r\n" not in buffer:
        piece = sock.recv(chunk)
        if not piece:
            raise ConnectionError("closed before a response head (%d bytes)" % len(buffer))
        buffer += piece
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        if pause:
            time.sleep(pause)
        piece = sock.recv(chunk)
        if not piece:
            raise ConnectionError("closed in a response body (%d of %d)" % (len(buffer), length))
        buffer += piece
    return head, buffer[:length], buffer[length:]


# -- the clients: each loops until ``until`` ------------------------------------------------------

def _answered(tally, request_id, head, body, size):
    if head.startswith(b"HTTP/1.1 200") and body == b"x" * size + request_id.encode():
        with tally.lock:
            tally.answered.add(request_id)
    else:
        tally.problem("%s answered %r with %d bytes" % (request_id, head[:40], len(body)))


def one_shot(port, tally, until):
    while time.monotonic() < until:
        request_id = tally.new_id("o")
        with tally.lock:
            tally.must_answer.add(request_id)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(_request(request_id, close=True))
                head, body, _ = _read_response(sock)
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            continue
        _answered(tally, request_id, head, body, 0)


def slow_reader(port, tally, until, size=1 << 20):
    """Reads each response at about 256 KB/s (16 KiB every 60 ms): slow, never stalled."""
    sock = None
    while time.monotonic() < until:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        request_id = tally.new_id("s")
        with tally.lock:
            tally.must_answer.add(request_id)
        try:
            sock.sendall(_request(request_id, size))
            head, body, _ = _read_response(sock, chunk=16384, pause=0.06)
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            sock.close()
            sock = None
            continue
        _answered(tally, request_id, head, body, size)
    if sock is not None:
        sock.close()


def slow_writer(port, tally, until):
    """Sends its head in three pieces and a 64 KiB body in 4 KiB pieces, 30-100 ms apart."""
    sock = None
    body = b"b" * 65536
    while time.monotonic() < until:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        request_id = tally.new_id("w")
        with tally.lock:
            tally.must_answer.add(request_id)
        head = _request(request_id, method=b"POST", body=body)
        try:
            for index in range(3):
                sock.sendall(head[index * len(head) // 3:(index + 1) * len(head) // 3])
                time.sleep(0.1)
            for offset in range(0, len(body), 4096):
                sock.sendall(body[offset:offset + 4096])
                time.sleep(0.03)
            response_head, response_body, _ = _read_response(sock)
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            sock.close()
            sock = None
            continue
        _answered(tally, request_id, response_head, response_body, 0)
    if sock is not None:
        sock.close()


def stalled_reader(port, tally, until):
    """Asks for 4 MiB, takes nothing until the server must have cut it, then resets."""
    while time.monotonic() < until:
        request_id = tally.new_id("r")
        with tally.lock:
            tally.gave_up.add(request_id)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(_request(request_id, 4 << 20))
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            continue
        time.sleep(TIMEOUT + 1)
        _reset(sock)


def stalled_writer(port, tally, until):
    """Stops in the middle of a head or of a body, then goes away."""
    while time.monotonic() < until:
        request_id = tally.new_id("h")
        with tally.lock:
            tally.gave_up.add(request_id)
        request = _request(request_id, method=b"POST", body=b"b" * 65536)
        if random.random() < 0.5:
            request = request[:len(request) // 2]           # half a head
        else:
            request += b"b" * 1000                          # the head and a bit of the body
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            continue
        time.sleep(random.uniform(0.2, TIMEOUT + 1))
        if random.random() < 0.5:
            _reset(sock)
        else:
            sock.close()


def resetter(port, tally, until):
    """Resets right after its request, or after the first bytes of a 1 MiB response."""
    while time.monotonic() < until:
        request_id = tally.new_id("x")
        with tally.lock:
            tally.gave_up.add(request_id)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(_request(request_id, 1 << 20))
            if random.random() < 0.5:
                sock.recv(1024)
        except OSError as exc:
            tally.problem("%s: %s" % (request_id, exc))
            continue
        _reset(sock)
        time.sleep(0.02)


def run_mix(port, seconds, phase):
    """Every kind of client at once for ``seconds``; the tally and the pipelined load."""
    tally = Tally(phase)
    until = time.monotonic() + seconds
    pipelined = LedgerLoad(port, connections=20, prefix=phase + "-k").start(seconds)
    kinds = [(one_shot, 2), (slow_reader, 4), (slow_writer, 4), (stalled_reader, 6),
             (stalled_writer, 2), (resetter, 2)]
    threads = [threading.Thread(target=kind, args=(port, tally, until), daemon=True)
               for kind, count in kinds for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
        assert not thread.is_alive(), "a client of the soak hangs"
    pipelined.join(60)
    return tally, pipelined


def check_mix(server, tally, pipelined):
    executed = server.executed()
    summary = "%s; %d must answer, %d answered, %d given up" % (
        pipelined.summary(server.ledger), len(tally.must_answer), len(tally.answered),
        len(tally.gave_up))
    assert not tally.problems, (tally.problems, summary)
    # No stop in this phase: every request of a client that waits is answered.
    assert tally.must_answer <= tally.answered, (
        sorted(tally.must_answer - tally.answered)[:10], summary)
    assert tally.answered <= executed, summary
    assert not pipelined.mismatched, (pipelined.mismatched[:3], summary)
    assert pipelined.sent == pipelined.answered, summary
    assert pipelined.answered <= executed, summary
    return summary


@pytest.mark.parametrize("kind", ["WSGIServer", "GreenWorker"])
def test_soak(tmp_path, kind):
    if kind == "GreenWorker":
        pytest.importorskip("gunicorn")
    server = Server(tmp_path, kind)
    try:
        # Warm-up with the same mix: caches, pools and the allocator's high-water mark.
        tally, pipelined = run_mix(server.port, WARMUP_SECONDS, "warm")
        check_mix(server, tally, pipelined)
        time.sleep(SETTLE_SECONDS)
        pid, rss_warm = server.rss()

        tally, pipelined = run_mix(server.port, SOAK_SECONDS, "soak")
        summary = check_mix(server, tally, pipelined)
        time.sleep(SETTLE_SECONDS)
        same_pid, rss_after = server.rss()
        assert same_pid == pid, "the serving process was replaced: %s" % server.log()[-3000:]
        assert rss_after < rss_warm + RSS_MARGIN_KB, (rss_warm, rss_after, summary)

        # A graceful stop under load: nothing run is lost, nothing lost was run.
        stopping = Tally("stop")
        until = time.monotonic() + 2.5
        load = LedgerLoad(server.port, connections=20, prefix="stop-k").start(2.5)
        readers = [threading.Thread(target=slow_reader, args=(server.port, stopping, until),
                                    daemon=True) for _ in range(2)]
        for thread in readers:
            thread.start()
        time.sleep(1)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0, server.log()[-3000:]
        load.join(30)
        for thread in readers:
            thread.join(30)
        executed = server.executed()
        summary = load.summary(server.ledger)
        assert not load.lost(server.ledger), summary
        assert not (executed & stopping.must_answer) - stopping.answered, stopping.problems
        assert load.cut_with_bytes == 0 and not load.mismatched, summary
        log = server.log()
        assert "Traceback" not in log, log[-5000:]
        print("%s: RSS %d kB after warm-up, %d kB after the soak; %s" % (
            kind, rss_warm, rss_after, summary))
    finally:
        server.stop()
