"""gunicorn worker classes: ``gunicorn -k loop.worker.GreenWorker app:app``.

Design
======

Two processes, two rules
------------------------
gunicorn's arbiter imports the worker class *before* it forks, in the master.  Importing this
module therefore does nothing but import gunicorn's base classes: no monkey patching, no hub, no
asyncio, not even loop's own server modules.  Everything green happens in the child, in
``init_process``, which gunicorn calls right after the fork:

1. ``loop.monkey.patch_all()``, so that the application's blocking libraries (``socket``,
   ``time.sleep``, ``threading``, ``ssl``...) cooperate;
2. the listeners the arbiter created are re-wrapped as green sockets (same descriptors);
3. gunicorn's own ``init_process`` runs (signals, app loading, ``post_worker_init``) and calls
   ``run`` in the main green thread.  The hub is created on first use in this process; a hub
   the master may have had is rebuilt by loop's fork hook.

Two ways to serve
-----------------
:class:`GreenWorker` serves through :class:`loop.pywsgi.WSGIServer`: loop's strict parser
(httptools) and its response path.  That is the only way to a large gain: with gunicorn's
request handling, its own Python code (parser, ``wsgi.create``, response writer) is about 70% of
a hello-world request's CPU time (py-spy), and a worker using it needs about three times the
CPU per request of one using ``WSGIServer`` (``bench/wsgi.py``).  gunicorn's settings are mapped onto the server (keep-alive,
limits, ``max_requests``, SSL, ``secure_scheme_headers`` from ``forwarded_allow_ips``, PROXY
protocol, ``SCRIPT_NAME``, ``sendfile``), and its logger and request hooks are fed with
objects that carry what they read.  What does not map is listed in ``docs/servers.md``.

:class:`GreenGunicornWorker` is gunicorn's :class:`~gunicorn.workers.base_async.AsyncWorker` on
loop's green threads: gunicorn parses HTTP (its own parser options, HTTP/2, uwsgi) and runs the
app, loop supplies the concurrency; the drop-in for ``-k gevent`` for applications that depend on
gunicorn's request handling (``gunicorn.socket``, HTTP/2, the parser's leniency options).

Both run one :class:`loop.server.StreamServer` per listener, whose pool of
``worker_connections`` green threads serves the connections.  With several workers the listener
is shared (``shared_listener``), and each readiness report is answered with a batch of accepts
that follows the backlog (see "Accepting fairly" in :mod:`loop.server`).  Both simpler rules
fail here: one connection per turn of the event loop (gevent's worker does that) starves new
connections behind kept-alive ones, since a turn of a busy worker serves every connection that
became readable (a burst of 100 new connections waited 3-15 s in the tests); the whole backlog
at once lets the first worker to wake take a whole burst of kept-alive connections while its
sibling idles.

Signals and the heartbeat
-------------------------
The main green thread runs the heartbeat: ``notify()`` (touch the file the arbiter watches) once
a second while ``alive``.  A worker whose hub is blocked by a runaway request stops touching it,
and the arbiter's timeout kills exactly that worker; a worker that merely has many slow requests
in flight keeps beating.

gunicorn installs its handlers with ``signal.signal`` and points ``signal.set_wakeup_fd`` at a
pipe nobody polls in an async worker.  A Python signal handler runs only when the interpreter
gets control, and a hub asleep in ``epoll_wait`` might not get it until its next timer.  So after
gunicorn's ``init_signals`` we register TERM, QUIT, INT, USR1 and ABRT again through the hub's
event loop (:func:`loop.signal_handler`): the loop wakes at once, and each handler runs in a new
green thread, where it may block (``handle_quit`` sleeps; ``reopen_files`` takes locks).
TERM (graceful) wakes the heartbeat loop immediately; then every server is stopped while the
heartbeat continues: the listener is closed, and the connections wind down without losing a
request (see "Winding down").  QUIT and INT exit at once.  HUP is the arbiter's business (it
starts new workers and TERMs the old ones), and so is USR2 (a new arbiter; the old one's
workers get TERM when it is told to stop); USR1 reopens the log files.

Winding down
------------
TERM, HUP (through TERM) and recycling after ``max_requests`` all end in the same graceful
stop, whose rule is: a request the application ran gets its response, and a request that will
not be served is never run.  With :class:`GreenWorker`, a request whose bytes the worker has
read is served and its response says ``Connection: close``, including every request that
starts once the worker knows it will stop (``max_requests`` reached, before the servers are
told); a connection waiting for its next request is closed without reading it, so what the
client sent meanwhile is not run and the client sees the connection close with no response (an
HTTP client retries such a request on a new connection).  :class:`GreenGunicornWorker` runs
gunicorn's request loop: each connection serves the request it reads next with
``Connection: close``, and idle ones close after ``--keep-alive``.  What still runs when the
grace period ends is cut and logged; that happens a little before ``graceful_timeout``, because
the arbiter kills a worker silently at that point.
"""
import logging
import os
import signal
import sys
import time
from datetime import timedelta

from gunicorn.workers.base import Worker
from gunicorn.workers.base_async import AsyncWorker

__all__ = ["GreenWorker", "GreenGunicornWorker", "GreenWSGIWorker"]

#: Signals whose gunicorn handlers we re-route through the hub.
_ROUTED_SIGNALS = ("SIGTERM", "SIGQUIT", "SIGINT", "SIGUSR1", "SIGABRT", "SIGWINCH")


class _GreenProcess(Worker):
    """What both worker classes share: patching, green listeners, signals through the hub, the
    heartbeat and the graceful stop.  Subclasses say how a listener is served (make_server)."""

    #: Seconds between heartbeats (gunicorn hands the worker half its --timeout).
    heartbeat_interval = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.worker_connections = self.cfg.worker_connections
        self.servers = []
        self._wake = None

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.threads > 1:
            log.warning("%s ignores --threads=%d: concurrency comes from green threads "
                        "(--worker-connections)", cls.__name__, cfg.threads)

    # -- in the child, after fork ------------------------------------------------------------

    def init_process(self):
        self.patch()
        super().init_process()      # gunicorn's: signals, app loading, then self.run()

    def patch(self):
        import warnings
        from loop import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", monkey.MonkeyPatchWarning)
            monkey.patch_all()
        for warning in caught:
            # Typically tempfile's lock, bound when the arbiter imported it; harmless here,
            # so only worth a debug line rather than a warning in every worker's boot.
            self.log.debug("%s", warning.message)
        from loop._green import socket as green
        import socket
        sockets = []
        for listener in self.sockets:
            raw = listener.sock if hasattr(listener, "sock") else listener
            sockets.append(green.socket(raw.family, socket.SOCK_STREAM, fileno=raw.detach()))
        self.sockets = sockets

    def init_signals(self):
        super().init_signals()
        import loop
        from loop._core.event import Event
        self._wake = Event()
        handlers = {
            "SIGTERM": self.handle_exit, "SIGQUIT": self.handle_quit,
            "SIGINT": self.handle_quit, "SIGUSR1": self.handle_usr1,
            "SIGABRT": self.handle_abort, "SIGWINCH": self.handle_winch,
        }
        for name in _ROUTED_SIGNALS:
            signum = getattr(signal, name)
            loop.signal_handler(signum, handlers[name], signum, None)

    def handle_exit(self, sig, frame):
        self.alive = False
        if self._wake is not None:
            self._wake.set()

    def handle_quit(self, sig, frame):
        if self._wake is not None:
            self._wake.set()
        super().handle_quit(sig, frame)

    def handle_abort(self, sig, frame):
        if self._wake is not None:
            self._wake.set()
        super().handle_abort(sig, frame)

    def notify(self):
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    # -- serving -----------------------------------------------------------------------------

    def make_server(self, listener, pool, ssl_context):
        raise NotImplementedError

    def run(self):
        from loop.pool import Pool
        ssl_context = None
        if self.cfg.is_ssl:
            from gunicorn.sock import ssl_context as make_ssl_context
            ssl_context = make_ssl_context(self.cfg)
        for listener in self.sockets:
            server = self.make_server(listener, Pool(self.worker_connections), ssl_context)
            server.shared_listener = self.cfg.workers > 1
            server.start()
            self.servers.append(server)

        wake = self._wake
        while self.alive:
            self.notify()
            wake.wait(self.heartbeat_interval)
            wake.clear()
        self._shut_down()

    def _shut_down(self):
        """Graceful: every server stops accepting and drains, in its own green thread, while
        this one keeps beating; what is left when the grace period ends is cut and logged.

        When the arbiter itself stops (its TERM), it kills the workers ``graceful_timeout``
        seconds after telling them to stop, without a word.  The drain therefore ends a little
        earlier (a tenth of the period, at most a second before), so that the worker itself
        cuts what is left and says so in the log."""
        import loop
        graceful = self.cfg.graceful_timeout
        timeout = max(0.0, graceful - min(1.0, graceful / 10.0))
        deadline = time.monotonic() + timeout
        stopping = [loop.spawn(server.stop, timeout) for server in self.servers]
        while not all(g.dead for g in stopping):
            self.notify()
            loop.joinall(stopping, timeout=self.heartbeat_interval)
        if time.monotonic() >= deadline:
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        loop.sleep(0)


# -- serving through loop.pywsgi --------------------------------------------------------------

class GreenWorker(_GreenProcess):
    """gunicorn's process management around :class:`loop.pywsgi.WSGIServer`: loop's parser
    and response path, gunicorn's settings, logger and hooks."""

    @classmethod
    def check_config(cls, cfg, log):
        super().check_config(cfg, log)
        protocols = getattr(cfg, "http_protocols", None) or ()
        if any(p != "h1" for p in protocols):
            log.warning("%s serves HTTP/1.x only: --http-protocols %s is ignored (use "
                        "loop.worker.GreenGunicornWorker for HTTP/2)", cls.__name__,
                        ",".join(protocols))
        if getattr(cfg, "protocol", "http") != "http":
            log.warning("%s serves HTTP only: --protocol %s is ignored (use "
                        "loop.worker.GreenGunicornWorker)", cls.__name__, cfg.protocol)

    def run(self):
        self._options = _server_options(self)
        super().run()

    def make_server(self, listener, pool, ssl_context):
        server_class = _wsgi_server_class()
        return server_class(self, listener, pool, ssl_context, self._options)

    # -- gunicorn's logger and hooks -----------------------------------------------------------

    def _after_response(self, handler, status=None):
        """Access log line and post_request hook for the request ``handler`` just answered;
        ``status`` is given for a request refused before the application saw it."""
        options = self._options
        post_request = options.post_request
        try:
            request = handler.request
            if status is None:
                environ = handler.environ
                response = _Response(handler.status or "-", handler.response_headers or [],
                                     handler._body_sent)
                elapsed = time.monotonic() - handler._started
            else:
                environ = _refused_environ(handler, request)
                response = _Response("%d %s" % (status, _reason(status)), [], 0)
                elapsed = 0.0
            # A refused request never reached _handle_request: the hook request there, if
            # any, belongs to the previous request on this connection.
            hook_request = handler._hook_request if status is None else None
            if hook_request is None and post_request is not None:
                hook_request = _HookRequest(handler, request)
            if options.access_needed:
                self.log.access(response, hook_request if hook_request is not None
                                else _request_headers(request), environ,
                                timedelta(seconds=elapsed))
        except Exception:
            self.log.exception("access log failed")
            return
        if post_request is not None:
            try:
                post_request(self, hook_request, environ, response)
            except Exception:
                self.log.exception("Exception in post_request hook")


#: The earlier name of :class:`GreenWorker`, kept so existing command lines go on working.
GreenWSGIWorker = GreenWorker


class _Response:
    """What gunicorn's access logger, statsd logger and post_request hook read from a
    response."""
    __slots__ = ("status", "headers", "sent")

    def __init__(self, status, headers, sent):
        self.status = status
        self.headers = headers
        self.sent = sent

    @property
    def status_code(self):
        try:
            return int(self.status.split(None, 1)[0])
        except ValueError:
            return None

    @property
    def response_length(self):
        return self.sent


class _HookRequest:
    """What gunicorn's pre_request and post_request hooks usually read from a request (built
    only when a hook is configured): method, uri, path, query, version, headers (upper-cased
    names, like gunicorn's), scheme and peer address."""
    __slots__ = ("method", "uri", "path", "query", "fragment", "version", "headers", "scheme",
                 "peer_addr", "remote_addr", "_keep_alive")

    def __init__(self, handler, request):
        from loop._protocols.http import split_target
        self.method = request.method
        self.uri = request.target.decode("latin-1")
        path, query = split_target(request.target)
        self.path = path.decode("latin-1")
        self.query = query.decode("latin-1")
        self.fragment = ""
        self.version = (1, 0) if request.version == "HTTP/1.0" else (1, 1)
        self.headers = _request_headers(request)
        self.scheme = handler._scheme or handler.server.default_scheme
        self.peer_addr = self.remote_addr = handler.address
        self._keep_alive = request.keep_alive

    def should_close(self):
        return not self._keep_alive


def _request_headers(request):
    if request is None:
        return []
    return [(name.decode("latin-1").upper(), value.decode("latin-1"))
            for name, value in request.headers]


def _refused_environ(handler, request):
    """The environ gunicorn's access log needs for a request the application never saw."""
    environ = dict(handler._base_environ or ())
    if request is not None:
        target = request.target.decode("latin-1")
        environ.update(REQUEST_METHOD=request.method, RAW_URI=target,
                       SERVER_PROTOCOL=request.version, PATH_INFO=target.partition("?")[0],
                       QUERY_STRING=target.partition("?")[2])
    else:
        environ.update(REQUEST_METHOD="-", RAW_URI="-", SERVER_PROTOCOL="-")
    return environ


_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
            413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 505: "HTTP Version Not Supported"}


def _reason(status):
    return _REASONS.get(status, "Error")


class _Options:
    """gunicorn's settings turned, once per worker, into what the server reads per request."""


def _server_options(worker):
    import logging
    from gunicorn.config import PostRequest, PreRequest
    from loop._protocols.http import DEFAULT_MAX_HEADER_BYTES
    cfg = worker.cfg
    log = worker.log
    options = _Options()
    options.keepalive = cfg.keepalive > 0
    options.keepalive_timeout = cfg.keepalive if cfg.keepalive > 0 else 5.0
    # --timeout bounds how long a sync worker may be stuck on one client before the arbiter
    # kills it; here it bounds what one connection may hold without progress (a body read or a
    # write the client does not take), and only that connection is cut.  0 disables gunicorn's
    # timeout but not ours: the server's default then applies.
    options.timeout = float(cfg.timeout) if cfg.timeout > 0 else None

    # gunicorn's limits, with its own meaning of 0 and of values beyond its maxima.
    line = cfg.limit_request_line
    options.max_request_line = (1 << 20 if line == 0 else 8190 if line < 0 or line >= 8190
                                else line)
    fields = cfg.limit_request_fields
    options.max_headers = 32768 if fields <= 0 or fields > 32768 else fields
    field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190
    # Our reader bounds the whole header section, not each field: allow at least one field
    # of gunicorn's size.
    options.max_header_bytes = max(DEFAULT_MAX_HEADER_BYTES, field_size + 1024)

    options.script_name = os.environ.get("SCRIPT_NAME", "")
    options.use_sendfile = cfg.sendfile is not False
    options.forwarded_allowed = _address_filter(cfg.forwarded_allow_ips)
    # secure_scheme_headers: lower-cased raw names -> the value that means https
    options.scheme_headers = {name.lower().encode("latin-1"): value
                              for name, value in (cfg.secure_scheme_headers or {}).items()}
    mode = getattr(cfg, "proxy_protocol", "off")
    if mode is True:                 # gunicorn before 24.1: a flag
        mode = "auto"
    options.proxy_mode = None if mode in (None, False, "off") else mode
    options.proxy_allowed = _address_filter(getattr(cfg, "proxy_allow_ips", ["127.0.0.1"]))

    error_log = getattr(log, "error_log", None)
    if not isinstance(error_log, (logging.Logger, logging.LoggerAdapter)):
        error_log = logging.getLogger("gunicorn.error")
    options.error_log = error_log
    # gunicorn always calls log.access(); its Logger returns early when no access log is
    # configured, so we skip building the arguments then -- unless a logger class (statsd)
    # does more in access() than write the line.
    from gunicorn.glogging import Logger
    options.access_needed = bool(getattr(log, "access_log_enabled", True)
                                 or type(log).access is not Logger.access)
    pre_request = cfg.pre_request
    if pre_request is PreRequest.default and not error_log.isEnabledFor(logging.DEBUG):
        pre_request = None       # the default only logs at debug level
    options.pre_request = pre_request
    post_request = cfg.post_request
    options.post_request = None if post_request is PostRequest.default else post_request

    from gunicorn.http.wsgi import WSGIErrorsWrapper
    options.environ = {"SERVER_SOFTWARE": "loop.pywsgi (gunicorn)",
                       "wsgi.multiprocess": cfg.workers > 1,
                       "wsgi.errors": WSGIErrorsWrapper(cfg)}
    return options


def _address_filter(entries):
    """``forwarded_allow_ips`` / ``proxy_allow_ips`` as a predicate on a peer address.  Unix
    socket peers are trusted, as gunicorn does; results are memoised per host."""
    import ipaddress
    entries = [entry.strip() for entry in (entries or ()) if entry.strip()]
    if "*" in entries:
        return lambda address: True
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
    seen = {}

    def allowed(address):
        if not isinstance(address, tuple):
            return True
        host = address[0]
        result = seen.get(host)
        if result is None:
            try:
                ip = ipaddress.ip_address(host.partition("%")[0])
            except ValueError:
                result = False
            else:
                if getattr(ip, "ipv4_mapped", None) is not None:
                    ip = ip.ipv4_mapped
                result = any(ip in network for network in networks
                             if network.version == ip.version)
            if len(seen) < 4096:
                seen[host] = result
        return result
    return allowed


# The server and handler classes subclass loop.pywsgi's, which must not be imported in the
# arbiter: they are built on first use, in the worker.
_server_class = None


def _wsgi_server_class():
    global _server_class
    if _server_class is None:
        _server_class = _build_server_class()
    return _server_class


_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _build_server_class():
    import logging
    from loop import pywsgi
    from loop._protocols.http import ProtocolError

    class GunicornHandler(pywsgi.WSGIHandler):
        _started = 0.0
        _scheme = None
        _hook_request = None
        _scheme_headers = None

        def handle(self):
            server = self.server
            options = server.options
            extra = None
            if options.proxy_mode is not None:
                extra = self._read_proxy_header()
                if extra is None:
                    return
            # Trust is a property of the peer we talk to, the proxy, not of the client it
            # speaks for (gunicorn checks the socket's peer too).
            if options.scheme_headers and options.forwarded_allowed(self._peer):
                self._scheme_headers = options.scheme_headers
            base = self._base_environ = server._connection_environ(self.address)
            base["wsgi.early_hints"] = self._early_hints
            if extra:
                base.update(extra)
            try:
                super().handle()
            finally:
                self._base_environ = None     # the bound method in it is a reference cycle

        @property
        def _peer(self):
            return getattr(self, "_proxy_peer", self.address)

        def _handle_request(self, request):
            server = self.server
            worker = server.worker
            worker.nr += 1
            if worker.nr >= worker.max_requests and worker.alive:
                worker.log.info("Autorestarting worker after current request.")
                worker.alive = False
                worker._wake.set()
            if not (worker.alive and server.keepalive):
                request.keep_alive = False     # so the response says Connection: close
            if self._scheme_headers is not None:
                scheme = self._forwarded_scheme(request)
                if scheme is False:
                    self.request = request
                    self._protocol_error(ProtocolError(400, "conflicting secure scheme "
                                                            "headers"))
                    return
                self._scheme = scheme
                self._base_environ["wsgi.url_scheme"] = scheme or server.default_scheme
            if server.log_requests:
                self._started = time.monotonic()
                self._hook_request = None
            pre_request = server.pre_request
            if pre_request is not None:
                self._hook_request = _HookRequest(self, request)
                try:
                    pre_request(worker, self._hook_request)
                except Exception:
                    worker.log.exception("Exception in pre_request hook")
                    self.request = request
                    self._answer_error(500)
                    server.log_access_error(self, 500)
                    return
            super()._handle_request(request)

        def _forwarded_scheme(self, request):
            """https or http from the secure scheme headers present, None when there are
            none, False when they disagree (gunicorn refuses such a request)."""
            wanted = self._scheme_headers
            scheme = None
            for name, value in request.headers:
                expected = wanted.get(name.lower())
                if expected is not None:
                    this = "https" if value.decode("latin-1") == expected else "http"
                    if scheme is None:
                        scheme = this
                    elif scheme != this:
                        return False
            return scheme

        def _try_sendfile(self, wrapper):
            if not self.server.options.use_sendfile:
                return False
            return super()._try_sendfile(wrapper)

        def _early_hints(self, headers):
            """environ["wsgi.early_hints"]: send a 103 with these headers, as gunicorn does;
            ignored once the response has started or for an HTTP/1.0 client."""
            request = self.request
            if self.headers_sent or request is None or request.version != "HTTP/1.1":
                return
            lines = []
            for name, value in headers:
                if isinstance(name, bytes):
                    name = name.decode("latin-1")
                if isinstance(value, bytes):
                    value = value.decode("latin-1")
                pywsgi._check_response_header(name, value)
                lines.append(f"{name}: {value}\r\n")
            self._send(b"HTTP/1.1 103 Early Hints\r\n" + "".join(lines).encode("latin-1")
                       + b"\r\n")

        # -- PROXY protocol ----------------------------------------------------------------------

        def _read_proxy_header(self):
            """Consume a PROXY protocol header (v1 text or v2 binary, as configured) if the
            connection starts with one; the bytes after it go to the request reader.  Returns
            the environ additions ({} without a header), or None to close the connection."""
            server = self.server
            mode = server.options.proxy_mode
            deadline = time.monotonic() + server.header_timeout
            data = b""
            while True:
                kind = _proxy_kind(data, mode)
                if kind == "v2" and len(data) >= 16:
                    end = 16 + int.from_bytes(data[14:16], "big")
                    if len(data) >= end:
                        break
                elif kind == "v1":
                    end = data.find(b"\r\n")
                    if end >= 0:
                        end += 2
                        break
                    if len(data) >= 107:
                        return self._proxy_refused(400, "PROXY v1 line too long")
                elif kind is None:
                    end = 0
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._settimeout(remaining)
                try:
                    piece = self.sock.recv(pywsgi.RECV_SIZE)
                except (TimeoutError, OSError):
                    return None
                if not piece:
                    return None
                data += piece
            extra = {}
            if kind is not None:
                if not server.options.proxy_allowed(self.address):
                    return self._proxy_refused(403, "PROXY header from a peer not in "
                                                    "proxy_allow_ips")
                try:
                    parsed = (_parse_proxy_v1(data[:end]) if kind == "v1"
                              else _parse_proxy_v2(data[:end]))
                except ValueError as exc:
                    return self._proxy_refused(400, "invalid PROXY header: %s" % exc)
                protocol, client, proxy = parsed
                extra["PROXY_PROTOCOL"] = protocol
                if client is not None:
                    self._proxy_peer = self.address
                    self.address = client
                    extra["PROXY_ADDR"] = proxy[0]
                    extra["PROXY_PORT"] = str(proxy[1])
            if len(data) > end:
                self.reader.feed(data[end:])
            return extra

        def _proxy_refused(self, status, detail):
            self.server.log_error("refused connection from %s: %s", self.address, detail,
                                  level=logging.WARNING)
            self.closing = True
            try:
                self._send(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                           % (status, _reason(status).encode("ascii")))
            except Exception:
                pass
            return None

    class GunicornWSGIServer(pywsgi.WSGIServer):
        handler_class = GunicornHandler

        def __init__(self, worker, listener, pool, ssl_context, options):
            super().__init__(listener, worker.wsgi, spawn=pool, environ=options.environ,
                             ssl_context=ssl_context, log=False, error_log=options.error_log,
                             keepalive_timeout=options.keepalive_timeout,
                             max_request_line=options.max_request_line,
                             max_headers=options.max_headers,
                             max_header_bytes=options.max_header_bytes,
                             script_name=options.script_name)
            if options.timeout is not None:
                self.timeout = options.timeout
            self.worker = worker
            self.options = options
            self.default_scheme = "https" if ssl_context is not None else "http"
            # Read per request: kept as plain attributes of the server.
            self.keepalive = options.keepalive
            self.pre_request = options.pre_request
            self.log_requests = options.access_needed or options.post_request is not None

        def log_access(self, handler):
            if self.log_requests:
                self.worker._after_response(handler)

        def log_access_error(self, handler, status):
            if self.log_requests and handler.request is not None:
                self.worker._after_response(handler, status)

    return GunicornWSGIServer


def _proxy_kind(data, mode):
    """Which PROXY header ``data`` starts with: ``"v1"``, ``"v2"``, ``None`` (none) or
    ``"more"`` (too few bytes to tell)."""
    if not data:
        return "more"
    if mode != "v1" and _V2_SIGNATURE.startswith(data[:12]):
        return "v2" if len(data) >= 12 else "more"
    if mode != "v2" and b"PROXY ".startswith(data[:6]):
        return "v1" if len(data) >= 6 else "more"
    return None


def _parse_proxy_v1(line):
    """``PROXY TCP4 src dst sport dport`` -> (protocol, (src, sport), (dst, dport)); UNKNOWN
    gives no addresses (the spec says to use the connection's own)."""
    import socket
    parts = line[:-2].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return "UNKNOWN", None, None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ValueError(repr(line))
    family = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
    try:
        socket.inet_pton(family, parts[2])
        socket.inet_pton(family, parts[3])
    except OSError:
        raise ValueError(repr(line)) from None
    ports = []
    for text in parts[4:]:
        if not text.isdigit() or int(text) > 65535:
            raise ValueError(repr(line))
        ports.append(int(text))
    return parts[1], (parts[2], ports[0]), (parts[3], ports[1])


def _parse_proxy_v2(header):
    """The binary header -> (protocol, client, proxy), as for v1; LOCAL and UNSPEC give no
    addresses."""
    import socket
    version, command = header[12] >> 4, header[12] & 0x0F
    if version != 2 or command not in (0, 1):
        raise ValueError("version %d command %d" % (version, command))
    if command == 0:
        return "LOCAL", None, None
    family, transport = header[13] >> 4, header[13] & 0x0F
    body = header[16:]
    if family == 0:
        return "UNSPEC", None, None
    if transport != 1:
        raise ValueError("only TCP (STREAM) is supported")
    if family == 1 and len(body) >= 12:
        size, af, protocol = 4, socket.AF_INET, "TCP4"
    elif family == 2 and len(body) >= 36:
        size, af, protocol = 16, socket.AF_INET6, "TCP6"
    else:
        raise ValueError("address family %d with %d bytes" % (family, len(body)))
    source = socket.inet_ntop(af, body[:size])
    destination = socket.inet_ntop(af, body[size:2 * size])
    ports = body[2 * size:2 * size + 4]
    return (protocol, (source, int.from_bytes(ports[:2], "big")),
            (destination, int.from_bytes(ports[2:], "big")))


# -- serving through gunicorn's parser ----------------------------------------------------------

class GreenGunicornWorker(_GreenProcess, AsyncWorker):
    """gunicorn's async worker on loop's hub: gunicorn's HTTP parser and request handling,
    loop's green threads (the counterpart of ``-k gevent``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read per request by timeout_ctx; cfg attribute access goes through __getattr__.
        self._keepalive = self.cfg.keepalive

    def timeout_ctx(self):
        from loop._core.timeout import Timeout
        return Timeout(self._keepalive, False)

    def make_server(self, listener, pool, ssl_context):
        from functools import partial
        from loop.server import StreamServer
        server = StreamServer(listener, handle=partial(self.handle, listener), spawn=pool,
                              ssl_context=ssl_context)
        server.log_error = self._log_server_error
        return server

    def _log_server_error(self, message, *args, level=logging.ERROR):
        self.log.log(level, message, *args)

    def handle(self, listener, client, addr):
        client.setblocking(True)
        super().handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr):
        from loop._core.exceptions import GreenletExit
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except (GreenletExit, SystemExit):
            # server.stop() killed us at the end of the graceful period.
            raise StopIteration() from None
        finally:
            if not self.alive:
                # max_requests reached (gunicorn only clears alive): stop accepting now
                # rather than at the next heartbeat.
                self._wake.set()
