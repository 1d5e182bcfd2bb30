"""The line protocol over TCP: what ``nc 127.0.0.1 7000`` talks to.

Lines end with ``\\n`` (a ``\\r`` before it is dropped) and are UTF-8.  Reading is done with our
own buffer instead of ``makefile().readline()`` so that an overlong line is refused as soon as
``MAX_LINE_BYTES`` have arrived without a newline: the rest of it is skipped as it comes, and
the server never buffers more than one limit's worth per client.
"""
import socket

import loop

from chat import events
from chat.admission import refuse_tcp
from chat.connection import serve
from chat.limits import MAX_LINE_BYTES
from chat.session import Session

__all__ = ["TcpTransport", "make_handler"]

_RECV_SIZE = 16384
_SEND_BYTES = 65536


class TcpTransport:
    def __init__(self, sock, max_line=MAX_LINE_BYTES):
        self.sock = sock
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False       # inside an overlong line: drop bytes until its newline

    def receive_line(self, guard, before_wait=None):
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
            if before_wait is not None:
                before_wait()
            try:
                data = self.sock.recv(_RECV_SIZE)
            except OSError:
                return None
            if not data:
                return None
            buffer += data

    def send_events(self, batch):
        # The items are lines already rendered: one join and one sendall per wake-up of the
        # writer, however many messages it found queued.  A long backlog goes in pieces of
        # about _SEND_BYTES: joining hundreds of KB at once costs a fresh mmap and its page
        # faults on every write (a third of the CPU of a burst, measured), and a connection's
        # socket buffers take about that much at a time anyway.
        sendall = self.sock.sendall
        if len(batch) <= 64:
            sendall(b"".join(batch))
            return
        lines = list(batch)
        step = max(1, len(lines) * _SEND_BYTES // sum(map(len, lines)))
        for start in range(0, len(lines), step):
            sendall(b"".join(lines[start:start + step]))

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


def _keep_alive(sock):
    # An ``nc`` user may stay silent for hours, so there is no idle timeout on this port (and
    # the line protocol has no ping); TCP keep-alive probes find the peers that are gone
    # without a word (a machine switched off, a dropped network) after about two minutes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def make_handler(chat):
    """The ``handle(sock, address)`` function for :class:`loop.server.StreamServer`."""
    admission = chat.admission

    def handle(sock, address):
        if not admission.enter(address):
            refuse_tcp(sock)
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(sock)
            serve(Session(chat, "tcp", address, events.Event.as_line), TcpTransport(sock))
        finally:
            admission.leave(address)
    return handle
