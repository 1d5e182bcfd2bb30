"""Clients for the tests that load a server while it winds down or is soaked: each request
carries an id that the application records when it runs it, so that a test can tell requests
run and answered from requests run and lost.

The application side: ``GET`` or ``POST /ledger`` with an ``X-Id`` header reads the body, appends
the id (one line) to the file named by the ``LEDGER`` environment variable, and answers with the
id as the body (``?size=N``: N bytes of padding before it)."""
import os
import selectors
import socket
import threading
import time
from urllib.parse import parse_qs


def ledger_app(environ, start_response):
    """The application side of ``/ledger`` (see the module's docstring)."""
    request_id = environ.get("HTTP_X_ID", "-")
    environ["wsgi.input"].read()
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(request_id + "\n")
    size = int(parse_qs(environ.get("QUERY_STRING", "")).get("size", ["0"])[0])
    # A new body per request, as an application builds one: a response that a failed
    # connection kept alive would show in the process's memory.
    body = b"x" * size + request_id.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


class LedgerLoad:
    """Keep-alive clients of ``/ledger`` that always have their next request on the wire
    before the previous response arrives (``depth`` requests outstanding per connection), so a
    server winding down always finds a next request already sent.

    Every request carries an id; the app records the ids it runs, the client the ids whose
    response it got.  A response saying ``Connection: close`` ends the sending on that
    connection: the requests already pipelined behind it must then go unanswered *and* unrun.
    A connection the server closes is replaced while the load runs.  Runs in a thread, for
    ``seconds``; then it stops sending and waits (boundedly) for the outstanding responses."""

    def __init__(self, port, connections=20, depth=2, prefix="k"):
        self.port = port
        self.prefix = prefix + "-"        # ids of this load: the ledger may hold others'
        self.connections = connections
        self.depth = depth
        self.sent = set()
        self.answered = set()
        self.cut_with_bytes = 0       # connections closed in the middle of a response
        self.mismatched = []          # responses that answered another request
        self.unfinished = 0           # requests still outstanding when the wait gave up
        self.reconnects = 0
        self._next_id = 0
        self._selector = selectors.DefaultSelector()
        self._thread = None
        self.error = None

    def start(self, seconds):
        self._thread = threading.Thread(target=self._run_safely, args=(seconds,), daemon=True)
        self._thread.start()
        return self

    def join(self, timeout=30):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"
        if self.error is not None:
            raise self.error

    def executed(self, ledger_path):
        """The ids of this load that the app ran."""
        if not ledger_path.exists():
            return set()
        prefix = self.prefix
        return {line for line in ledger_path.read_text().split() if line.startswith(prefix)}

    def lost(self, ledger_path):
        """Requests the app ran whose response never arrived."""
        executed = self.executed(ledger_path)
        assert self.answered <= executed, "answered but never run: %r" % (
            sorted(self.answered - executed)[:5],)
        return executed - self.answered

    def summary(self, ledger_path):
        executed = self.executed(ledger_path)
        return ("sent %d, executed %d, answered %d, executed but unanswered %d, cut mid-response "
                "%d, unfinished %d, reconnects %d" % (
                    len(self.sent), len(executed), len(self.answered),
                    len(executed - self.answered), self.cut_with_bytes, self.unfinished,
                    self.reconnects))

    def _run_safely(self, seconds):
        try:
            self._run(seconds)
        except BaseException as exc:      # handed to join()
            self.error = exc

    def _connect(self):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return False                  # the server is gone (TERM): fewer connections
        sock.setblocking(False)
        conn = {"sock": sock, "buffer": b"", "pending": [], "closing": False}
        self._selector.register(sock, selectors.EVENT_READ, conn)
        for _ in range(self.depth):
            self._send(conn)
        return True

    def _send(self, conn):
        self._next_id += 1
        request_id = "%s%d" % (self.prefix, self._next_id)
        try:
            conn["sock"].send(b"GET /ledger HTTP/1.1\r\nHost: x\r\nX-Id: %s\r\n\r\n"
                              % request_id.encode())
        except OSError:
            return                        # the read side will see the close
        self.sent.add(request_id)
        conn["pending"].append(request_id)

    def _drop(self, conn):
        self._selector.unregister(conn["sock"])
        conn["sock"].close()

    def _receive(self, conn, sending):
        try:
            data = conn["sock"].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if conn["buffer"]:
                self.cut_with_bytes += 1
            self._drop(conn)
            if sending and self._connect():
                self.reconnects += 1
            return
        conn["buffer"] += data
        while True:
            head, found, rest = conn["buffer"].partition(b"\r\n\r\n")
            if not found:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    conn["closing"] = True
            if len(rest) < length:
                return
            body, conn["buffer"] = rest[:length], rest[length:]
            expected = conn["pending"].pop(0) if conn["pending"] else None
            if body.decode() != expected or not head.startswith(b"HTTP/1.1 200"):
                self.mismatched.append((expected, head, body))
            else:
                self.answered.add(expected)
            if sending and not conn["closing"]:
                self._send(conn)

    def _run(self, seconds):
        for _ in range(self.connections):
            self._connect()
        selector = self._selector
        deadline = time.monotonic() + seconds
        give_up = deadline + 10
        while True:
            now = time.monotonic()
            sending = now < deadline
            if not sending:
                waiting = [key.data for key in selector.get_map().values()
                           if key.data["pending"]]
                if not waiting or now > give_up:
                    self.unfinished = sum(len(conn["pending"]) for conn in waiting)
                    break
            for key, _ in selector.select(0.2):
                self._receive(key.data, sending)
        for key in list(selector.get_map().values()):
            self._drop(key.data)
        selector.close()
