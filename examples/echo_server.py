"""An echo server on :class:`loop.server.StreamServer`: one green thread per connection.

    python examples/echo_server.py [--host H] [--port P]

then ``nc 127.0.0.1 7001`` and type.  Each connection's handler is plain blocking code; the
socket it gets is a green socket, so ``recv`` parks only this connection's green thread.
"""
import argparse
import signal

import loop
from loop.server import StreamServer


def echo(sock, address):
    # StreamServer closes the socket when this returns.
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7001)
    args = parser.parse_args(argv)
    server = StreamServer((args.host, args.port), echo)
    server.start()
    host, port = server.address[:2]
    print(f"echo server on {host}:{port}", flush=True)
    # SIGTERM / Ctrl-C: stop accepting, give open connections a second, exit.
    loop.signal_handler(signal.SIGTERM, server.stop, 1.0)
    loop.signal_handler(signal.SIGINT, server.stop, 1.0)
    server.serve_forever()


if __name__ == "__main__":
    main()
