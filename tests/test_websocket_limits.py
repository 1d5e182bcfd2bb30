"""loop.websocket under hostile and broken clients: timeouts, send contention, protocol errors,
compression bombs.

Every scenario that could hang (a handler pinned in a send, a thread pool filled up) runs in a
fresh interpreter: a green WSGI server in a background OS thread, raw-socket clients in the main
thread, the verdict printed as JSON.
"""
import json
import os
import socket
import struct
import time
import zlib

import pytest

from script_helpers import run_python

pytestmark = pytest.mark.timeout(120)

TESTS = os.path.dirname(os.path.abspath(__file__))

# Shared by the scripts: a server in a thread, a raw client that speaks just enough WebSocket.
PRELUDE = r"""
import base64, json, os, socket, struct, sys, threading, time, zlib
sys.path.insert(0, %r)
import loop
from loop import websocket
from wsgi_helpers import serving

def handshake(server, path="/", extensions=None, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(server.server_address[:2])
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n")
    if extensions:
        head += f"Sec-WebSocket-Extensions: {extensions}\r\n"
    sock.sendall((head + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    response, rest = data.split(b"\r\n\r\n", 1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock, response, rest

# data plus what the server sends until EOF, a reset (adds on_reset) or size bytes in all;
# pause seconds between reads make a slow reader.
def read_until(sock, data=b"", size=None, pause=0.0, on_reset=b""):
    while size is None or len(data) < size:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data + on_reset
        if not chunk:
            break
        data += chunk
        time.sleep(pause)
    return data

def finish(result):
    print(json.dumps(result), flush=True)
    os._exit(0)
""" % TESTS


def run(code, timeout=60, patched=False):
    patch = "from loop import monkey; monkey.patch_all()\n" if patched else ""
    proc = run_python(patch + PRELUDE + code, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no verdict (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1]), proc.stderr


# -- a raw client's view of frames -----------------------------------------------------------------

def masked_frame(opcode, payload, fin=True, rsv1=False, mask=True, length=None):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload) if length is None else length
    if size < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frames(data):
    """Server frames (unmasked) in ``data``: a list of (opcode, payload)."""
    frames = []
    while len(data) >= 2:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + size:
            break
        frames.append((opcode, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


def close_code_of(frames):
    closes = [payload for opcode, payload in frames if opcode == 8]
    assert closes, f"no Close frame among {[(op, p[:20]) for op, p in frames]}"
    return struct.unpack("!H", closes[0][:2])[0], closes[0][2:].decode()


# -- item 5: timeouts and send contention ----------------------------------------------------------

def test_client_that_stops_reading_is_cut_after_the_send_timeout():
    verdict, stderr = run(r"""
import logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
done = threading.Event()
outcome = {}

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=1.0, ping_interval=None, idle_timeout=None)
    started = time.monotonic()
    try:
        while True:
            ws.send(b"x" * 65536)
    except websocket.ConnectionClosed as exc:
        outcome.update(code=exc.code, reason=exc.reason, seconds=time.monotonic() - started)
    done.set()
    return []

with serving(app) as server:
    sock, _, _ = handshake(server, rcvbuf=4096)     # and never reads
    returned = done.wait(30)
    finish({"returned": returned, **outcome})
""")
    assert verdict["returned"], "the handler stayed pinned in send"
    assert verdict["code"] == 1006 and verdict["reason"] == "send timed out"
    assert verdict["seconds"] < 20
    assert "no progress sending" in stderr


def test_slow_client_that_keeps_reading_is_not_cut():
    # 3 MB at about 0.5 MB/s with a 1.5 s send timeout: a deadline on the whole send would cut
    # it; "no progress for 1.5 s" must not.
    verdict, _ = run(r"""
outcome = {}
done = threading.Event()

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=1.5, ping_interval=None, idle_timeout=None,
                           compress=False)
    try:
        ws.send(b"y" * 3_000_000)
        outcome["sent"] = True
    except websocket.ConnectionClosed as exc:
        outcome["error"] = str(exc)
    done.set()
    ws.close()
    return []

with serving(app) as server:
    sock, _, rest = handshake(server, rcvbuf=16384)
    received = len(rest)
    started = time.monotonic()
    while received < 3_000_000 and time.monotonic() - started < 40:
        chunk = sock.recv(8192)
        if not chunk:
            break
        received += len(chunk)
        time.sleep(0.015)
    done.wait(10)
    finish({"received": received, "seconds": time.monotonic() - started, **outcome})
""")
    assert verdict.get("sent"), verdict
    assert verdict["received"] >= 3_000_000
    assert verdict["seconds"] > 3.0        # it really took longer than the send timeout


@pytest.mark.parametrize("patched", [False, True], ids=["plain", "monkey-patched"])
def test_contended_sends_leave_the_thread_pool_alone(patched):
    # One member that never reads, 12 green threads broadcasting to it: they wait for the
    # member's send lock.  The hub's thread pool (10 threads) and run_in_executor must still
    # serve other work, and once the send timeout cuts the member every broadcaster is told.
    # Under monkey patching (as in the gunicorn worker) too: the lock must not become a
    # patched one.
    verdict, _ = run(patched=patched, code=r"""
member = []
joined = threading.Event()
report = {}
done = threading.Event()

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=4.0, ping_interval=None, idle_timeout=None)
    if environ["PATH_INFO"] == "/member":
        member.append(ws)
        joined.set()
        for _ in ws:
            pass
        return []
    ws.receive()                                       # the control client says "go"
    hub = loop.get_hub()
    outcomes = []

    def broadcast():
        try:
            for _ in range(100):
                member[0].send(b"z" * 65536)
            outcomes.append("sent")
        except websocket.ConnectionClosed as exc:
            outcomes.append(exc.reason)

    broadcasters = [loop.spawn(broadcast) for _ in range(12)]
    loop.sleep(0.5)
    started = time.monotonic()
    try:
        with loop.Timeout(3):
            report["apply"] = hub.threadpool.apply(lambda: 6 * 7)
            report["executor"] = loop.await_(hub.loop.run_in_executor(None, lambda: "ran"))
    except loop.Timeout:
        report["pool"] = "hung"
    report["pool_seconds"] = time.monotonic() - started
    loop.joinall(broadcasters, timeout=20)
    report["outcomes"] = outcomes
    report["member_code"] = member[0].close_code
    done.set()
    return []

with serving(app) as server:
    member_sock, _, _ = handshake(server, "/member", rcvbuf=4096)   # never reads
    assert joined.wait(10)
    control, _, _ = handshake(server, "/control")
    key = os.urandom(4)
    control.sendall(bytes([0x81, 0x82]) + key + bytes(b ^ key[i] for i, b in enumerate(b"go")))
    done.wait(40)
    finish(report)
""")
    assert verdict.get("pool") != "hung", verdict
    assert verdict["apply"] == 42 and verdict["executor"] == "ran"
    assert len(verdict["outcomes"]) == 12, verdict
    assert set(verdict["outcomes"]) <= {"send timed out"}, verdict
    assert verdict["member_code"] == 1006


def test_send_lock_survives_killed_waiters():
    # Senders queued behind a blocked send are killed; the lock must neither be lost nor given
    # twice: once the client reads again, every remaining sender's message arrives intact.
    verdict, _ = run(r"""
member = []
joined = threading.Event()
report = {}
done = threading.Event()
SIZE = 1_000_000

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=30.0, ping_interval=None, idle_timeout=None,
                           compress=False)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    member.append(ws)
    joined.set()
    outcomes = {}

    def send(i):
        try:
            ws.send(bytes([65 + i]) * SIZE)
            outcomes[i] = "sent"
        except loop.GreenletExit:
            outcomes[i] = "killed"
            raise

    senders = [loop.spawn(send, i) for i in range(8)]
    loop.sleep(0.3)
    loop.killall(senders[2:6], block=True)
    loop.joinall(senders, timeout=20)
    report["outcomes"] = [outcomes.get(i) for i in range(8)]
    done.set()
    ws.close()
    return []

with serving(app) as server:
    sock, _, data = handshake(server, rcvbuf=4096)
    assert joined.wait(10)
    time.sleep(1.0)
    sock.settimeout(10)
    data = read_until(sock, data, size=4 * (SIZE + 10))
    done.wait(20)
    report["payloads"] = []
    while len(data) >= 10 and data[0] == 0x82:
        size = struct.unpack("!Q", data[2:10])[0]
        payload = data[10:10 + size]
        report["payloads"].append([chr(payload[0]), len(payload), len(set(payload))])
        data = data[10 + size:]
    finish(report)
""")
    # The first sender was writing when the others were killed; the killed ones never wrote.
    assert verdict["outcomes"] == ["sent", "sent"] + ["killed"] * 4 + ["sent", "sent"], \
        verdict
    payloads = verdict["payloads"]
    assert [p[0] for p in payloads] == ["A", "B", "G", "H"], payloads
    assert all(p[1] == 1_000_000 and p[2] == 1 for p in payloads), payloads


def test_sender_killed_in_the_middle_of_a_frame_drops_the_connection():
    # A frame half written can never be completed: the next sender's frame would become part
    # of its payload and the client would read garbage.  The connection is dropped instead.
    verdict, _ = run(r"""
report = {}
done = threading.Event()

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=30.0, ping_interval=None, idle_timeout=None,
                           compress=False)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = loop.spawn(ws.send, b"B" * 2_000_000)
    loop.sleep(0.5)
    big.kill(block=True)
    try:
        ws.send("after")
        report["after"] = "sent"
    except websocket.ConnectionClosed as exc:
        report["after"] = exc.reason
    report["code"] = ws.close_code
    done.set()
    return []

with serving(app) as server:
    sock, _, data = handshake(server, rcvbuf=4096)
    assert done.wait(10)
    sock.settimeout(10)
    data = read_until(sock, data)
    report["received"] = len(data)
    report["tail_has_after"] = b"after" in data[-20:]
    finish(report)
""")
    assert verdict["after"] == "a send was interrupted in the middle of a frame", verdict
    assert verdict["code"] == 1006
    assert 0 < verdict["received"] < 2_000_000 and not verdict["tail_has_after"]


def test_green_threads_and_os_threads_share_a_contended_send_lock():
    # Green senders on the server's hub and plain OS threads send to one slow client at once:
    # waiters of both kinds hand the lock to each other (a green waiter woken from another OS
    # thread); every message arrives whole, none interleaved, none lost.
    verdict, _ = run(r"""
ready = threading.Event()
member = []
report = {}
done = threading.Event()

def app(environ, start_response):
    ws = websocket.upgrade(environ, send_timeout=30.0, ping_interval=None, idle_timeout=None,
                           compress=False)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    member.append(ws)
    ready.set()

    def send_all(tag):
        for n in range(20):
            ws.send(bytes([tag]) * 50_000)

    greens = [loop.spawn(send_all, 65 + i) for i in range(4)]
    loop.joinall(greens, timeout=60)
    report["green_ok"] = all(g.successful() for g in greens)
    done.wait(60)
    return []

with serving(app) as server:
    sock, _, data = handshake(server, rcvbuf=8192)
    assert ready.wait(10)
    threads = [threading.Thread(target=lambda t=97 + i: [member[0].send(bytes([t]) * 50_000)
                                                          for _ in range(20)])
               for i in range(4)]
    for thread in threads:
        thread.start()
    frames = []
    expected = 160 * (50_000 + 4)
    sock.settimeout(20)
    data = read_until(sock, data, size=expected, pause=0.001)
    for thread in threads:
        thread.join(20)
    while len(data) >= 4 and data[0] == 0x82:
        size = struct.unpack("!H", data[2:4])[0]
        payload = data[4:4 + size]
        frames.append((payload[:1].decode(), len(payload), len(set(payload))))
        data = data[4 + size:]
    counts = {}
    for tag, size, distinct in frames:
        assert size == 50_000 and distinct == 1, (tag, size, distinct)
        counts[tag] = counts.get(tag, 0) + 1
    done.set()
    finish({"counts": counts, "leftover": len(data), **report})
""")
    assert verdict["green_ok"] and verdict["leftover"] == 0, verdict
    assert verdict["counts"] == {chr(t): 20 for t in list(range(65, 69)) + list(range(97, 101))}


def test_quiet_client_is_pinged_and_one_that_never_answers_is_closed_after_idle_timeout():
    verdict, stderr = run(r"""
import logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
done = threading.Event()
outcome = {}

def app(environ, start_response):
    ws = websocket.upgrade(environ, ping_interval=0.3, idle_timeout=1.5)
    started = time.monotonic()
    outcome["messages"] = list(ws)
    outcome.update(code=ws.close_code, seconds=time.monotonic() - started)
    done.set()
    return []

with serving(app) as server:
    sock, _, data = handshake(server)                # reads, but never answers a ping
    started = time.monotonic()
    data = read_until(sock, data)
    returned = done.wait(10)
    finish({"returned": returned, "data": data.hex(), "eof_after": time.monotonic() - started,
            **outcome})
""")
    assert verdict["returned"]
    frames = parse_frames(bytes.fromhex(verdict["data"]))
    assert frames[0][0] == 0x9, frames                # a ping came first
    assert close_code_of(frames) == (1001, "idle timeout")
    assert verdict["code"] == 1001 and verdict["messages"] == []
    assert 1.0 < verdict["eof_after"] < 15
    assert "nothing heard for 1.5s" in stderr


def test_client_that_answers_pings_outlives_the_idle_timeout():
    verdict, _ = run(r"""
from wsproto import ConnectionType, WSConnection
from wsproto.events import Ping, Request, TextMessage

def app(environ, start_response):
    ws = websocket.upgrade(environ, ping_interval=0.3, idle_timeout=2.0)
    for message in ws:
        ws.send(message)
    return []

with serving(app) as server:
    sock = socket.create_connection(server.server_address[:2], timeout=10)
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(Request(host="x", target="/")))
    pings = 0
    echoed = None
    deadline = time.monotonic() + 5.0
    sent = False
    while echoed is None:
        if not sent and time.monotonic() > deadline:
            sock.sendall(client.send(TextMessage(data="still here")))
            sent = True
        sock.settimeout(0.2)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, Ping):
                pings += 1
                sock.sendall(client.send(event.response()))
            elif isinstance(event, TextMessage):
                echoed = event.data
    finish({"pings": pings, "echoed": echoed})
""")
    assert verdict["echoed"] == "still here"      # alive after 5 s, well past idle_timeout
    assert verdict["pings"] >= 3


# -- item 7: protocol errors are answered with a Close frame ---------------------------------------

PROTOCOL_SCRIPT = r"""
finished = threading.Event()
outcome = {}

def app(environ, start_response):
    ws = websocket.upgrade(environ, max_message_size=1000, ping_interval=None)
    outcome["messages"] = [m if isinstance(m, str) else m.hex() for m in ws]
    outcome["code"] = ws.close_code
    finished.set()
    return []

with serving(app) as server:
    sock, _, data = handshake(server, extensions=EXTENSIONS)
    from test_websocket_limits import deflated, masked_frame
    sock.sendall(FRAMES)
    data = read_until(sock, data, on_reset=b"<reset>")
    finish({"data": data.hex(), "returned": finished.wait(10), **outcome})
"""


def protocol_error(frames, extensions=None):
    code = PROTOCOL_SCRIPT.replace("FRAMES", f"bytes.fromhex({frames.hex()!r})").replace(
        "EXTENSIONS", repr(extensions))
    verdict, _ = run(code)
    data = bytes.fromhex(verdict["data"])
    assert not data.endswith(b"<reset>"), "the client got a reset instead of the Close frame"
    assert verdict["returned"]
    return close_code_of(parse_frames(data)), verdict


@pytest.mark.parametrize("frames, expected", [
    (masked_frame(0x1, b"caf\xc3"), 1007),                                  # truncated UTF-8
    (masked_frame(0x1, b"ok \xff\xfe"), 1007),
    (masked_frame(0x1, b"par", fin=False) + masked_frame(0x0, b"t \xed\xa0\x80"), 1007),
    (masked_frame(0x1, b"unmasked", mask=False), 1002),
    (masked_frame(0x9, b"p" * 126), 1002),                                  # ping over 125
    (masked_frame(0x9, b"ping", fin=False), 1002),                          # fragmented ping
    (masked_frame(0x3, b"reserved opcode"), 1002),
    (masked_frame(0x0, b"continuation of nothing"), 1002),
    (masked_frame(0x2, b"b" * 1001), 1009),
    (masked_frame(0x2, b"b" * 600, fin=False) + masked_frame(0x0, b"b" * 600), 1009),
], ids=["utf8-truncated", "utf8-invalid", "utf8-fragmented-surrogate", "unmasked",
        "ping-too-long", "ping-fragmented", "reserved-opcode", "lone-continuation",
        "too-big", "too-big-fragmented"])
def test_protocol_error_sends_the_close_frame(frames, expected):
    (code, _), verdict = protocol_error(frames)
    assert code == expected
    assert verdict["code"] == expected and verdict["messages"] == []


# -- item 6: compressed messages are inflated against max_message_size ------------------------------

def deflated(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


DEFLATE = "permessage-deflate; client_max_window_bits"


def test_compressed_message_at_the_limit_is_accepted_one_byte_over_is_refused():
    ok = deflated(b"a" * 1000)
    over = deflated(b"a" * 1001)
    frames = masked_frame(0x2, ok, rsv1=True) + masked_frame(0x2, over, rsv1=True)
    verdict, _ = run(PROTOCOL_SCRIPT.replace("FRAMES", f"bytes.fromhex({frames.hex()!r})")
                     .replace("EXTENSIONS", repr(DEFLATE)))
    assert verdict["messages"] == [(b"a" * 1000).hex()]
    data = bytes.fromhex(verdict["data"])
    assert close_code_of(parse_frames(data)) == (1009, "message too big")
    assert verdict["code"] == 1009


def test_compression_bomb_is_refused_without_inflating_it():
    # 64 MB of zeros deflate to about 64 KB; the limit is 1000 bytes.  The server may inflate
    # little more than the limit: its peak of traced memory stays far below the bomb's size.
    script = PROTOCOL_SCRIPT.replace("    sock.sendall(FRAMES", (
        "    frames = masked_frame(0x2, deflated(bytes(64 << 20)), rsv1=True)\n"
        "    import tracemalloc; tracemalloc.start()\n"
        "    sock.sendall(frames"))
    script = script.replace("EXTENSIONS", repr(DEFLATE))
    script = script.replace('    finish({"data"',
                            '    outcome["peak"] = tracemalloc.get_traced_memory()[1]\n'
                            '    finish({"data"')
    verdict, _ = run(script)
    data = bytes.fromhex(verdict["data"])
    assert close_code_of(parse_frames(data))[0] == 1009
    assert verdict["code"] == 1009
    assert verdict["peak"] < 16 << 20, f"peak {verdict['peak']} bytes traced"


def test_compressed_fragments_count_against_one_message_budget():
    # Three fragments of 400 bytes each inflate to 1,200 bytes in total: over a 1,000 limit
    # although every fragment is under it.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [compressor.compress(b"q" * 400) + compressor.flush(zlib.Z_SYNC_FLUSH)
             for _ in range(3)]
    parts[-1] = parts[-1][:-4]
    frames = (masked_frame(0x2, parts[0], fin=False, rsv1=True)
              + masked_frame(0x0, parts[1], fin=False)
              + masked_frame(0x0, parts[2]))
    (code, _), verdict = protocol_error(frames, extensions=DEFLATE)
    assert code == 1009 and verdict["messages"] == []


def test_compressed_messages_round_trip_with_context_takeover():
    # Ordinary compressed traffic with context takeover across messages keeps working.
    verdict, _ = run(r"""
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

def app(environ, start_response):
    ws = websocket.upgrade(environ, max_message_size=50_000)
    for message in ws:
        ws.send(message)
    return []

with serving(app) as server:
    sock = socket.create_connection(server.server_address[:2], timeout=10)
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(Request(host="x", target="/", extensions=[PerMessageDeflate()])))
    texts = [("message %d " % i) * (i * 100 + 1) for i in range(1, 5)] + ["z" * 50_000]
    got, accepted, pending, parts = [], None, [], []
    for text in texts:
        sent = False
        while True:
            if accepted and not sent:
                sock.sendall(client.send(TextMessage(data=text)))
                sent = True
            if pending:
                got.append(pending.pop(0)); break
            data = sock.recv(65536)
            assert data
            client.receive_data(data)
            for event in client.events():
                if isinstance(event, AcceptConnection):
                    accepted = event
                elif isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        pending.append("".join(parts))
                        parts = []
    finish({"ok": got == texts, "deflate": bool(accepted.extensions)})
""")
    assert verdict == {"ok": True, "deflate": True}
