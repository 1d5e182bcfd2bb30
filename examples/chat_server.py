"""A chat server: a line protocol for ``nc`` and a web page, sharing rooms.

    python examples/chat_server.py [--host H] [--port P] [--http-port Q] [--redis URL]

Then ``nc 127.0.0.1 7000`` (type ``/help``) and open http://127.0.0.1:8000/ in a browser: both
kinds of users see each other's messages.  With ``--redis redis://127.0.0.1:6379/0``, several
server processes share their rooms through Redis pub/sub.  Ctrl-C or SIGTERM tells the clients
and shuts down.  The code is in ``examples/chat/`` (see its ``__init__``); this file only reads
the command line.
"""
import argparse
import logging
import os
import sys


#: The tunable limits, by group: (flag, type, default, metavar, help).
OPTION_GROUPS = [
    ("per-client limits", [
        ("--outbox", int, 500, "N",
         "events queued for a slow client before the oldest are dropped"),
        ("--max-drops", int, 2000, "N",
         "disconnect a client once N events were dropped without progress"),
        ("--rate", float, 20.0, "LINES", "lines per second a client may send (sustained)"),
        ("--burst", int, 40, "LINES", "lines a client may send at once"),
    ]),
    ("connection limits (see chat/admission.py)", [
        ("--per-ip", int, 32, "N", "connections from one IP address, both ports together"),
        ("--max-web-clients", int, 1000, "N", "WebSockets open at once; more are answered 503"),
        ("--page-connections", int, 100, "N",
         "web server slots kept for page requests beyond the WebSockets"),
        ("--ping-interval", float, 20.0, "SECONDS",
         "ping a WebSocket client that has been quiet this long"),
        ("--idle-timeout", float, 60.0, "SECONDS",
         "close a WebSocket that sent nothing (not even a pong) this long"),
        ("--send-timeout", float, 30.0, "SECONDS",
         "cut a WebSocket client whose socket takes no data this long"),
    ]),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="loop chat server (TCP line protocol + web)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7000, help="TCP line-protocol port")
    parser.add_argument("--http-port", type=int, default=8000, help="web page and WebSocket port")
    parser.add_argument("--redis", metavar="URL",
                        help="share rooms with other processes through Redis pub/sub")
    for title, options in OPTION_GROUPS:
        group = parser.add_argument_group(title)
        for flag, kind, default, metavar, text in options:
            group.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    parser.add_argument("--verbose", "-v", action="store_true", help="log every HTTP request")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.redis:
        # redis-py does blocking socket IO: make it green before it is imported.  Without
        # --redis the server needs no patching at all: it only uses loop's own servers.
        from loop import monkey
        monkey.patch_all()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from chat.app import ChatServer, Limits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("chat.access").setLevel(logging.INFO if args.verbose else logging.WARNING)
    limits = Limits(args.outbox, args.max_drops, args.rate, args.burst, per_ip=args.per_ip,
                    max_web_clients=args.max_web_clients,
                    page_connections=args.page_connections, ping_interval=args.ping_interval,
                    idle_timeout=args.idle_timeout, send_timeout=args.send_timeout)
    server = ChatServer(args.host, args.port, args.http_port, redis_url=args.redis, limits=limits)
    server.start()
    tcp_host, tcp_port = server.tcp_address[:2]
    http_host, http_port = server.http_address[:2]
    print(f"chat: line protocol on {tcp_host}:{tcp_port} (try: nc {tcp_host} {tcp_port}), "
          f"web on http://{http_host}:{http_port}/"
          + (f", rooms shared through {args.redis}" if args.redis else ""), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
