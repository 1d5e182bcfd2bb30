"""What a gunicorn worker does after the fork: loop's servers fed with gunicorn's settings.

Imported only in the worker process, once it is patched (:mod:`loop._gunicorn.process`).
:class:`GunicornWSGIServer` and its handler are :mod:`loop.pywsgi`'s, with gunicorn's settings
mapped onto them once per worker (:func:`server_options`), a PROXY protocol header read before
the first request (parsed by :mod:`loop._protocols.proxy`), the secure scheme headers checked
per request, and gunicorn's access logger and request hooks fed with small objects that carry
what they read (:class:`_Response`, :class:`_HookRequest`).
"""
import ipaddress
import logging
import os
import signal
import socket
import time
from datetime import timedelta
from functools import partial

from gunicorn.config import PostRequest, PreRequest
from gunicorn.glogging import Logger
from gunicorn.http.wsgi import WSGIErrorsWrapper
from gunicorn.sock import ssl_context as make_ssl_context

from loop import pywsgi
from loop._core.api import joinall, signal_handler, sleep, spawn
from loop._core.event import Event
from loop._core.exceptions import GreenletExit
from loop._core.timeout import Timeout
from loop._green import socket as green_socket
from loop._protocols.http import DEFAULT_MAX_HEADER_BYTES, ProtocolError, split_target
from loop._protocols.proxy import (NEED_DATA, ProxyHeaderError, parse_proxy_header,
                                   proxy_header_version)
from loop.pool import Pool
from loop.server import StreamServer

__all__ = ["GunicornWSGIServer", "GunicornHandler", "server_options", "green_listeners",
           "route_signals", "gunicorn_stream_server", "make_ssl_context", "Event", "Pool",
           "Timeout", "GreenletExit", "joinall", "sleep", "spawn"]

#: Signals whose gunicorn handlers are routed through the hub (see the package's essay).
ROUTED_SIGNALS = ("SIGTERM", "SIGQUIT", "SIGINT", "SIGUSR1", "SIGABRT", "SIGWINCH")


def green_listeners(listeners):
    """The arbiter's listeners as green sockets on the same descriptors."""
    sockets = []
    for listener in listeners:
        raw = listener.sock if hasattr(listener, "sock") else listener
        sockets.append(green_socket.socket(raw.family, socket.SOCK_STREAM, fileno=raw.detach()))
    return sockets


def route_signals(handlers):
    """Run gunicorn's handlers (by signal name) from the hub's event loop, each in a new green
    thread, so that a signal wakes a hub asleep in its poll at once."""
    for name in ROUTED_SIGNALS:
        signum = getattr(signal, name)
        signal_handler(signum, handlers[name], signum, None)


def gunicorn_stream_server(worker, listener, pool, ssl_context):
    """The server of :class:`~loop._gunicorn.process.GreenGunicornWorker`: connections are
    handed to gunicorn's request loop."""
    server = StreamServer(listener, handle=partial(worker.handle, listener), spawn=pool,
                          ssl_context=ssl_context)

    def log_error(message, *args, level=logging.ERROR):
        worker.log.log(level, message, *args)
    server.log_error = log_error
    return server


# -- gunicorn's settings --------------------------------------------------------------------

class _Options:
    """gunicorn's settings turned, once per worker, into what the server reads per request."""


def server_options(worker):
    """The worker's gunicorn settings, mapped once onto what GunicornWSGIServer reads."""
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
    options.forwarded_allowed = address_filter(cfg.forwarded_allow_ips)
    # secure_scheme_headers: lower-cased raw names -> the value that means https
    options.scheme_headers = {name.lower().encode("latin-1"): value
                              for name, value in (cfg.secure_scheme_headers or {}).items()}
    # gunicorn 24.1 and later normalise the setting to off, v1, v2 or auto; before, a flag.
    mode = getattr(cfg, "proxy_protocol", "off")
    options.proxy_mode = (None if mode in (None, False, "off")
                          else mode if mode in ("v1", "v2") else "auto")
    options.proxy_allowed = address_filter(getattr(cfg, "proxy_allow_ips", ["127.0.0.1"]))

    error_log = getattr(log, "error_log", None)
    if not isinstance(error_log, (logging.Logger, logging.LoggerAdapter)):
        error_log = logging.getLogger("gunicorn.error")
    options.error_log = error_log
    # gunicorn always calls log.access(); its Logger returns early when no access log is
    # configured, so we skip building the arguments then -- unless a logger class (statsd)
    # does more in access() than write the line.
    options.access_needed = bool(getattr(log, "access_log_enabled", True)
                                 or type(log).access is not Logger.access)
    pre_request = cfg.pre_request
    if pre_request is PreRequest.default and not error_log.isEnabledFor(logging.DEBUG):
        pre_request = None       # the default only logs at debug level
    options.pre_request = pre_request
    post_request = cfg.post_request
    options.post_request = None if post_request is PostRequest.default else post_request

    options.environ = {"SERVER_SOFTWARE": "loop.pywsgi (gunicorn)",
                       "wsgi.multiprocess": cfg.workers > 1,
                       "wsgi.errors": WSGIErrorsWrapper(cfg)}
    return options


def address_filter(entries):
    """``forwarded_allow_ips`` / ``proxy_allow_ips`` as a predicate on a peer address.  Unix
    socket peers are trusted, as gunicorn does; results are memoised per host."""
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


# -- the server and its handler ----------------------------------------------------------

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
        base = server._connection_environ(self.address)
        base["wsgi.early_hints"] = self._early_hints
        if extra:
            base.update(extra)
        self._use_base_environ(base)
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
            worker.recycle()
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
        the environ additions ({} without a header), or None to close the connection.

        A peer not in ``proxy_allow_ips`` is refused as soon as its first bytes show a
        header, before the rest of it is read."""
        server = self.server
        options = server.options
        accept = options.proxy_mode
        deadline = time.monotonic() + server.header_timeout
        data = bytearray()
        checked = False
        while True:
            if not checked:
                version = proxy_header_version(data, accept)
                if version is not None and version is not NEED_DATA:
                    if not options.proxy_allowed(self.address):
                        return self._proxy_refused(403, "PROXY header from a peer not in "
                                                        "proxy_allow_ips")
                    checked = True
            if data:
                try:
                    header = parse_proxy_header(data, accept)
                except ProxyHeaderError as exc:
                    return self._proxy_refused(exc.status, "invalid PROXY header: %s" % exc)
                if header is not NEED_DATA:
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
        consumed = 0
        if header is not None:
            consumed = header.length
            extra["PROXY_PROTOCOL"] = header.protocol
            if header.client is not None:
                self._proxy_peer = self.address
                self.address = header.client
                extra["PROXY_ADDR"] = header.proxy[0]
                extra["PROXY_PORT"] = str(header.proxy[1])
        if len(data) > consumed:
            self.reader.feed(bytes(data[consumed:]))
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
            self._after_response(handler)

    def log_access_error(self, handler, status):
        if self.log_requests and handler.request is not None:
            self._after_response(handler, status)

    def _after_response(self, handler, status=None):
        """Access log line and post_request hook for the request ``handler`` just answered;
        ``status`` is given for a request refused before the application saw it."""
        worker = self.worker
        log = worker.log
        options = self.options
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
                log.access(response, hook_request if hook_request is not None
                           else _request_headers(request), environ,
                           timedelta(seconds=elapsed))
        except Exception:
            log.exception("access log failed")
            return
        if post_request is not None:
            try:
                post_request(worker, hook_request, environ, response)
            except Exception:
                log.exception("Exception in post_request hook")


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


