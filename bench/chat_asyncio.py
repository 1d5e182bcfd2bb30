"""The chat server's hot path written on asyncio streams (uvloop when installed), for
bench/chat.py; same wire format and outbox policy as bench/chat_gevent.py.

    python bench/chat_asyncio.py --port P [--no-uvloop]
"""
import argparse
import asyncio
import itertools
import signal
from collections import deque

members = set()
counter = itertools.count(1)


class Client:
    def __init__(self, writer, nick, capacity):
        self.writer = writer
        self.nick = nick
        self.queue = deque()
        self.capacity = capacity
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, data):
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
        self.queue.append(data)
        self.ready.set()

    async def write_loop(self):
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            batch = []
            while self.queue and len(batch) < 64:
                batch.append(self.queue.popleft())
            try:
                self.writer.write(b"".join(batch))
                await self.writer.drain()
            except OSError:
                return


def make_handler(capacity):
    async def handle(reader, writer):
        client = Client(writer, f"guest{next(counter)}", capacity)
        members.add(client)
        task = asyncio.create_task(client.write_loop())
        client.put(f"*** welcome to loop chat, {client.nick}!\n".encode())
        prefix = f"[lobby] <{client.nick}> ".encode()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = prefix + line.rstrip(b"\r\n") + b"\n"
                for member in members:
                    member.put(message)
        except (OSError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            members.discard(client)
            client.closed = True
            client.ready.set()
            task.cancel()
            writer.close()
    return handle


async def main(port, capacity):
    server = await asyncio.start_server(make_handler(capacity), "127.0.0.1", port, backlog=2048)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--outbox", type=int, default=10000)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
    asyncio.run(main(args.port, args.outbox))
