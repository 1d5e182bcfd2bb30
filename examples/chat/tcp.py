"""The line protocol over TCP: what ``nc 127.0.0.1 7000`` talks to.

Lines end with ``\\n`` (a ``\\r`` before it is dropped) and are UTF-8.  Reading is done with our
own buffer instead of ``makefile().readline()`` so that an overlong line is refused as soon as
``MAX_LINE_BYTES`` have arrived without a newline: the rest of it is skipped as it comes, and
the server never buffers more than one limit's worth per client.
"""
import socket

import loop

from chat.connection import serve
from chat.limits import MAX_LINE_BYTES
from chat.session import Session

__all__ = ["TcpTransport", "make_handler"]

_RECV_SIZE = 16384


class TcpTransport:
    def __init__(self, sock, max_line=MAX_LINE_BYTES):
        self.sock = sock
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False       # inside an overlong line: drop bytes until its newline

    def receive_line(self, guard):
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                raw = bytes(buffer[:newline])
                del buffer[:newline + 1]
                if self._skipping:
                    self._skipping = False
                    continue
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if raw.strip():
                    return guard.check_bytes(raw)
                continue
            if self._skipping:
                buffer.clear()
            elif len(buffer) > self.max_line:
                buffer.clear()
                self._skipping = True
                guard.strike(f"line too long (max {self.max_line} bytes), ignored")
            try:
                data = self.sock.recv(_RECV_SIZE)
            except OSError:
                return None
            if not data:
                return None
            buffer += data

    def send_events(self, batch):
        # One sendall per batch: a busy room costs a client one syscall per wake-up, not one
        # per message.
        self.sock.sendall(b"".join([event.as_line() for event in batch]))

    def close(self, clean, reason):
        sock = self.sock
        try:
            if clean:
                # Half-close, then read (briefly) until the client closes too: closing with
                # unread input would make the kernel send RST, which can destroy the farewell
                # the client has not read yet.
                sock.shutdown(socket.SHUT_WR)
                with loop.Timeout(1.0, False):      # bounded: a flooder may never stop
                    while sock.recv(_RECV_SIZE):
                        pass
        except OSError:
            pass
        finally:
            sock.close()


def make_handler(chat):
    """The ``handle(sock, address)`` function for :class:`loop.server.StreamServer`."""
    def handle(sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        serve(Session(chat, "tcp", address), TcpTransport(sock))
    return handle
