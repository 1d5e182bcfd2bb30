"""The chat server's hot path written on asyncio streams (uvloop when installed), for
bench/chat.py; same wire format, batching and outbox policy as bench/chat_gevent.py.

    python bench/chat_asyncio.py --port P [--outbox N] [--max-drops N] [--no-uvloop]
"""
import argparse
import asyncio
import itertools
import signal
from collections import deque

members = set()
counter = itertools.count(1)
stats = {"dropped": 0, "kicked_slow": 0}


class Client:
    def __init__(self, writer, nick, capacity, max_drops):
        self.writer = writer
        self.nick = nick
        self.capacity = capacity
        self.max_drops = max_drops
        self.queue = deque(maxlen=capacity)
        self.spare = deque(maxlen=capacity)
        self.ready = asyncio.Event()
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
                self.writer.transport.abort()   # the reader sees the end and cleans up
        if not self.ready.is_set():
            self.ready.set()

    async def write_loop(self):
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
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
                # Unlike the green servers (see chunks() in chat_gevent.py), one write of the
                # whole backlog measured cheapest here: uvloop keeps the unsent rest itself.
                self.writer.write(b"".join(batch))
                await self.writer.drain()
            except OSError:
                return


def make_handler(capacity, max_drops):
    async def handle(reader, writer):
        client = Client(writer, f"guest{next(counter)}", capacity, max_drops)
        members.add(client)
        task = asyncio.create_task(client.write_loop())
        client.put_many([f"*** welcome to loop chat, {client.nick}!\n".encode()])
        prefix = f"[lobby] <{client.nick}> ".encode()
        buffer = b""
        try:
            while True:
                data = await reader.read(16384)
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
            task.cancel()
            writer.close()
    return handle


async def main(port, capacity, max_drops):
    server = await asyncio.start_server(make_handler(capacity, max_drops), "127.0.0.1", port,
                                        backlog=2048)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--outbox", type=int, default=500)
    parser.add_argument("--max-drops", type=int, default=2000)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
    asyncio.run(main(args.port, args.outbox, args.max_drops))
