"""The chat server's hot path written on gevent, for bench/chat.py (same wire format as
examples/chat_server.py: every line a client sends goes to everyone in the room as
``[lobby] <nick> text``; per-client bounded outbox drained by a writer greenlet).

    python bench/chat_gevent.py --port P    (prints "listening on HOST:PORT")
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


class Client:
    def __init__(self, sock, nick, capacity):
        self.sock = sock
        self.nick = nick
        self.queue = deque()
        self.capacity = capacity
        self.ready = Event()
        self.closed = False

    def put(self, data):
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
        self.queue.append(data)
        self.ready.set()

    def writer(self):
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                self.ready.wait()
                continue
            batch = []
            while self.queue and len(batch) < 64:
                batch.append(self.queue.popleft())
            try:
                self.sock.sendall(b"".join(batch))
            except OSError:
                return


def make_handler(capacity):
    counter = iter(range(1, 1 << 62))

    def handle(sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(sock, f"guest{next(counter)}", capacity)
        members.add(client)
        writer = gevent.spawn(client.writer)
        client.put(f"*** welcome to loop chat, {client.nick}!\n".encode())
        prefix = f"[lobby] <{client.nick}> ".encode()
        buffer = b""
        try:
            while True:
                data = sock.recv(16384)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = prefix + line.rstrip(b"\r") + b"\n"
                    for member in members:
                        member.put(message)
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
    parser.add_argument("--outbox", type=int, default=10000)
    args = parser.parse_args()
    server = StreamServer(("127.0.0.1", args.port), make_handler(args.outbox), backlog=2048)
    server.start()
    print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
