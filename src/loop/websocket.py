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
sockets alike.  Receiving is for one reader at a time.

Sending from many places.  Several green threads (a chat broadcasting to a member while the
member's own handler answers a ping) or OS threads may send on one connection, so frames are
written under a lock.  A sender that finds it taken must wait without costing anything but
itself: a green thread waits on its own hub like any other green wait (a wait in a thread pool
would let one slow client and a dozen broadcasters occupy every pool thread of the process), a
plain thread waits on a real lock.  :class:`_SendLock` is that lock; ownership passes from the
releaser straight to the first waiter, decided under a guard held for a few statements only.
A sender killed (or timed out by its caller) in the middle of a frame drops the connection: the
rest of that frame can never be sent, and anything sent after it would be read as its payload.

Timeouts.  After the upgrade the connection's life is the application's, so nothing of the HTTP
server's timeouts applies; these do instead:

* ``send_timeout``: a send that makes no progress for this long (the client stopped reading and
  the socket buffers are full) fails: the connection is dropped, the cut is logged, and every
  sender gets :class:`ConnectionClosed`.  A slow client that keeps reading is never cut.
* ``ping_interval``: while the application waits in :meth:`WebSocket.receive`, the server pings
  after this long without hearing from the client (browsers answer pings by themselves).
* ``idle_timeout``: a reader that hears nothing at all (no frame, no pong) for this long closes
  the connection with 1001 and logs it: the peer is gone or frozen.

Hostile input.  A protocol error (an unmasked frame, a fragmented or oversized control frame:
1002; invalid UTF-8 in a text message: 1007; a message above ``max_message_size``: 1009) is
answered with a Close frame carrying that code before the connection is closed, as RFC 6455
section 7.1.7 asks; the close is half-close first and a short bounded drain, so that the client
gets to read the frame instead of a reset.  Compressed messages are inflated piecewise against
``max_message_size`` (:class:`_BoundedDeflate`): a small frame that would inflate to gigabytes
is refused with 1009 after at most ``max_message_size + 1`` bytes of output.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time
import zlib
from collections import deque

# The real lock and thread identity, bound before any monkey patching: the send lock is shared
# by OS threads, and a patched (green) lock cannot be.
from loop._core.api import spawn_raw
from loop._core.hub import get_hub_if_exists
from loop._core.originals import allocate_lock as _real_allocate_lock
from loop._core.originals import get_ident as _real_get_ident
from loop._core.waiter import Waiter

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["upgrade", "is_websocket_request", "WebSocket", "WebSocketError", "ConnectionClosed"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RECV_SIZE = 65536
_CLOSE_WAIT = 5.0        # close(): how long to wait for the peer's Close frame
_FAIL_DRAIN_TIME = 2.0   # after a protocol error: how long to read on so the client sees our Close
_FAIL_DRAIN_BYTES = 1 << 20
_FAIL_SEND_TIMEOUT = 2.0  # ... and how long the Close frame itself may take to go out
_GREEN_WAIT_SLICE = 5.0  # a green lock waiter re-checks its turn this often (see _Turn.wait)

log = logging.getLogger("loop.websocket")


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


def upgrade(environ, subprotocols=(), compress=True, max_message_size=1 << 20,
            send_timeout=60.0, ping_interval=20.0, idle_timeout=60.0):
    """Accept the WebSocket handshake of this request and return a :class:`WebSocket`.

    ``subprotocols``: the protocols we speak, in order of preference; the first one the client
    also offers is chosen (``WebSocket.subprotocol``).  ``compress`` enables permessage-deflate
    when the client offers it.  Messages larger than ``max_message_size`` (bytes after
    decompression; characters for an uncompressed text message) close the connection with code
    1009.  ``send_timeout``, ``ping_interval`` and ``idle_timeout`` (seconds, ``None`` for none)
    are described in the module's docstring and on :class:`WebSocket`.  Raises
    :class:`WebSocketError` when the request is not a valid handshake; the application should
    then answer 400 itself.
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
        deflate = _BoundedDeflate(max_message_size)
        agreed = server_extensions_handshake(offers, [deflate])
        if agreed:
            extensions.append(deflate)
            head += [b"Sec-WebSocket-Extensions: ", agreed, b"\r\n"]
    head.append(b"\r\n")

    sock, data = handler.take_over(b"".join(head))
    ws = WebSocket(sock, data, extensions, chosen, max_message_size,
                   send_timeout=send_timeout, ping_interval=ping_interval,
                   idle_timeout=idle_timeout)
    # a graceful stop of the server tells the client it goes away (see WSGIHandler.drain)
    handler.on_drain = ws.going_away
    return ws


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflating stops at ``limit`` bytes per message.

    wsproto inflates each piece of a frame's payload in one ``decompress()`` call, so a frame of
    a few KB can become hundreds of MB (and as many milliseconds of CPU) before anybody can
    look at the size.  Here every call asks zlib for at most one byte more than the message may
    still grow; getting that byte means the message is too big, and the frame is refused with
    1009 before anything more is inflated.
    """

    def __init__(self, limit, **options):
        super().__init__(**options)
        self._limit = limit
        self._inflated = 0          # bytes of the current message inflated so far

    def _inflate(self, data):
        budget = self._limit - self._inflated
        try:
            out = self._decompressor.decompress(data, budget + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(out) > budget:
            return CloseReason.MESSAGE_TOO_BIG
        # Less output than allowed means zlib consumed all of ``data``: nothing is left over.
        self._inflated += len(out)
        return out

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._inflated = 0          # a new message
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto, data):
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(self, proto, fin):
        if not fin or not self._inbound_is_compressible or not self._inbound_compressed:
            return super().frame_inbound_complete(proto, fin)
        # The end of a compressed message: the empty stored block the sender left off, then
        # the same bookkeeping as wsproto's (which would inflate that block without a bound).
        data = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(data, CloseReason):
            return data
        no_context_takeover = (self.server_no_context_takeover if proto.client
                               else self.client_no_context_takeover)
        if no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return data


class _Turn:
    """One sender's place in the queue of a :class:`_SendLock`.

    A green thread waits on its own hub (a :class:`loop._core.waiter.Waiter`); a thread without a
    hub waits on a real lock.  ``granted`` is written under the send lock's guard and decides who
    owns the lock: a wake-up is only a hint to go and look.  A green waiter looks again every
    few seconds even without one, because the releaser may be another OS thread whose wake-up
    is not yet queued in this hub when the hub looks for anything left that could wake it.
    """

    __slots__ = ("granted", "_hub", "_waiter", "_lock")

    def __init__(self):
        self.granted = False
        hub = get_hub_if_exists()
        if hub is not None and hub.thread_ident == _real_get_ident():
            self._hub = hub
            self._waiter = None
            self._lock = None
        else:
            self._hub = None
            self._lock = _real_allocate_lock()
            self._lock.acquire()

    def wait(self, deadline):
        """Until granted (True) or ``deadline`` (monotonic, or None) passed (False)."""
        while not self.granted:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self._hub is None:
                self._lock.acquire(True, -1 if remaining is None else remaining)
                continue
            slice_ = _GREEN_WAIT_SLICE if remaining is None else min(remaining,
                                                                      _GREEN_WAIT_SLICE)
            self._waiter = Waiter(self._hub)
            self._waiter.wait(slice_)
        return True

    def wake(self):
        if self._hub is None:
            try:
                self._lock.release()
            except RuntimeError:
                pass
        elif _real_get_ident() == self._hub.thread_ident:
            self._wake_green()
        else:
            try:
                self._hub.run_callback_threadsafe(self._wake_green)
            except RuntimeError:
                pass        # that hub's loop is gone; its waiter looks at ``granted`` itself

    def _wake_green(self):
        # In the waiter's hub thread, so it cannot race the waiter's own timeout.
        waiter = self._waiter
        if waiter is not None:
            waiter.wake(True)


class _SendLock:
    """A mutex for the senders of one connection: green threads of any hub, or plain threads.

    FIFO; :meth:`release` hands the lock to the first waiter.  A waiter that times out or is
    killed leaves the queue under the guard, or, when the lock was handed to it meanwhile,
    passes it on: the lock is never lost and never held twice.
    """

    __slots__ = ("_guard", "_held", "_waiters")

    def __init__(self):
        self._guard = _real_allocate_lock()   # held for a few statements, never across a wait
        self._held = False
        self._waiters = deque()

    def locked(self):
        return self._held

    def acquire(self, timeout=None):
        with self._guard:
            if not self._held:
                self._held = True
                return True
            if timeout is not None and timeout <= 0:
                return False
            turn = _Turn()
            self._waiters.append(turn)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            granted = turn.wait(deadline)
        except BaseException:
            if self._withdraw(turn):
                self.release()          # handed to us while we were being killed: pass it on
            raise
        return granted or self._withdraw(turn)

    def _withdraw(self, turn):
        # Leave the queue; True if the lock was handed to us meanwhile (then it is ours).
        with self._guard:
            if turn.granted:
                return True
            self._waiters.remove(turn)
            return False

    def release(self):
        with self._guard:
            if not self._held:
                raise RuntimeError("release of an unlocked send lock")
            if not self._waiters:
                self._held = False
                return
            turn = self._waiters.popleft()
            turn.granted = True
        turn.wake()


def _check_timeout(name, value):
    if value is None:
        return None
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None")
    return value


class WebSocket:
    """One server-side WebSocket connection, in blocking style.

    ``receive()`` returns the next message (``str`` or ``bytes``) or ``None`` once the
    connection is closed; iterating yields messages until then.  Pings are answered
    automatically.  ``send()`` may be called from several green threads or OS threads at once.
    ``close()`` starts (or completes) the closing handshake; ``close_code`` and
    ``close_reason`` tell how the connection ended (1006: dropped without a closing handshake,
    e.g. after ``send_timeout``).

    ``send_timeout``: a send that makes no progress for this many seconds drops the connection.
    ``ping_interval``: while a reader waits, ping the client after this long without a frame
    from it.  ``idle_timeout``: a reader that hears nothing for this long closes with 1001.
    Each is in seconds, or ``None`` for no limit; every cut is logged on ``loop.websocket``.
    """

    def __init__(self, sock, data=b"", extensions=(), subprotocol=None,
                 max_message_size=1 << 20, send_timeout=60.0, ping_interval=20.0,
                 idle_timeout=60.0):
        self.sock = sock
        self.subprotocol = subprotocol
        self.max_message_size = max_message_size
        self.send_timeout = _check_timeout("send_timeout", send_timeout)
        self.ping_interval = _check_timeout("ping_interval", ping_interval)
        self.idle_timeout = _check_timeout("idle_timeout", idle_timeout)
        self.close_code = None
        self.close_reason = None
        try:
            self.peer = sock.getpeername()
        except (OSError, AttributeError):
            self.peer = None
        self._protocol = Connection(ConnectionType.SERVER, list(extensions), data)
        self._send_lock = _SendLock()
        self._fragments = []
        self._fragments_size = 0
        self._closed = False
        self._last_heard = time.monotonic()
        self._next_ping = (None if self.ping_interval is None
                           else self._last_heard + self.ping_interval)

    def __repr__(self):
        state = "closed" if self._closed else self._protocol.state.name.lower()
        return f"<WebSocket {self.peer} {state}>"

    @property
    def closed(self):
        return self._closed

    # -- sending ---------------------------------------------------------------------------------

    def _send_event(self, event, lock_timeout=None):
        """Frame and send ``event``; False if the lock was not free within ``lock_timeout``."""
        if not self._send_lock.acquire(lock_timeout):
            return False
        try:
            if self._closed:
                raise ConnectionClosed(self.close_code, self.close_reason)
            if self._protocol.state is not ConnectionState.OPEN and \
                    not isinstance(event, CloseConnection):
                raise ConnectionClosed(self.close_code, self.close_reason)
            try:
                data = self._protocol.send(event)
            except LocalProtocolError as exc:
                raise ConnectionClosed(self.close_code, str(exc)) from None
            self._write(data, self.send_timeout)
        finally:
            self._send_lock.release()
        return True

    def _write(self, data, timeout):
        # ``sendall`` with a timeout bounds the whole call; a WebSocket message may be large
        # and the client slow but reading, so the limit is on time without progress instead:
        # each ``send`` waits at most what is left of ``timeout`` since the last byte went out.
        sock = self.sock
        total = len(data)
        sent = 0
        progress = time.monotonic()
        try:
            with memoryview(data) as view:
                while sent < total:
                    if timeout is None:
                        sock.settimeout(None)
                    else:
                        remaining = progress + timeout - time.monotonic()
                        if remaining <= 0:
                            break
                        sock.settimeout(remaining)
                    try:
                        sent += sock.send(view[sent:] if sent else view)
                    except TimeoutError:
                        continue
                    progress = time.monotonic()
        except OSError as exc:
            self._abort(1006, str(exc) or type(exc).__name__)
            raise ConnectionClosed(1006, self.close_reason) from None
        except BaseException:
            # The sender was killed or timed out by its caller.  A frame cut in the middle
            # leaves the stream unusable: the next frame would land inside this one's payload.
            if 0 < sent < total:
                self.abort(1006, "a send was interrupted in the middle of a frame")
            raise
        if sent < total:
            log.warning("WebSocket %s: no progress sending for %gs (%d of %d bytes sent): "
                        "connection dropped", self.peer, timeout, sent, total)
            self.abort(1006, "send timed out")
            raise ConnectionClosed(1006, "send timed out")

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
            # is still sending; bounded by a short deadline.
            deadline = time.monotonic() + _CLOSE_WAIT
            while not self._closed and self._protocol.state is not ConnectionState.CLOSED \
                    and time.monotonic() < deadline:
                self._receive_some(deadline)
        self._abort(self.close_code or code, self.close_reason or reason)

    def going_away(self, reason="server going away"):
        """Begin the closing handshake with 1001 and return at once: what a server does when it
        stops (:meth:`loop.pywsgi.WSGIServer.stop` calls it at the start of the grace period).
        The application's :meth:`receive` then sees the client's answer and returns ``None``,
        so its handler can end within the grace period; the Close frame is sent by a green
        thread of its own, bounded like the one of a protocol error."""
        if self._closed or self._protocol.state is not ConnectionState.OPEN:
            return
        spawn_raw(self._send_going_away, reason)

    def _send_going_away(self, reason):
        try:
            self._send_event(CloseConnection(code=1001, reason=reason),
                             lock_timeout=_FAIL_SEND_TIMEOUT)
        except ConnectionClosed:
            pass

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

    def _fail(self, code, reason):
        """Close after a protocol error or an idle timeout: our Close frame with ``code``, a
        half-close, a short drain (so the client reads the frame rather than a reset), done."""
        if self._closed:
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        sent = False
        if self._send_lock.acquire(_FAIL_SEND_TIMEOUT):
            try:
                if not self._closed and self._protocol.state in (ConnectionState.OPEN,
                                                                 ConnectionState.REMOTE_CLOSING):
                    self._write(self._protocol.send(CloseConnection(code=code, reason=reason)),
                                _FAIL_SEND_TIMEOUT)
                    sent = True
            except (ConnectionClosed, LocalProtocolError):
                pass
            finally:
                self._send_lock.release()
        if sent:
            self._linger()
        self._abort(code, reason)

    def _linger(self):
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _FAIL_DRAIN_TIME
            drained = 0
            while drained < _FAIL_DRAIN_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                data = sock.recv(_RECV_SIZE)
                if not data:
                    break
                drained += len(data)
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

    def _receive_some(self, deadline=None):
        """Process one batch of events; a complete message, or None."""
        for event in self._protocol.events():
            message = self._on_event(event)
            if message is not None:
                return message
            if self._closed:
                return None
        if self._closed:
            return None
        if self._protocol.state is ConnectionState.CLOSED:
            self._abort(self.close_code or 1000, self.close_reason or "")
            return None
        data = self._read(deadline)
        if data is None:
            return None
        if not data:
            self._abort(1006, "connection closed without a close frame")
            return None
        try:
            self._protocol.receive_data(data)
        except RemoteProtocolError as exc:
            self._abort(1002, str(exc))
        return None

    def _read(self, deadline=None):
        """The next bytes from the peer (b"" at its EOF), pinging it when it is quiet; None
        when the connection was closed meanwhile or ``deadline`` passed."""
        sock = self.sock
        while not self._closed:
            now = time.monotonic()
            wait = None
            if deadline is not None:
                wait = deadline - now
                if wait <= 0:
                    return None
            if self.idle_timeout is not None:
                idle_left = self._last_heard + self.idle_timeout - now
                if idle_left <= 0:
                    log.info("WebSocket %s: nothing heard for %gs: closed (1001)",
                             self.peer, self.idle_timeout)
                    self._fail(1001, "idle timeout")
                    return None
                wait = idle_left if wait is None else min(wait, idle_left)
            if self._next_ping is not None and deadline is None:
                ping_left = self._next_ping - now
                if ping_left <= 0:
                    self._send_ping()
                    continue
                wait = ping_left if wait is None else min(wait, ping_left)
            try:
                sock.settimeout(wait)
                data = sock.recv(_RECV_SIZE)
            except TimeoutError:
                continue
            except OSError as exc:
                self._abort(1006, str(exc) or type(exc).__name__)
                return None
            self._last_heard = now = time.monotonic()
            if self.ping_interval is not None:
                self._next_ping = now + self.ping_interval
            return data
        return None

    def _send_ping(self):
        # Skipped (and tried again soon) while a message is going out: the reader does not
        # queue behind a long send just to ping.
        try:
            sent = self._send_event(Ping(payload=b"loop"), lock_timeout=0)
        except ConnectionClosed:
            return
        self._next_ping = time.monotonic() + (self.ping_interval if sent
                                              else min(1.0, self.ping_interval))

    def _on_event(self, event):
        if isinstance(event, Message):
            self._fragments.append(event.data)
            self._fragments_size += len(event.data)
            if self._fragments_size > self.max_message_size:
                self._fragments = []
                log.info("WebSocket %s: message over %d: closed (1009)", self.peer,
                         self.max_message_size)
                self._fail(1009, "message too big")
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
            state = self._protocol.state
            if state is ConnectionState.REMOTE_CLOSING:
                self.close_code, self.close_reason = event.code, event.reason
                try:
                    self._send_event(event.response())
                except ConnectionClosed:
                    pass
            elif state is ConnectionState.CLOSED:
                self.close_code, self.close_reason = event.code, event.reason
            else:
                # wsproto reports a frame it could not accept as a CloseConnection without
                # changing state: that is ours to send (1002, 1007, 1009).
                reason = "message too big" if event.code == 1009 else event.reason
                log.info("WebSocket %s: protocol error: %s: closed (%d)", self.peer, reason,
                         event.code)
                self._fail(event.code, reason)
                return None
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
