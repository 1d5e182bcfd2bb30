"""What driving a connection from the event loop's protocol callbacks would save: a measurement.

    python bench/protocol_driven.py [--python PY] [--rounds 3] [--seconds 4] [--connections 100]

One candidate for compiled code (docs/performance.md) is a server connection driven by uvloop's
C transports, with a green thread entered only to run the application.  Before writing that in
C, this measures what the shape alone is worth, in Python.  The same hello-world application,
the same C request-head scanner (``loop._protocols._http_head``) and the same response-head
caches as ``loop.pywsgi``, served four ways, all after ``patch_all()``:

* ``WSGIServer``     -- ``loop.pywsgi.WSGIServer`` as it is: a green thread per connection that
                        reads with the green socket (``recv`` -> the hub's fd wait -> two
                        switches), parses with ``RequestReader`` and writes with ``try_send``;
* ``green-minimal``  -- a ``StreamServer`` handler doing only what this hello world needs on the
                        same green sockets (recv, scan, environ, application, head, try_send):
                        the cost of the green-socket shape without pywsgi's bookkeeping;
* ``protocol``       -- an ``asyncio.Protocol`` on the hub's loop: uvloop reads the socket in C
                        and calls ``data_received``, which scans the head and switches into the
                        connection's green thread with the environ; the green thread runs the
                        application, writes with ``transport.write`` and switches back.  One
                        switch pair per request, no fd wait, no ``Waiter``, no green socket;
* ``uvicorn``        -- uvicorn's ASGI hello world on httptools and uvloop, for scale.

The two prototypes serve only what the scanner accepts (keep-alive requests without a body)
and refuse anything else with a 400 and a close: they measure a path's cost, they are not
servers (no timeouts, flow control, limits or error handling).  Each server is pinned to CPU 0
with wrk on CPU 1; the table gives the median of the rounds: requests per second and the
server's CPU time (user + system, from ``/proc``) per request.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

from _procs import cpu_seconds, free_port, wait_port
from wsgi import APP, ASGI_APP

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")

WSGISERVER = APP + '''
import sys
import loop.monkey
loop.monkey.patch_all()
from loop.pywsgi import WSGIServer
WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=False, max_connections=20000,
           backlog=4096).serve_forever()
'''

# What both prototypes share: the environ's fixed part, and the answer to one request with
# pywsgi's own status-line, header-block and Date caches.
PROTOTYPE = APP + '''
import sys
import loop.monkey
loop.monkey.patch_all()
from loop import pywsgi
from loop._protocols._http_head import scan

BASE = {"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "prototype", "SERVER_NAME": "x",
        "SERVER_PORT": sys.argv[1], "SCRIPT_NAME": "", "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.input_terminated": True}
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\\r\\nConnection: close\\r\\n\\r\\n"
_started = [None, None]     # the application never blocks here: one response at a time


def start_response(status, headers, exc_info=None):
    _started[0] = pywsgi._status_lines.get(status) or pywsgi._status_line(status)
    _started[1] = pywsgi._header_blocks.get(tuple(headers)) or pywsgi._encode_headers(headers)


def requests_in(buffer, base):
    """(offset just past it, environ) for each whole head at the start of ``buffer``; the
    environ is None for a request with a body, which the prototypes refuse."""
    offset = 0
    while True:
        head = scan(buffer, offset, 8192, 65536, 100, None)
        if head is None:
            return
        offset = head[0]
        if head[6]:
            yield offset, None
            return
        environ = base.copy()
        environ.update(head[7])
        yield offset, environ


def answer(environ):
    body = b"".join(app(environ, start_response))
    line, (block, length) = _started
    head = [line, pywsgi._date.refresh(), block]
    if length is None:
        head.append(b"Content-Length: %d\\r\\n" % len(body))
    head.append(b"\\r\\n")
    head.append(body)
    return b"".join(head)
'''

PROTOCOL = PROTOTYPE + '''
import asyncio
import loop
from loop._core.hub import get_hub
from loop._switch import Fiber

hub = get_hub()
hub_fiber = hub.fiber


class Connection(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        peer = transport.get_extra_info("peername")
        self.base = dict(BASE, REMOTE_ADDR=peer[0], REMOTE_PORT=str(peer[1]))
        self.green = Fiber(self.serve, parent=hub_fiber)
        self.green.switch()             # runs until it waits for its first request

    def data_received(self, data):
        buffer = self.buffer + data if self.buffer else data
        offset = 0
        for offset, environ in requests_in(buffer, self.base):
            if environ is None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()
                return
            self.green.switch(environ)  # the application runs; back here when it answered
        self.buffer = buffer[offset:]

    def connection_lost(self, exc):
        if not self.green.dead:
            self.green.switch(None)

    def serve(self):
        while True:
            environ = hub_fiber.switch()
            if environ is None:
                return
            self.transport.write(answer(environ))


async def start():
    return await hub.loop.create_server(Connection, "127.0.0.1", int(sys.argv[1]),
                                        backlog=4096)

server = loop.await_(start())
loop.sleep(10 ** 6)
'''

GREEN_MINIMAL = PROTOTYPE + '''
from loop.server import StreamServer


def handle(sock, address):
    base = dict(BASE, REMOTE_ADDR=address[0], REMOTE_PORT=str(address[1]))
    buffer = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:     # wrk resets its connections at the end
            return
        if not data:
            return
        buffer = buffer + data if buffer else data
        offset = 0
        for offset, environ in requests_in(buffer, base):
            if environ is None:
                sock.sendall(BAD_REQUEST)
                return
            sock.try_send(answer(environ))
        buffer = buffer[offset:]


StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=4096).serve_forever()
'''


def run_one(python, code, seconds, connections):
    """(requests per second, server CPU microseconds per request) of one server."""
    workdir = tempfile.mkdtemp()
    port = free_port()
    if code is None:    # uvicorn, for scale
        with open(os.path.join(workdir, "helloasgi.py"), "w") as f:
            f.write(ASGI_APP)
        argv = [python, "-m", "uvicorn", "--workers", "1", "--loop", "uvloop", "--http",
                "httptools", "--no-access-log", "--log-level", "warning", "--backlog", "4096",
                "--app-dir", workdir, "--host", "127.0.0.1", "--port", str(port),
                "helloasgi:app"]
    else:
        path = os.path.join(workdir, "server.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(code))
        argv = [python, path, str(port)]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(["taskset", "-c", "0"] + argv, env=env,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % connections,
               "http://127.0.0.1:%d/" % port]
        subprocess.run(wrk[:-1] + ["-d1s", wrk[-1]], capture_output=True, check=True)
        before = cpu_seconds(server.pid)
        out = subprocess.run(wrk[:-1] + ["-d%ds" % seconds, wrk[-1]], capture_output=True,
                             text=True, check=True).stdout
        after = cpu_seconds(server.pid)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(workdir)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if "Non-2xx" in out or re.search(r"Socket errors: connect [1-9]|read [1-9]|write [1-9]", out):
        raise SystemExit("errors in the run:\n" + out)
    return requests / seconds, (after - before) / requests * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    servers = [("WSGIServer", WSGISERVER), ("green-minimal", GREEN_MINIMAL),
               ("protocol", PROTOCOL), ("uvicorn", None)]
    results = {name: [] for name, _ in servers}
    for _ in range(args.rounds):
        for name, code in servers:
            results[name].append(run_one(args.python, code, args.seconds, args.connections))
    print("%-14s %10s %18s" % ("server", "req/s", "CPU us / request"))
    for name, runs in results.items():
        print("%-14s %10.0f %18.2f" % (name, statistics.median(r for r, _ in runs),
                                      statistics.median(c for _, c in runs)))


if __name__ == "__main__":
    main()
