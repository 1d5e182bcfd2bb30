"""The WSGI handler's own cost, hot: one connection, an in-memory socket, no waits.

    python bench/handler_hot.py [--requests 200000] [--runs 5]

``loop.pywsgi.WSGIHandler`` serves N keep-alive hello-world requests from a socket stand-in
whose ``recv`` returns the next request at once and whose ``try_send`` takes everything, so
nothing waits, switches or makes a system call: what is left is the handler's Python (the head
scanner, the environ, start_response, the response head, the access-log check) with every
cache warm.  Prints the best of the runs in microseconds per request.  Set against a
server's CPU per request (``bench/wsgi.py``, ``bench/protocol_driven.py``), it tells how much
of that is the handler's code and how much comes from running it cold, among many
connections.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "src"))

import loop.monkey  # noqa: E402

loop.monkey.patch_all()

from loop import pywsgi  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


class InstantSocket:
    """Gives ``requests`` requests, one per recv, then end of stream; takes every send."""

    def __init__(self, requests):
        self.left = requests

    def recv(self, size):
        if self.left:
            self.left -= 1
            return REQUEST
        return b""

    def try_send(self, data):
        return len(data)

    sendall = try_send

    def settimeout(self, timeout):
        pass

    def fileno(self):
        return -1

    def shutdown(self, how):
        pass

    def close(self):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=False)
    best = None
    for _ in range(args.runs):
        handler = pywsgi.WSGIHandler(server, InstantSocket(args.requests), ("127.0.0.1", 1))
        started = time.perf_counter()
        handler.handle()
        took = (time.perf_counter() - started) / args.requests * 1e6
        if handler.requests_served != args.requests:
            raise SystemExit("served %d of %d" % (handler.requests_served, args.requests))
        best = took if best is None else min(best, took)
    print("WSGIHandler, hot: %.2f us per request (best of %d runs of %d, Python %s)"
          % (best, args.runs, args.requests, sys.version.split()[0]))


if __name__ == "__main__":
    main()
