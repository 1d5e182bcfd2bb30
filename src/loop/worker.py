"""gunicorn worker classes: ``gunicorn -k loop.worker.GreenWorker app:app``.

Design
======

Two processes, two rules
------------------------
gunicorn's arbiter imports the worker class *before* it forks, in the master.  Importing this
module therefore does nothing but import gunicorn's base classes: no monkey patching, no hub, no
asyncio, not even loop's own server modules.  Everything green happens in the child, in
:meth:`GreenWorker.init_process`, which gunicorn calls right after the fork:

1. ``loop.monkey.patch_all()``, so that the application's blocking libraries (``socket``,
   ``time.sleep``, ``threading``, ``ssl``...) cooperate;
2. the listeners the arbiter created are re-wrapped as green sockets (same descriptors);
3. gunicorn's own ``init_process`` runs (signals, app loading, ``post_worker_init``) and calls
   :meth:`run` in the main green thread.  The hub is created on first use in this process; a hub
   the master may have had is rebuilt by loop's fork hook.

Serving
-------
:class:`GreenWorker` is gunicorn's :class:`~gunicorn.workers.base_async.AsyncWorker`: gunicorn
parses HTTP (its hardened parser, PROXY protocol, HTTP/2) and runs the app; loop supplies the
concurrency: one :class:`loop.server.StreamServer` per listener, whose pool of
``worker_connections`` green threads calls ``AsyncWorker.handle`` for each connection.  With
several workers ``max_accept`` is 1 so that one worker does not take the whole backlog.

:class:`GreenWSGIWorker` serves through :class:`loop.pywsgi.WSGIServer` instead: loop's parser
(httptools, strict) and its faster response path, with gunicorn's process management, access log
format, ``keepalive`` and ``max_requests`` mapped onto it.

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
TERM (graceful) wakes the heartbeat loop immediately; then the listeners close, requests in
flight get up to ``graceful_timeout`` to finish (the heartbeat continues meanwhile), and what is
left is killed.  QUIT and INT exit at once.  HUP is the arbiter's business (it starts new
workers and TERMs the old ones); USR1 reopens the log files.
"""
import os
import signal
import sys
import time
from datetime import timedelta

from gunicorn.workers.base_async import AsyncWorker

__all__ = ["GreenWorker", "GreenWSGIWorker"]

#: Signals whose gunicorn handlers we re-route through the hub.
_ROUTED_SIGNALS = ("SIGTERM", "SIGQUIT", "SIGINT", "SIGUSR1", "SIGABRT", "SIGWINCH")


class GreenWorker(AsyncWorker):
    """gunicorn's async worker on loop's hub: gunicorn's HTTP parser, loop's green threads."""

    #: Seconds between heartbeats (gunicorn hands the worker half its --timeout).
    heartbeat_interval = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
        from loop import _socket as green
        import socket
        sockets = []
        for listener in self.sockets:
            raw = listener.sock if hasattr(listener, "sock") else listener
            sockets.append(green.socket(raw.family, socket.SOCK_STREAM, fileno=raw.detach()))
        self.sockets = sockets

    def init_signals(self):
        super().init_signals()
        import loop
        from loop.event import Event
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

    def timeout_ctx(self):
        from loop.timeout import Timeout
        return Timeout(self.cfg.keepalive, False)

    # -- serving -----------------------------------------------------------------------------

    def make_server(self, listener, pool, ssl_context):
        from functools import partial
        from loop.server import StreamServer
        return StreamServer(listener, handle=partial(self.handle, listener), spawn=pool,
                            ssl_context=ssl_context)

    def run(self):
        from loop.pool import Pool
        ssl_context = None
        if self.cfg.is_ssl:
            from gunicorn.sock import ssl_context as make_ssl_context
            ssl_context = make_ssl_context(self.cfg)
        for listener in self.sockets:
            server = self.make_server(listener, Pool(self.worker_connections), ssl_context)
            if self.cfg.workers > 1:
                server.max_accept = 1
            server.start()
            self.servers.append(server)

        wake = self._wake
        while self.alive:
            self.notify()
            wake.wait(self.heartbeat_interval)
            wake.clear()
        self._shut_down()

    def _shut_down(self):
        """Graceful: stop accepting, let requests finish within graceful_timeout (beating all
        the while), then kill what is left."""
        import loop
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        pools = [server.pool for server in self.servers if server.pool is not None]
        while any(len(pool) for pool in pools):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                break
            self.notify()
            for pool in pools:
                # Returns as soon as the pool empties: no polling while requests finish.
                if not pool.join(timeout=min(self.heartbeat_interval, remaining)):
                    break
        for server in self.servers:
            server.stop(timeout=0)
        loop.sleep(0)

    def handle(self, listener, client, addr):
        client.setblocking(True)
        super().handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr):
        from loop.exceptions import GreenletExit
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except (GreenletExit, SystemExit):
            # server.stop() killed us at the end of the graceful period.
            raise StopIteration() from None


# -- serving through loop.pywsgi --------------------------------------------------------------

class _AccessResponse:
    """What gunicorn's access logger reads from a response."""
    __slots__ = ("status", "headers", "sent")

    def __init__(self, status, headers, sent):
        self.status = status
        self.headers = headers
        self.sent = sent


class GreenWSGIWorker(GreenWorker):
    """gunicorn process management around :class:`loop.pywsgi.WSGIServer` (loop's parser and
    response writer): the faster of the two workers."""

    def make_server(self, listener, pool, ssl_context):
        from loop import pywsgi
        worker = self

        class Handler(pywsgi.WSGIHandler):
            def _handle_request(self, request):
                self._request_started = time.monotonic()
                try:
                    super()._handle_request(request)
                finally:
                    worker._count_request(self)

        class Server(pywsgi.WSGIServer):
            def log_access(self, handler):
                worker._log_access(handler)

        environ = {"SERVER_SOFTWARE": "loop.pywsgi (gunicorn)",
                   "wsgi.multiprocess": self.cfg.workers > 1}
        cfg = self.cfg
        limits = {}
        if cfg.limit_request_line:
            limits["max_request_line"] = cfg.limit_request_line
        if cfg.limit_request_fields:
            limits["max_headers"] = cfg.limit_request_fields
        server = Server(listener, self.wsgi, spawn=pool, handler_class=Handler,
                        environ=environ, ssl_context=ssl_context, log=False,
                        error_log=self.log.error_log,
                        # gunicorn's keepalive=0 means "no keep-alive": close after a response
                        keepalive_timeout=cfg.keepalive if cfg.keepalive > 0 else 1e-6,
                        **limits)
        self._access_enabled = bool(self.log.access_log_enabled)
        return server

    def _count_request(self, handler):
        self.nr += 1
        if self.alive and self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            handler.closing = True
            self.alive = False
            self._wake.set()
        if not self.alive:
            handler.closing = True

    def _log_access(self, handler):
        if not self._access_enabled or handler.environ is None:
            return
        try:
            elapsed = time.monotonic() - getattr(handler, "_request_started", time.monotonic())
            response = _AccessResponse(handler.status or "-", handler.response_headers or [],
                                       handler._body_sent)
            request_headers = [(name.decode("latin-1").upper(), value.decode("latin-1"))
                               for name, value in handler.request.headers]
            self.log.access(response, request_headers, handler.environ,
                            timedelta(seconds=elapsed))
        except Exception:
            self.log.exception("access log failed")
