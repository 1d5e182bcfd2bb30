"""The chat server's hot path written on gevent, for bench/chat.py.

    python bench/chat_gevent.py --port P [--outbox N] [--max-drops N]   (prints "listening on
    HOST:PORT")

Same wire format and the same structure as examples/chat_server.py, minus the commands and
input limits: every line a client sends goes to everyone in the room as ``[lobby] <nick> text``;
the lines of one read are delivered as one batch; each client has a bounded outbox (oldest
dropped and counted, a ``!!! N messages were dropped`` notice, disconnected once more than
``--max-drops`` were dropped without progress) drained by a writer greenlet that sends
everything queued at once (one ``sendall`` per 64 KB or so).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import signal    # noqa: E402
import socket    # noqa: E402
from collections import deque  # noqa: E402

import gevent    # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

members = set()
stats = {"dropped": 0, "kicked_slow": 0}


class Client:
    def __init__(self, sock, nick, capacity, max_drops):
        self.sock = sock
        self.nick = nick
        self.capacity = capacity
        self.max_drops = max_drops
        self.queue = deque(maxlen=capacity)
        self.spare = deque(maxlen=capacity)
        self.ready = Event()
        self.closed = False
        self.unreported = 0

    def put_many(self, items):
        if self.closed:
            return
        queue = self.queue
        excess = len(queue) + len(items) - self.capacity
        queue.extend(items)
        if excess > 0:
            self.unreported += excess
            stats["dropped"] += excess
            if self.unreported > self.max_drops:
                stats["kicked_slow"] += 1
                self.closed = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)    # the handler sees EOF and cleans up
                except OSError:
                    pass
        if not self.ready.is_set():
            self.ready.set()

    def writer(self):
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                self.ready.wait()
                continue
            batch = self.queue
            self.spare.clear()
            self.queue, self.spare = self.spare, batch
            if self.unreported:
                notice = (f"!!! {self.unreported} messages were dropped because your "
                          "connection was too slow\n").encode()
                self.unreported = 0
                batch = [notice, *batch]
            try:
                for chunk in chunks(batch):
                    self.sock.sendall(chunk)
            except OSError:
                return


def chunks(batch, size=65536):
    """``batch`` joined into pieces of about ``size`` bytes (as examples/chat/tcp.py does)."""
    if len(batch) <= 64:
        yield b"".join(batch)
        return
    lines = list(batch)
    step = max(1, len(lines) * size // sum(map(len, lines)))
    for start in range(0, len(lines), step):
        yield b"".join(lines[start:start + step])


def make_handler(capacity, max_drops):
    counter = iter(range(1, 1 << 62))

    def handle(sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(sock, f"guest{next(counter)}", capacity, max_drops)
        members.add(client)
        writer = gevent.spawn(client.writer)
        client.put_many([f"*** welcome to loop chat, {client.nick}!\n".encode()])
        prefix = f"[lobby] <{client.nick}> ".encode()
        buffer = b""
        try:
            while True:
                data = sock.recv(16384)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                if lines:
                    batch = [prefix + line.rstrip(b"\r") + b"\n" for line in lines]
                    for member in members:
                        member.put_many(batch)
        except OSError:
            pass
        finally:
            members.discard(client)
            client.closed = True
            client.ready.set()
            writer.kill()
    return handle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--outbox", type=int, default=500)
    parser.add_argument("--max-drops", type=int, default=2000)
    args = parser.parse_args()
    server = StreamServer(("127.0.0.1", args.port), make_handler(args.outbox, args.max_drops),
                          backlog=2048)
    server.start()
    print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
