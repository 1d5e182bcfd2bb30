"""Both servers of the chat together: start, serve, shut down.

Shutdown (Ctrl-C or SIGTERM, handled by :func:`loop.signal_handler` in a green thread) goes:

1. stop accepting on both ports;
2. tell every client ``*** server shutting down`` and end its session: its writer flushes what
   is queued, then the connection closes (TCP: half-close; WebSocket: close frame 1001);
3. wait up to ``grace`` seconds for that, then cut whatever is left (stuck clients);
4. leave Redis, and let the main green thread return.
"""
import logging
import signal

import loop
from loop.event import Event
from loop.pywsgi import WSGIServer
from loop.server import StreamServer

from chat import events
from chat.admission import Admission, refuse_http
from chat.bus import LocalBus, RedisBus
from chat.limits import BURST, RATE, InputGuard
from chat.rooms import Rooms, Stats
from chat.tcp import make_handler
from chat.web import make_app

__all__ = ["Chat", "ChatServer", "Limits", "WebServer"]

log = logging.getLogger("chat")


class Limits:
    """Per-client and per-server limits (see :mod:`chat.outbox`, :mod:`chat.limits` and
    :mod:`chat.admission` for the policies)."""

    def __init__(self, outbox=500, max_drops=2000, rate=RATE, burst=BURST, per_ip=32,
                 max_web_clients=1000, page_connections=100, ping_interval=20.0,
                 idle_timeout=60.0, send_timeout=30.0):
        self.outbox = outbox
        self.max_drops = max_drops
        self.rate = rate
        self.burst = burst
        self.per_ip = per_ip
        self.max_web_clients = max_web_clients
        self.page_connections = page_connections
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout

    def guard(self):
        return InputGuard(rate=self.rate, burst=self.burst)


class Chat:
    """The state every connection shares: rooms, counters, limits, and the bus between
    processes."""

    def __init__(self, redis_url=None, limits=None):
        self.limits = limits or Limits()
        self.stats = Stats()
        self.rooms = Rooms(self.stats)
        self.admission = Admission(self.stats, self.limits.per_ip, self.limits.max_web_clients)
        self.bus = RedisBus(self.rooms, redis_url) if redis_url else LocalBus(self.rooms)


class WebServer(WSGIServer):
    """The web side's WSGI server, with the per-address limit applied to every connection
    before its first byte is read."""

    def __init__(self, admission, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.admission = admission

    def handle(self, sock, address):
        if not self.admission.enter(address):
            refuse_http(sock)
            return
        try:
            super().handle(sock, address)
        finally:
            self.admission.leave(address)


class ChatServer:
    def __init__(self, host="127.0.0.1", port=7000, http_port=8000, redis_url=None, limits=None,
                 grace=3.0, stats_interval=30.0):
        self.chat = Chat(redis_url, limits)
        self.grace = grace
        self.stats_interval = stats_interval
        self.tcp = StreamServer((host, port), make_handler(self.chat))
        limits = self.chat.limits
        # WebSockets can hold at most max_web_clients slots of the pool: the rest is for pages.
        self.http = WebServer(self.chat.admission, (host, http_port), make_app(self.chat),
                              log=logging.getLogger("chat.access"), keepalive_timeout=5.0,
                              max_connections=limits.max_web_clients + limits.page_connections)
        self.stopped = Event()
        self._stopping = False
        self._reporter = None
        self._started = False

    def start(self):
        if self._started:
            return
        self._started = True
        self.chat.bus.start()
        self.tcp.start()
        self.http.start()
        self._reporter = loop.spawn(self._report_stats)

    @property
    def tcp_address(self):
        return self.tcp.address

    @property
    def http_address(self):
        return self.http.address

    def serve_forever(self):
        """Start (unless started), handle SIGINT/SIGTERM, and return once shut down."""
        self.start()
        handlers = [loop.signal_handler(signum, self.shutdown)
                    for signum in (signal.SIGINT, signal.SIGTERM)]
        try:
            self.stopped.wait()
        finally:
            for handler in handlers:
                handler.cancel()

    def shutdown(self, reason="server shutting down"):
        if self._stopping:
            return
        self._stopping = True
        sessions = list(self.chat.rooms.sessions)
        log.info("shutting down: %d clients connected", len(sessions))
        self.tcp.close()
        self.http.close()
        farewell = events.info(reason + ", bye")
        for session in sessions:
            session.end(reason, farewell)
        # Handlers end once their writers flushed; stop() waits for them and kills the rest.
        loop.joinall([loop.spawn(self.tcp.stop, self.grace),
                      loop.spawn(self.http.stop, self.grace)])
        if self._reporter is not None:
            self._reporter.kill()
        self.chat.bus.stop()
        log.info("stopped. %s", self.chat.stats.summary())
        self.stopped.set()

    def _report_stats(self):
        # Log the counters when something worth a look happened: drops or disconnects.
        last = None
        while True:
            loop.sleep(self.stats_interval)
            stats = self.chat.stats
            now = (stats.dropped, stats.kicked_slow, stats.kicked_flood, stats.refused)
            if now != last and any(now):
                log.info("stats: %s", stats.summary())
            last = now
