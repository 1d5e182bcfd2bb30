"""Parse throughput of typical requests: httptools vs h11, and loop's RequestReader on top.

    PYTHONPATH=src python bench/http_parser.py [--seconds 1.0]

Each case parses one request to its end (head, body, end of message) and counts requests per
second; the best of three runs is reported.  Two framings are measured:

* ``fresh``: a new parser per request (a new connection per request);
* ``keep-alive``: one parser for a stream of identical requests, fed one request per call --
  what a keep-alive connection does.  h11 refuses a second request until a response has been
  sent, so its keep-alive loop also serialises a minimal response; that is the price of using h11
  in a server and belongs in the comparison.

The numbers compare parsers, not servers: no sockets are involved.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import h11  # noqa: E402
import httptools  # noqa: E402

from loop._protocols.http import END_OF_MESSAGE, NEED_DATA, RequestReader  # noqa: E402

REQUESTS = {
    "curl GET": (
        b"GET /hello HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\n"
        b"Accept: */*\r\n\r\n"),
    "browser GET": (
        b"GET /static/app.js?v=1234 HTTP/1.1\r\nHost: example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
        b"Referer: https://example.com/index.html\r\nConnection: keep-alive\r\n"
        b"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
        b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n\r\n"),
    "POST 1 KiB": (
        b"POST /api/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1024\r\nAuthorization: Bearer abcdef\r\n\r\n" + b"x" * 1024),
    "chunked POST": (
        b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"100\r\n" + b"y" * 256 + b"\r\n" + b"100\r\n" + b"y" * 256 + b"\r\n0\r\n\r\n"),
}


class _MinimalProtocol:
    """The callbacks a server needs at the least: the URL, the headers, the body."""

    __slots__ = ("url", "headers", "body", "done")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.body = []
        self.done = False

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        self.done = True


def httptools_fresh(raw, n):
    for _ in range(n):
        protocol = _MinimalProtocol()
        httptools.HttpRequestParser(protocol).feed_data(raw)
        assert protocol.done


def httptools_keepalive(raw, n):
    protocol = _MinimalProtocol()
    parser = httptools.HttpRequestParser(protocol)
    for _ in range(n):
        protocol.headers = []
        protocol.body = []
        parser.feed_data(raw)


def _drain_h11(conn):
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or type(event) is h11.EndOfMessage:
            return event


def h11_fresh(raw, n):
    for _ in range(n):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(raw)
        assert type(_drain_h11(conn)) is h11.EndOfMessage


_H11_RESPONSE = h11.Response(status_code=200, headers=[("Content-Length", "0")])


def h11_keepalive(raw, n):
    conn = h11.Connection(h11.SERVER)
    for _ in range(n):
        conn.receive_data(raw)
        _drain_h11(conn)
        conn.send(_H11_RESPONSE)
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()


def _drain_reader(reader):
    while True:
        event = reader.next_event()
        if event is END_OF_MESSAGE or event is NEED_DATA:
            return event


def reader_fresh(raw, n):
    for _ in range(n):
        reader = RequestReader()
        reader.feed(raw)
        assert _drain_reader(reader) is END_OF_MESSAGE


def reader_keepalive(raw, n):
    reader = RequestReader()
    for _ in range(n):
        reader.feed(raw)
        _drain_reader(reader)


CONTENDERS = [
    ("httptools bare", httptools_fresh, httptools_keepalive),
    ("loop RequestReader", reader_fresh, reader_keepalive),
    ("h11", h11_fresh, h11_keepalive),
]


def measure(func, raw, seconds):
    n = 200
    while True:     # calibrate to roughly the requested duration
        start = time.perf_counter()
        func(raw, n)
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 5:
            break
        n *= 2
    n = max(1, int(n * seconds / elapsed))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        func(raw, n)
        best = max(best, n / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, httptools {httptools.__version__}, "
          f"h11 {h11.__version__}; requests/second, best of 3")
    header = f"{'case':14} {'framing':11}" + "".join(f" {name:>20}" for name, _, _ in CONTENDERS)
    print(header)
    for case, raw in REQUESTS.items():
        for framing, index in (("fresh", 1), ("keep-alive", 2)):
            row = f"{case:14} {framing:11}"
            for contender in CONTENDERS:
                row += f" {measure(contender[index], raw, args.seconds):20,.0f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
