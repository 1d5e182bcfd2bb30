"""Green threads and asyncio on one event loop, both ways.

    python examples/asyncio_interop.py

* From a green thread, ``loop.await_(awaitable)`` waits for asyncio code (here an
  ``asyncio.open_connection`` client and ``asyncio.sleep``) while only that green thread blocks.
* From asyncio code, ``await loop.run_green(fn, *args)`` runs blocking-style code in a green
  thread and awaits its result; a :class:`loop.Greenlet` can be awaited directly too.
"""
import asyncio
import time

import loop


async def handle_echo(reader, writer):
    """An asyncio server: echoes one line, upper-cased."""
    line = await reader.readline()
    writer.write(line.upper())
    await writer.drain()
    writer.close()


async def ask(port, text):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(text.encode() + b"\n")
    answer = await reader.readline()
    writer.close()
    return answer.decode().strip()


def green_worker(port, n):
    """Blocking-style code in a green thread, using asyncio through loop.await_."""
    loop.sleep(0.05 * n)                            # a green sleep
    loop.await_(asyncio.sleep(0.01))                # an asyncio sleep, awaited from green code
    return loop.await_(ask(port, f"green {n}"))     # an asyncio client, awaited from green code


def green_main():
    # Green side: start an asyncio server from green code, then fan out green threads to it.
    server = loop.await_(asyncio.start_server(handle_echo, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    workers = [loop.spawn(green_worker, port, n) for n in range(5)]
    loop.joinall(workers, raise_error=True)
    for g in workers:
        print("green thread got:", g.value)
    # asyncio side: a coroutine that awaits green code.
    print("asyncio got:", loop.await_(asyncio_side(port)))
    print(f"done in {time.monotonic() - started:.2f}s")
    server.close()
    loop.await_(server.wait_closed())


def blocking_sum(numbers):
    total = 0
    for number in numbers:
        loop.sleep(0.01)        # cooperative: other green threads and asyncio tasks run
        total += number
    return total


async def asyncio_side(port):
    total = await loop.run_green(blocking_sum, range(10))
    greenlet = loop.spawn(green_worker, port, 9)
    echoed = await greenlet                         # a Greenlet is awaitable
    return f"sum={total}, echoed={echoed!r}"


if __name__ == "__main__":
    green_main()
