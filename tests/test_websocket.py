"""loop.websocket through loop.pywsgi, driven by a wsproto client over a real socket."""
import threading

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong,
                            Request, TextMessage)
from wsproto.extensions import PerMessageDeflate

from loop import websocket
from wsgi_helpers import Client, connect, get, serving

pytestmark = pytest.mark.timeout(30)


def echo_app(environ, start_response):
    if websocket.is_websocket_request(environ):
        ws = websocket.upgrade(environ, subprotocols=["chat", "echo"])
        environ["test.ws"] = ws
        for message in ws:
            if message == "close please":
                ws.close(4000, "asked to")
                break
            ws.send(message)
        return []
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain http"]


class WSClient:
    def __init__(self, server, path="/chat", subprotocols=(), extensions=(), extra=b""):
        self.sock = connect(server)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="localhost", target=path,
                                               subprotocols=list(subprotocols),
                                               extensions=list(extensions))) + extra)
        self.pending = []
        self.accept = self.next_event()

    def next_event(self):
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def send(self, event):
        self.sock.sendall(self.ws.send(event))

    def message(self):
        parts = []
        while True:
            event = self.next_event()
            parts.append(event.data)
            if event.message_finished:
                return (type(event), ("" if isinstance(event, TextMessage) else b"").join(parts))

    def close(self):
        self.sock.close()


def test_upgrade_and_echo_text_and_binary():
    with serving(echo_app) as server:
        client = WSClient(server, subprotocols=["echo"])
        assert isinstance(client.accept, AcceptConnection)
        assert client.accept.subprotocol == "echo"
        client.send(TextMessage(data="héllo"))
        assert client.message() == (TextMessage, "héllo")
        client.send(BytesMessage(data=b"\x00\xffbinary"))
        assert client.message() == (BytesMessage, b"\x00\xffbinary")
        big = "x" * 200_000
        client.send(TextMessage(data=big))
        assert client.message() == (TextMessage, big)
        client.send(CloseConnection(code=1000, reason="bye"))
        event = client.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1000
        client.close()
        # The server is still serving plain HTTP afterwards.
        assert get(server).body == b"plain http"


def test_fragmented_message_is_reassembled():
    with serving(echo_app) as server:
        client = WSClient(server)
        client.send(TextMessage(data="part one, ", message_finished=False))
        client.send(TextMessage(data="part two", message_finished=True))
        assert client.message() == (TextMessage, "part one, part two")
        client.close()


def test_ping_pong():
    with serving(echo_app) as server:
        client = WSClient(server)
        client.send(Ping(payload=b"are you there"))
        event = client.next_event()
        assert isinstance(event, Pong) and event.payload == b"are you there"
        client.close()


def test_server_initiated_close():
    with serving(echo_app) as server:
        client = WSClient(server)
        client.send(TextMessage(data="close please"))
        event = client.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 4000 and event.reason == "asked to"
        client.send(event.response())
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                client.next_event()
        client.close()


def test_client_data_sent_with_the_handshake_is_not_lost():
    # A frame written right behind the handshake arrives in the same recv() as the request;
    # wsproto's client will not send before the 101, so the frame is masked by hand.
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"early"))
    frame = b"\x81\x85" + mask + payload
    with serving(echo_app) as server:
        client = WSClient(server, extra=frame)
        assert isinstance(client.accept, AcceptConnection)
        assert client.message() == (TextMessage, "early")
        client.close()


def test_permessage_deflate():
    with serving(echo_app) as server:
        client = WSClient(server, extensions=[PerMessageDeflate()])
        assert isinstance(client.accept, AcceptConnection)
        assert client.accept.extensions and client.accept.extensions[0].name == \
            "permessage-deflate"
        client.send(TextMessage(data="compress me " * 1000))
        assert client.message() == (TextMessage, "compress me " * 1000)
        client.close()


def test_abrupt_client_disconnect_ends_iteration():
    finished = threading.Event()
    results = []

    def app(environ, start_response):
        ws = websocket.upgrade(environ)
        results.extend(ws)
        results.append(ws.close_code)
        finished.set()
        return []

    with serving(app) as server:
        client = WSClient(server)
        client.send(TextMessage(data="one"))
        client.close()
        assert finished.wait(5)
    assert results == ["one", 1006]


def test_invalid_handshake_is_refused_by_the_app():
    def app(environ, start_response):
        try:
            websocket.upgrade(environ)
        except websocket.WebSocketError as exc:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [str(exc).encode()]
        return []

    with serving(app) as server:
        with connect(server) as sock:
            client = Client(sock)
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket"
                        b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n")
            response = client.read_response()
            assert response.status == 400 and b"Sec-WebSocket-Key" in response.body
            assert client.at_eof()      # an upgrade request never keeps the connection
        # not an upgrade request at all
        assert get(server).status == 400


def test_send_from_another_thread_while_receiving():
    """A chat server sends to a client from other threads while its handler is receiving."""
    sockets = []
    ready = threading.Event()

    def app(environ, start_response):
        ws = websocket.upgrade(environ)
        sockets.append(ws)
        ready.set()
        for _ in ws:
            pass
        return []

    with serving(app) as server:
        client = WSClient(server)
        assert ready.wait(5)
        senders = [threading.Thread(target=lambda i=i: [sockets[0].send(f"{i}:{n}")
                                                         for n in range(50)])
                   for i in range(4)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        received = [client.message()[1] for _ in range(200)]
        assert sorted(received) == sorted(f"{i}:{n}" for i in range(4) for n in range(50))
        client.send(CloseConnection(code=1000))
        client.close()



@pytest.mark.parametrize("style", ["iterating", "with-block"])
def test_server_stop_closes_open_websockets_with_going_away(style):
    # The grace period of a stop ends by killing the handlers still running; a WebSocket
    # application is one of those as long as its client stays.  The client must learn that the
    # server goes away (1001), not see the connection vanish (1006).
    def app(environ, start_response):
        ws = websocket.upgrade(environ)
        if style == "with-block":
            with ws:
                ws.send("ready")
                loop_event.wait()          # the handler blocks elsewhere than in receive()
        else:
            ws.send("ready")
            for message in ws:
                ws.send(message)
        return []

    from loop.event import Event
    loop_event = Event()
    with serving(app) as server:
        client = WSClient(server)
        assert isinstance(client.accept, AcceptConnection)
        assert client.message() == (TextMessage, "ready")
        server.stop(timeout=0.2)
        event = client.next_event()
        assert isinstance(event, CloseConnection), event
        assert event.code == 1001, event
