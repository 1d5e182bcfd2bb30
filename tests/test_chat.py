"""The chat example (examples/chat_server.py) against real sockets, server in a subprocess."""
import os
import re
import selectors
import signal
import socket
import time

import pytest

from chat_support import ChatProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server():
    with ChatProcess() as chat:
        yield chat


def test_commands(server):
    alice, bob = server.client(), server.client()
    alice.expect("welcome to loop chat")
    alice.expect(re.compile(r"\*\*\* guest\d+ joined #lobby"))
    bob.expect("welcome")
    alice.send("/nick alice")
    bob.send("/nick bob")
    alice.expect("is now known as bob")
    alice.send("hello, bob")
    bob.expect("[lobby] <alice> hello, bob")
    bob.send("/me waves")
    alice.expect("[lobby] * bob waves")
    alice.send("/who")
    assert alice.expect("in #lobby:") == "*** in #lobby: alice, bob"
    alice.send("/nick bob")
    alice.expect("!!! nickname bob is taken")
    alice.send("/nick no spaces!")
    alice.expect("!!! usage: /nick NAME")
    alice.send("/join rust")
    bob.expect("*** alice left #lobby (joined #rust)")
    alice.expect("*** alice joined #rust")
    alice.send("/rooms")
    assert alice.expect("rooms:") == "*** rooms: #lobby (1), #rust (1)"
    bob.send("only lobby hears this")
    alice.send("//slash is not a command")
    alice.expect("[rust] <alice> /slash is not a command")
    assert not any("only lobby" in line for line in alice.lines)
    alice.send("/help")
    alice.expect("/join ROOM")
    alice.send("/frobnicate")
    alice.expect("!!! unknown command /frobnicate")
    alice.send("/stats")
    alice.expect(re.compile(r"server: connections 2 open / 2 total"))
    alice.expect("you: 0 messages dropped for you")
    bob.send("/quit gone fishing")
    bob.expect("*** bye")
    bob.read_until_closed()
    alice.send("/join lobby")
    alice.send("/who")
    assert alice.expect("in #lobby:") == "*** in #lobby: alice"


def _wait_all(clients, pattern, count, timeout=60):
    """Read from every client until each saw ``count`` lines containing ``pattern``."""
    selector = selectors.DefaultSelector()
    seen = {}
    for client in clients:
        client.sock.setblocking(False)
        seen[client] = sum(pattern in line for line in client.lines)
        if seen[client] < count:
            selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + timeout
    while selector.get_map():
        assert time.monotonic() < deadline, \
            f"{len(selector.get_map())} clients still waiting for {pattern!r}"
        for key, _ in selector.select(1.0):
            client = key.data
            data = client.sock.recv(65536)
            assert data, f"client closed early: {[l[:100] for l in client.lines[-5:]]}"
            client.buffer += data
            *complete, client.buffer = client.buffer.split(b"\n")
            lines = [line.decode() for line in complete]
            client.lines.extend(lines)
            seen[client] += sum(pattern in line for line in lines)
            if seen[client] >= count:
                selector.unregister(client.sock)
    selector.close()
    for client in clients:
        client.sock.setblocking(True)
    return seen


def test_300_clients_all_see_every_message():
    # All from 127.0.0.1: the per-address limit is raised for them.
    with ChatProcess("--per-ip", "400") as server:
        _300_clients_all_see_every_message(server)


def _300_clients_all_see_every_message(server):
    clients = [server.client() for _ in range(300)]
    _wait_all(clients, "welcome to loop chat", 1)
    # Everybody speaks once; everybody must hear all 300, each exactly once and in one order.
    for number, client in enumerate(clients):
        client.send(f"message {number:03d}")
    seen = _wait_all(clients, "> message ", 300)
    assert set(seen.values()) == {300}
    orders = {tuple(line.split("> ")[1] for line in c.lines if "> message " in line)
              for c in clients}
    assert len(orders) == 1, "every client sees the room's messages in the same order"
    for client in clients:
        client.close()
    check = server.client()
    check.send("/stats")
    line = check.expect("server:")
    assert "dropped for slow clients 0" in line
    assert "messages 300" in line.split(";")[2] or "messages" in line


def test_bad_input_is_refused_not_fatal(server):
    client = server.client()
    client.expect("welcome")
    client.send(b"x" * 10000)                               # overlong line, sent in pieces
    client.expect("!!! line too long (max 2048 bytes), ignored")
    client.send(b"caf\xe9 latin-1")                         # invalid UTF-8
    client.expect("!!! invalid UTF-8, line ignored")
    client.send(b"\x1b[31mred\x1b[0m \x07bell\r")            # escapes and controls stripped
    line = client.expect("<guest")
    assert "\x1b" not in line and "\x07" not in line and line.endswith("[31mred[0m bell")
    client.send(b"\x00\xff" * 3000)                          # binary junk: long and not UTF-8
    client.expect("!!! line too long")
    client.send("still here")
    client.expect("> still here")


def test_flooding_client_is_disconnected(server):
    watcher = server.client()
    watcher.expect("welcome")
    flooder = server.client()
    flooder.expect("welcome")
    flooder.sock.sendall(b"spam\n" * 2000)
    flooder.expect("!!! slow down")
    flooder.expect("!!! disconnected: too many bad or excessive lines")
    flooder.read_until_closed()
    watcher.expect("left #lobby (flooding)")
    # The burst that was allowed through arrived; the server is fine.
    assert sum("> spam" in line for line in watcher.lines) <= 60
    watcher.send("/stats")
    assert "1 flooding" in watcher.expect("server:")


def _big_talkers(server, count):
    talkers = [server.client() for _ in range(count)]
    for talker in talkers:
        talker.expect("welcome")
    return talkers


def test_stuck_client_is_dropped_then_disconnected_and_never_delays_others():
    with ChatProcess("--outbox", "20", "--max-drops", "200", "--rate", "1e9",
                     "--burst", "1000000") as server:
        stuck = server.client(rcvbuf=4096)          # reads its own rename, then never again
        stuck.send("/nick stuck")
        stuck.expect("is now known as stuck")
        healthy = server.client()
        healthy.expect("welcome")
        talker = server.client()
        talker.expect("welcome")
        big = "y" * 1900
        sent = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for _ in range(50):
                talker.send(f"{sent} {big}")
                sent += 1
            # The healthy client keeps up with everything, however stuck the other one is.
            healthy.expect(f"<{_nick(talker)}> {sent - 1} ")
            if any("stuck left #lobby (too slow)" in line for line in healthy.lines):
                break
        else:
            pytest.fail("the stuck client was never disconnected")
        healthy.send("/stats")
        stats = healthy.expect("server:")
        dropped = int(re.search(r"dropped for slow clients (\d+)", stats).group(1))
        assert dropped > 200 and "1 slow" in stats
        rc, err = server.terminate()
        assert "disconnected, stuck" in err and "messages were dropped for this slow client" in err


def _nick(client):
    for line in client.lines:
        match = re.search(r"welcome to loop chat, (\w+)!", line)
        if match:
            return match.group(1)
    raise AssertionError("no welcome line")


def test_slow_reader_is_told_how_many_messages_it_missed():
    with ChatProcess("--outbox", "10", "--max-drops", "1000000", "--rate", "1e9",
                     "--burst", "1000000") as server:
        sleepy = server.client(rcvbuf=4096)
        sleepy.expect("welcome")
        talker = server.client()
        talker.expect("welcome")
        for number in range(600):
            talker.send(f"{number} " + "z" * 1900)
        talker.expect("> 599 ")
        talker.send("/stats")
        assert int(re.search(r"dropped for slow clients (\d+)",
                             talker.expect("server:")).group(1)) > 0
        # Now read: a notice says how much was lost, and the newest messages are there.
        notice = sleepy.expect(re.compile(r"!!! \d+ messages were dropped because your "
                                          r"connection was too slow"))
        sleepy.expect("> 599 ")
        assert int(notice.split()[1]) > 0
        sleepy.send("/stats")
        assert not sleepy.expect("you:").startswith("*** you: 0 ")


def test_sigterm_tells_clients_and_exits():
    server = ChatProcess("--per-ip", "100")
    try:
        clients = [server.client() for _ in range(50)]
        for client in clients:
            client.expect("welcome")
        started = time.monotonic()
        rc, err = server.terminate(timeout=20)
        assert rc == 0, err
        for client in clients:
            client.expect("*** server shutting down, bye")
            client.read_until_closed()
        assert "shutting down: 50 clients connected" in err
        assert time.monotonic() - started < 20
    finally:
        server.__exit__()


def test_sigint_is_handled_like_sigterm():
    server = ChatProcess()
    try:
        client = server.client()
        client.expect("welcome")
        server.proc.send_signal(signal.SIGINT)
        client.expect("server shutting down")
        client.read_until_closed()
        assert server.proc.wait(20) == 0
    finally:
        server.__exit__()


# -- the web side without a browser: a WebSocket client written with wsproto ------------------

class WSClient:
    def __init__(self, address):
        from wsproto import WSConnection
        from wsproto.connection import ConnectionType
        from wsproto.events import Request
        self.sock = socket.create_connection(address, timeout=20)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{address[0]}:{address[1]}", target="/ws")))
        self.messages = []
        self.accepted = False
        self.close_code = None

    def send(self, text):
        from wsproto.events import TextMessage
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def expect(self, predicate, timeout=20):
        import json
        from wsproto.events import AcceptConnection, CloseConnection, TextMessage
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            for message in self.messages[index:]:
                if predicate(message):
                    return message
            index = len(self.messages)
            if self.close_code is not None:
                raise AssertionError(f"closed ({self.close_code}); got {self.messages}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert time.monotonic() < deadline, f"timed out; got {self.messages[-10:]}"
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.accepted = True
                elif isinstance(event, TextMessage):
                    self.messages.append(json.loads(event.data))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    self.close_reason = event.reason
                    try:
                        self.sock.sendall(self.ws.send(event.response()))
                    except Exception:
                        pass


def test_websocket_and_tcp_users_share_a_room(server):
    tcp = server.client()
    tcp.send("/nick tcpuser")
    web = WSClient(server.http)
    web.expect(lambda m: m["type"] == "info" and "welcome" in m["text"])
    web.send("/nick webuser")
    tcp.expect("is now known as webuser")
    web.send("hello from the web")
    tcp.expect("[lobby] <webuser> hello from the web")
    tcp.send("hello from tcp")
    message = web.expect(lambda m: m["type"] == "message" and m["nick"] == "tcpuser")
    assert message == {"type": "message", "room": "lobby", "nick": "tcpuser",
                       "text": "hello from tcp"}
    web.send("x" * 3000)
    web.expect(lambda m: m["type"] == "error" and "too long" in m["text"])
    rc, err = server.terminate()
    assert rc == 0
    web.expect(lambda m: "shutting down" in m.get("text", ""))
    with pytest.raises(AssertionError, match=r"closed \(1001\)"):
        web.expect(lambda m: False)


def test_web_page_and_stats(server):
    import urllib.request
    page = urllib.request.urlopen(server.url, timeout=10).read().decode()
    assert "new WebSocket" in page and 'id="input"' in page
    stats = urllib.request.urlopen(server.url + "stats.json", timeout=10).read()
    assert b'"connections": 0' in stats
    plain = urllib.request.Request(server.url + "ws")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(plain, timeout=10)
    assert info.value.code == 400


# -- batching: lines read together are published together, in the order they were sent --------

def test_lines_sent_at_once_keep_their_order_around_commands():
    with ChatProcess("--rate", "1e9", "--burst", "1000000") as server:
        talker, listener = server.client(), server.client()
        talker.expect("welcome")
        listener.expect("welcome")
        lines = [f"line {n}" for n in range(300)]
        lines[150:150] = ["/nick batcher", "/me waves", "/who"]
        talker.sock.sendall("".join(line + "\n" for line in lines).encode())
        listener.expect("<batcher> line 299")
        got = [line for line in listener.lines
               if "> line " in line or "known as batcher" in line or "* batcher waves" in line]
        nick = _nick(talker)
        expected = [f"[lobby] <{nick}> line {n}" for n in range(150)]
        expected += [f"*** {nick} is now known as batcher", "[lobby] * batcher waves"]
        expected += [f"[lobby] <batcher> line {n}" for n in range(150, 300)]
        assert got == expected
        # The reply to /who comes after the talker's own copies of the lines before it.
        who = talker.expect("in #lobby:")
        assert talker.lines.index(who) > talker.lines.index(f"[lobby] <{nick}> line 149")
        listener.send("/stats")
        assert "messages 304" in listener.expect("server:")   # with the two joins


# -- the outbox on its own -------------------------------------------------------------------

@pytest.fixture
def outbox_module():
    import importlib
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
    try:
        yield importlib.import_module("chat.outbox")
    finally:
        sys.path.pop(0)


def test_outbox_drops_the_oldest_counts_and_reports(outbox_module):
    drops, stuck = [], []
    box = outbox_module.Outbox(capacity=4, max_drops=5, on_drop=drops.append,
                               on_stuck=lambda: stuck.append(True),
                               drop_notice=lambda n: f"lost {n}")
    box.put_many(["a", "b", "c"])
    assert list(box.take()) == ["a", "b", "c"]
    box.put_many(["d", "e", "f"])
    box.put_many(["g", "h", "i"])                # two over capacity: d and e go
    box.put("j")                                 # and f
    assert (box.dropped, box.unreported, drops) == (3, 3, [2, 1])
    assert list(box.take()) == ["lost 3", "g", "h", "i", "j"]
    assert box.unreported == 0 and not stuck
    box.put_many(list("klmnopqrstu"))            # 11 into 4: 7 dropped without progress
    assert stuck == [True] and box.stuck and box.dropped == 10
    box.put_many(list("vwxyz"))
    assert stuck == [True], "on_stuck is called once"
    assert list(box.take()) == ["lost 12", "w", "x", "y", "z"]


def test_outbox_take_hands_over_without_copying(outbox_module):
    box = outbox_module.Outbox(capacity=10)
    box.put_many(["a", "b"])
    first = box.take()
    box.put("c")                                 # lands in the other buffer
    assert list(first) == ["a", "b"]
    second = box.take()
    assert list(second) == ["c"] and second is not first
    box.put("d")                                 # the first buffer, emptied, is reused
    assert list(box.take()) == ["d"]
    box.close()
    box.put("ignored")
    assert box.take() is None


# -- admission: per-address limits, WebSocket slots, idle WebSockets --------------------------------

def _raw_websocket(address, source="127.0.0.1"):
    """Start a WebSocket handshake by hand (from ``source``, any address of 127/8), and then
    never read or answer: an idle (or dead) client.  See :func:`_status_of`."""
    import base64
    sock = socket.create_connection(address, timeout=20, source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    return sock


def _status_of(sock):
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None


def _close_frame_then_eof(sock, timeout):
    """Read everything until EOF; the code of the server's Close frame (None if none came)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    code = None
    while len(data) >= 2:       # server frames: unmasked, small except the welcome events
        opcode, size, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        if opcode == 8 and size >= 2:
            code = int.from_bytes(data[offset:offset + 2], "big")
        data = data[offset + size:]
    return code


def _get(url, timeout=5):
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def _wait_for_stats(server, predicate, timeout=20):
    """The server's /stats.json once ``predicate`` holds for it (sessions start and end a
    moment after their connection does)."""
    import json
    deadline = time.monotonic() + timeout
    while True:
        stats = json.loads(_get(server.url + "stats.json")[1])
        if predicate(stats):
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)


def test_idle_websockets_cannot_take_the_page_down_and_are_closed_after_the_idle_timeout():
    with ChatProcess("--per-ip", "1000", "--max-web-clients", "200", "--page-connections", "20",
                     "--ping-interval", "1", "--idle-timeout", "6") as server:
        sockets = [_raw_websocket(server.http) for _ in range(260)]
        idle, statuses = [], []
        for sock in sockets:
            statuses.append(_status_of(sock))
            if statuses[-1] == 101:
                idle.append(sock)
            else:
                sock.close()        # as a browser does after a refusal
        assert statuses.count(101) == 200 and statuses.count(503) == 60, statuses
        # Every WebSocket slot is taken by a client that does nothing: pages still answer.
        status, page = _get(server.url)
        assert status == 200 and b"new WebSocket" in page
        stats = _wait_for_stats(server, lambda s: s["connections"] == 200)
        assert stats["connections_refused"] == 60
        # The idle ones never answer the server's pings: each is closed with 1001.
        started = time.monotonic()
        codes = [_close_frame_then_eof(sock, 30) for sock in idle]
        assert codes == [1001] * 200, set(codes)
        assert time.monotonic() - started < 30
        for sock in sockets:
            sock.close()
        _wait_for_stats(server, lambda s: s["connections"] == 0)
        # And the freed slots take new clients.
        fresh = WSClient(server.http)
        fresh.expect(lambda m: m["type"] == "info" and "welcome" in m["text"])


def test_connections_per_address_are_limited_across_both_ports():
    import urllib.error
    with ChatProcess("--per-ip", "3") as server:
        first, second = server.client(), server.client()
        first.expect("welcome")
        second.expect("welcome")
        web = WSClient(server.http)
        web.expect(lambda m: m["type"] == "info" and "welcome" in m["text"])
        # The fourth connection from 127.0.0.1, on either port, is refused and closed.
        refused = server.client()
        refused.expect("!!! too many connections from your address")
        refused.read_until_closed()
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(server.url)
        assert info.value.code == 429
        # Once one of the three goes, a new connection is welcome again.
        first.send("/quit")
        first.read_until_closed()
        deadline = time.monotonic() + 10
        while True:
            again = server.client()
            try:
                again.expect("welcome", timeout=5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, again.lines
                time.sleep(0.2)


def _peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_compressed_websocket_bomb_is_refused_without_being_inflated(server):
    # 64 MB of zeros deflate to about 64 KB; the chat's messages are limited to a few KB.  The
    # server must refuse it with 1009 before inflating it: its peak RSS hardly moves.
    import base64
    import zlib
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (compressor.compress(bytes(64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    mask = os.urandom(4)
    length = (bytes([0xFE]) + len(bomb).to_bytes(2, "big") if len(bomb) < 1 << 16
              else bytes([0xFF]) + len(bomb).to_bytes(8, "big"))
    frame = (bytes([0xC1]) + length + mask
             + bytes(b ^ mask[i % 4] for i, b in enumerate(bomb)))
    status, _ = _get(server.url)
    assert status == 200
    before = _peak_rss_kb(server.proc.pid)
    sock = socket.create_connection(server.http, timeout=20)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
    assert _status_of(sock) == 101
    sock.sendall(frame)
    assert _close_frame_then_eof(sock, 20) == 1009
    grown_mb = (_peak_rss_kb(server.proc.pid) - before) / 1024
    assert grown_mb < 32, f"peak RSS grew by {grown_mb:.0f} MB"
    assert _get(server.url)[0] == 200


def test_refusals_of_one_address_leave_other_addresses_alone():
    # 127.0.0.1 uses up its three connections, then keeps opening connections that are refused
    # and never closes them.  The pool has only a few free slots (2 kept for pages), yet
    # 127.0.0.2 still gets the page and a WebSocket at once: a refusal does not keep a slot.
    with ChatProcess("--per-ip", "3", "--max-web-clients", "5",
                     "--page-connections", "2") as server:
        held = [_raw_websocket(server.http) for _ in range(3)]
        assert [_status_of(sock) for sock in held] == [101] * 3
        refused = [_raw_websocket(server.http) for _ in range(40)]
        time.sleep(0.5)
        # While those 40 wait for their clients to hang up (up to a second each, which 40
        # refusals in 4 free slots would stretch to 10 s), the other address is served.
        other = _raw_websocket(server.http, source="127.0.0.2")
        other.settimeout(5)
        assert _status_of(other) == 101
        page = socket.create_connection(server.http, timeout=5, source_address=("127.0.0.2", 0))
        page.sendall(b"GET / HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n")
        assert _status_of(page) == 200
        assert {_status_of(sock) for sock in refused} == {429}
        for sock in held + refused + [other, page]:
            sock.close()
