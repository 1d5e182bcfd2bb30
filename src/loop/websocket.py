"""WebSocket for WSGI applications served by :mod:`loop.pywsgi`.

Usage::

    from loop import websocket

    def app(environ, start_response):
        if websocket.is_websocket_request(environ):
            ws = websocket.upgrade(environ)
            for message in ws:              # str for text frames, bytes for binary frames
                ws.send(message)            # echo
            return []                       # the server closes the connection afterwards
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"not a websocket request\\n"]

Design
------
WSGI has no notion of handing a connection over, so the server offers one outside the spec:
for a request that asks to upgrade (``Connection: upgrade`` plus ``Upgrade``) the environ holds
the connection's handler under ``"loop.upgrade"``.  :func:`upgrade` validates the opening
handshake (RFC 6455 section 4.2.1), writes the ``101 Switching Protocols`` response through it,
and gets back the raw socket plus any bytes the client already sent after its request.  From
then on the server stays silent on that connection and closes it once the application returns.

Framing, masking, fragmentation, control frames, UTF-8 validation and permessage-deflate come
from wsproto's sans-IO :class:`wsproto.connection.Connection`; this module only moves bytes, so
it is written in the same blocking style as the server and works on threads and on loop's green
sockets alike.  Sends take a lock, so several threads or green threads may send on one socket
(a chat server broadcasting to a client while that client's own handler is sending); receiving
is for one reader at a time.
"""

from __future__ import annotations

import base64
import hashlib
import _thread
import socket

from loop._hub import _get_ident as _real_get_ident
from loop._hub import get_hub_if_exists

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage)
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["upgrade", "is_websocket_request", "WebSocket", "WebSocketError", "ConnectionClosed"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RECV_SIZE = 65536


class WebSocketError(Exception):
    """The request is not a valid WebSocket opening handshake, or the protocol broke."""


class ConnectionClosed(WebSocketError):
    """Raised by :meth:`WebSocket.send` once the connection is closed."""

    def __init__(self, code, reason):
        super().__init__(f"WebSocket closed ({code}): {reason}")
        self.code = code
        self.reason = reason


def is_websocket_request(environ):
    """True when the request asks for a WebSocket upgrade this server can perform."""
    return ("loop.upgrade" in environ
            and environ.get("HTTP_UPGRADE", "").lower() == "websocket"
            and environ.get("REQUEST_METHOD") == "GET")


def upgrade(environ, subprotocols=(), compress=True, max_message_size=1 << 20):
    """Accept the WebSocket handshake of this request and return a :class:`WebSocket`.

    ``subprotocols``: the protocols we speak, in order of preference; the first one the client
    also offers is chosen (``WebSocket.subprotocol``).  ``compress`` enables permessage-deflate
    when the client offers it.  Messages larger than ``max_message_size`` close the connection
    with code 1009.  Raises :class:`WebSocketError` when the request is not a valid handshake;
    the application should then answer 400 itself.
    """
    handler = environ.get("loop.upgrade")
    if handler is None:
        raise WebSocketError("not an upgrade request served by loop.pywsgi")
    if environ.get("REQUEST_METHOD") != "GET":
        raise WebSocketError("WebSocket handshake must use GET")
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        raise WebSocketError("Upgrade is not websocket")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != "13":
        raise WebSocketError("unsupported Sec-WebSocket-Version")
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise WebSocketError("invalid Sec-WebSocket-Key") from None
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())

    head = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: ", accept, b"\r\n"]
    chosen = None
    offered = [p.strip() for p in environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "").split(",")]
    for protocol in subprotocols:
        if protocol in offered:
            chosen = protocol
            head += [b"Sec-WebSocket-Protocol: ", protocol.encode("ascii"), b"\r\n"]
            break
    extensions = []
    offers = [o.strip() for o in environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", "").split(",")
              if o.strip()]
    if compress and offers:
        deflate = PerMessageDeflate()
        agreed = server_extensions_handshake(offers, [deflate])
        if agreed:
            extensions.append(deflate)
            head += [b"Sec-WebSocket-Extensions: ", agreed, b"\r\n"]
    head.append(b"\r\n")

    sock, data = handler.take_over(b"".join(head))
    return WebSocket(sock, data, extensions, chosen, max_message_size)


class WebSocket:
    """One server-side WebSocket connection, in blocking style.

    ``receive()`` returns the next message (``str`` or ``bytes``) or ``None`` once the
    connection is closed; iterating yields messages until then.  Pings are answered
    automatically.  ``close()`` starts (or completes) the closing handshake.
    """

    def __init__(self, sock, data=b"", extensions=(), subprotocol=None,
                 max_message_size=1 << 20):
        self.sock = sock
        self.subprotocol = subprotocol
        self.max_message_size = max_message_size
        self.close_code = None
        self.close_reason = None
        self._protocol = Connection(ConnectionType.SERVER, list(extensions), data)
        self._send_lock = _thread.allocate_lock()
        self._fragments = []
        self._fragments_size = 0
        self._closed = False

    @property
    def closed(self):
        return self._closed

    # -- sending ---------------------------------------------------------------------------------

    def _lock_sending(self):
        # Senders may be green threads of this connection's hub (often the reader answering a
        # ping while a writer is blocked on a slow client) or other OS threads. A plain lock
        # covers the threads; a green thread that finds it taken waits in the hub's thread
        # pool, so it blocks only itself, never the OS thread its hub runs in.
        if self._send_lock.acquire(False):
            return
        hub = get_hub_if_exists()
        if hub is None or hub.thread_ident != _real_get_ident():
            self._send_lock.acquire()
            return
        # If this green thread is killed while a pool thread waits for the lock on its behalf,
        # the lock must not end up held by nobody: whoever comes second hands it back.
        state = {"cancelled": False, "taken": False}
        guard = _thread.allocate_lock()

        def take():
            while True:
                got = self._send_lock.acquire(timeout=0.05)
                with guard:
                    if state["cancelled"]:
                        if got:
                            self._send_lock.release()
                        return
                    if got:
                        state["taken"] = True
                        return

        try:
            hub.threadpool.apply(take)
        except BaseException:
            with guard:
                state["cancelled"] = True
                if state["taken"]:
                    self._send_lock.release()
            raise

    def _send_event(self, event):
        self._lock_sending()
        try:
            if self._protocol.state is not ConnectionState.OPEN and \
                    not isinstance(event, CloseConnection):
                raise ConnectionClosed(self.close_code, self.close_reason)
            try:
                data = self._protocol.send(event)
            except LocalProtocolError as exc:
                raise ConnectionClosed(self.close_code, str(exc)) from None
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self._abort(1006, str(exc))
                raise ConnectionClosed(1006, str(exc)) from None
        finally:
            self._send_lock.release()

    def send(self, message):
        """Send a text (``str``) or binary (``bytes``) message."""
        if isinstance(message, str):
            self._send_event(TextMessage(data=message))
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self._send_event(BytesMessage(data=bytes(message)))
        else:
            raise TypeError(f"can only send str or bytes, not {type(message).__name__}")

    def ping(self, payload=b""):
        self._send_event(Ping(payload=payload))

    def close(self, code=1000, reason=""):
        """Send a close frame and wait (briefly) for the peer's, then close the socket."""
        if self._closed:
            return
        if self._protocol.state is ConnectionState.OPEN:
            try:
                self._send_event(CloseConnection(code=code, reason=reason))
            except ConnectionClosed:
                pass
            # Read until the peer answers our close frame, so that TCP does not reset data it
            # is still sending; bounded by a short timeout.
            try:
                self.sock.settimeout(5.0)
                while not self._closed and self._protocol.state is not ConnectionState.CLOSED:
                    if self._receive_some() is None and self._closed:
                        break
            except (OSError, WebSocketError):
                pass
        self._abort(self.close_code or code, self.close_reason or reason)

    def abort(self, code=1006, reason="aborted"):
        """Drop the connection at once, without a closing handshake. Safe to call while another
        green thread is blocked reading or writing: it is woken with ConnectionClosed."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._abort(code, reason)

    def _abort(self, code, reason):
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    # -- receiving -------------------------------------------------------------------------------

    def receive(self):
        """The next message, or ``None`` when the connection has closed."""
        while not self._closed:
            message = self._receive_some()
            if message is not None:
                return message
        return None

    def _receive_some(self):
        """Process one batch of events; a complete message, or None."""
        for event in self._protocol.events():
            message = self._on_event(event)
            if message is not None:
                return message
        if self._closed:
            return None
        if self._protocol.state is ConnectionState.CLOSED:
            self._abort(self.close_code or 1000, self.close_reason or "")
            return None
        try:
            data = self.sock.recv(_RECV_SIZE)
        except OSError as exc:
            self._abort(1006, str(exc))
            return None
        if not data:
            self._abort(1006, "connection closed without a close frame")
            return None
        try:
            self._protocol.receive_data(data)
        except RemoteProtocolError as exc:
            self._abort(1002, str(exc))
        return None

    def _on_event(self, event):
        if isinstance(event, Message):
            self._fragments.append(event.data)
            self._fragments_size += len(event.data)
            if self._fragments_size > self.max_message_size:
                self._fragments = []
                try:
                    self._send_event(CloseConnection(code=1009, reason="message too big"))
                except ConnectionClosed:
                    pass
                self._abort(1009, "message too big")
                return None
            if not event.message_finished:
                return None
            joiner = "" if isinstance(event, TextMessage) else b""
            message = joiner.join(self._fragments)
            self._fragments = []
            self._fragments_size = 0
            return message
        if isinstance(event, Ping):
            try:
                self._send_event(event.response())
            except ConnectionClosed:
                pass
        elif isinstance(event, CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason
            if self._protocol.state is ConnectionState.REMOTE_CLOSING:
                try:
                    self._send_event(event.response())
                except ConnectionClosed:
                    pass
            self._abort(event.code, event.reason)
        elif isinstance(event, Pong):
            pass
        return None

    def __iter__(self):
        while True:
            message = self.receive()
            if message is None:
                return
            yield message

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
