"""Helpers for the chat example's tests: start the server in a subprocess, talk to it.

Everything listens on 127.0.0.1 with ports chosen by the kernel (``--port 0``); the server
prints the ports it got, and :class:`ChatProcess` reads them from that line.
"""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAT_SERVER = os.path.join(ROOT, "examples", "chat_server.py")
_LISTEN_LINE = re.compile(r"line protocol on ([\d.]+):(\d+) .* web on http://([\d.]+):(\d+)/")


class ChatProcess:
    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, CHAT_SERVER, "--port", "0", "--http-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = _readline_with_timeout(self.proc.stdout, 20)
        match = _LISTEN_LINE.search(line or "")
        if not match:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"chat server did not start: {line!r}\n{out}\n{err}")
        self.tcp = (match.group(1), int(match.group(2)))
        self.http = (match.group(3), int(match.group(4)))
        self.url = f"http://{self.http[0]}:{self.http[1]}/"

    def client(self, **kwargs):
        return LineClient(self.tcp, **kwargs)

    def terminate(self, timeout=15):
        """SIGTERM, wait; returns (returncode, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("chat server did not exit after SIGTERM:\n" + err)
        return self.proc.returncode, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _readline_with_timeout(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else None


class LineClient:
    """A blocking TCP client of the line protocol, with timeouts everywhere."""

    def __init__(self, address, timeout=20, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.timeout = timeout
        self.buffer = b""
        self.lines = []              # every line received, in order
        self.closed = False

    def send(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\n")

    def _read_more(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(line.decode("utf-8") for line in complete)
        return True

    def expect(self, pattern, timeout=None):
        """Read until a line contains ``pattern`` (str) or matches it (compiled regex); return
        that line.  Lines before it stay in ``self.lines``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        start = getattr(self, "_cursor", 0)
        while True:
            for index in range(start, len(self.lines)):
                line = self.lines[index]
                if (pattern.search(line) if hasattr(pattern, "search") else pattern in line):
                    self._cursor = index + 1
                    return line
            start = len(self.lines)
            try:
                if not self._read_more(deadline):
                    raise AssertionError(f"connection closed before {pattern!r}; "
                                         f"got {_short(self.lines)}")
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {pattern!r}; got {_short(self.lines)}")

    def read_until_closed(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._read_more(deadline):
                pass
        except TimeoutError:
            raise AssertionError(f"connection not closed; last lines {_short(self.lines)}")
        except OSError:
            self.closed = True
        return self.lines

    def close(self):
        self.sock.close()


def _short(lines, count=8, width=120):
    """The last lines, each cut short: assertion messages stay readable."""
    return [line[:width] for line in lines[-count:]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
