"""Who may connect: connections per address, and the web server's slots.

Why
---
Every WebSocket keeps one green thread and one of the web server's connection slots for as long
as it is open.  With one pool for everything, a thousand idle WebSockets fill it and the page
itself stops answering; and one address alone could take every slot.  So:

Policy
------
* **Per address**: at most ``per_ip`` connections from one IP address at once, counted over
  both servers (line-protocol clients, and every HTTP connection: page requests and WebSockets
  alike).  One over that is refused at once: a TCP client is told so in one line, an HTTP client
  gets ``429 Too Many Requests``; both are then closed, and the refusal gives its server slot
  back before it waits for the client to hang up.
* **WebSocket slots**: at most ``max_web_clients`` WebSockets at once; an upgrade beyond that
  is answered ``503`` without upgrading (a browser reports a failed connection).
* **Room for pages**: the web server's pool is ``max_web_clients + page_connections``, so page
  and ``/stats.json`` requests always find a slot, however many WebSockets are open.
* **Dead and frozen clients** are found by :mod:`loop.websocket`'s timeouts: the server pings a
  quiet browser after ``ping_interval`` seconds (browsers answer by themselves) and closes a
  WebSocket it heard nothing from (no message, no pong) for ``idle_timeout`` seconds with 1001;
  a client that stops reading is cut after ``send_timeout`` seconds without progress (before
  that, the outbox policy of :mod:`chat.outbox` usually disconnects it).  Line-protocol
  clients may be silent for as long as they like; TCP keep-alive finds the vanished ones
  (:mod:`chat.tcp`).

Behind a reverse proxy every client has the proxy's address: raise ``per_ip`` there, and
limit per client at the proxy.  Forwarded headers are not trusted, since anybody can send one.
"""
import socket

import loop

__all__ = ["Admission", "refuse_http", "refuse_tcp"]


class Admission:
    """The counters behind the policy; every server of one chat process shares one."""

    def __init__(self, stats, per_ip=32, max_web_clients=1000):
        if per_ip < 1 or max_web_clients < 1:
            raise ValueError("limits must be at least 1")
        self.stats = stats          # chat.rooms.Stats: counts the refusals
        self.per_ip = per_ip
        self.max_web_clients = max_web_clients
        self.web_clients = 0
        self._open = {}             # IP address -> connections open from it

    def enter(self, address):
        """Count a new connection from ``address``; False (and not counted) when that address
        already has ``per_ip`` connections."""
        ip = _ip(address)
        count = self._open.get(ip, 0)
        if count >= self.per_ip:
            self.stats.connections_refused += 1
            return False
        self._open[ip] = count + 1
        return True

    def leave(self, address):
        ip = _ip(address)
        count = self._open.get(ip, 0) - 1
        if count > 0:
            self._open[ip] = count
        else:
            self._open.pop(ip, None)

    def open_web_client(self):
        """Take a WebSocket slot; False when all ``max_web_clients`` are taken."""
        if self.web_clients >= self.max_web_clients:
            self.stats.connections_refused += 1
            return False
        self.web_clients += 1
        return True

    def close_web_client(self):
        self.web_clients -= 1


def _ip(address):
    # (host, port) for IPv4, (host, port, flow, scope) for IPv6, a path for a unix socket.
    return address[0] if isinstance(address, tuple) else address


_TOO_MANY = "too many connections from your address"


def refuse_http(sock):
    """Answer 429 before reading the request, and hang up."""
    body = (_TOO_MANY + "\n").encode()
    head = ("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    _hang_up_after(sock, head + body)


def refuse_tcp(sock):
    """Tell a line-protocol client why, and hang up."""
    _hang_up_after(sock, f"!!! {_TOO_MANY}, bye\n".encode())


def _hang_up_after(sock, data):
    # The caller's server slot is given back at once (the server closes ``sock`` when the
    # handler returns); the answer goes out on a duplicate of the socket, in a green thread of
    # its own, so that refusing many connections cannot occupy the slots kept for pages.
    try:
        copy = sock.dup()
    except OSError:
        return
    loop.spawn(_say_and_close, copy, data)


def _say_and_close(sock, data):
    # Half-close after the answer, then read what the client already sent (briefly, boundedly):
    # closing with unread input would make the kernel reset the connection, and the client
    # could lose the answer.
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        with loop.Timeout(1.0, False):
            while sock.recv(16384):
                pass
    except OSError:
        pass
    finally:
        sock.close()
