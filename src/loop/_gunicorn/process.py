"""The worker classes gunicorn's arbiter imports: process life, signals, heartbeat, stop.

Imported in the arbiter, before it forks: this module imports gunicorn's base classes and the
standard library, nothing of loop's hub.  What a worker does after the fork lives in
:mod:`loop._gunicorn.serving`, imported by :meth:`_GreenProcess.patch` once the process is
patched (see the package's documentation).
"""
import os
import signal
import sys
import time
import warnings

from gunicorn.workers.base import Worker
from gunicorn.workers.base_async import AsyncWorker

__all__ = ["GreenWorker", "GreenGunicornWorker", "GreenWSGIWorker"]


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
        #: loop._gunicorn.serving, once the process is patched (see patch).
        self._serving = None

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.threads > 1:
            log.warning("%s ignores --threads=%d: concurrency comes from green threads "
                        "(--worker-connections)", cls.__name__, cfg.threads)

    # -- in the child, after fork ------------------------------------------------------------

    def init_process(self):
        # Until init_signals installs this worker's handlers, the ones in place are the
        # arbiter's, inherited through the fork: they queue a signal in the child's copy of the
        # arbiter, which nobody reads.  Patching and importing the server take long enough (a
        # few hundred ms) for the arbiter's TERM or QUIT to land in that window and be lost,
        # leaving the arbiter to wait out graceful_timeout and kill the worker.  So the
        # signals are held back until init_signals can take them.
        signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        self.patch()
        super().init_process()      # gunicorn's: signals, app loading, then self.run()

    def patch(self):
        self._serving = _patch_then_load_serving(self.log)
        self.sockets = self._serving.green_listeners(self.sockets)

    def init_signals(self):
        super().init_signals()
        self._wake = self._serving.Event()
        self._serving.route_signals({
            "SIGTERM": self.handle_exit, "SIGQUIT": self.handle_quit,
            "SIGINT": self.handle_quit, "SIGUSR1": self.handle_usr1,
            "SIGABRT": self.handle_abort, "SIGWINCH": self.handle_winch,
        })
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)   # held since init_process

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

    def recycle(self):
        """``max_requests`` reached (``alive`` is already False): stop accepting at once and
        wake the heartbeat loop, which winds the servers down.  A connection accepted after
        this decision would be closed by the wind-down before its first request is read, a
        reset on a fresh connection that no client retries; left in the listen backlog, it
        goes to a sibling worker or to this one's replacement."""
        for server in self.servers:
            server.stop_accepting()
        self._wake.set()

    def notify(self):
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    # -- serving -----------------------------------------------------------------------------

    def make_server(self, listener, pool, ssl_context):
        raise NotImplementedError

    def run(self):
        serving = self._serving
        ssl_context = serving.make_ssl_context(self.cfg) if self.cfg.is_ssl else None
        for listener in self.sockets:
            server = self.make_server(listener, serving.Pool(self.worker_connections),
                                      ssl_context)
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
        serving = self._serving
        graceful = self.cfg.graceful_timeout
        timeout = max(0.0, graceful - min(1.0, graceful / 10.0))
        deadline = time.monotonic() + timeout
        stopping = [serving.spawn(server.stop, timeout) for server in self.servers]
        while not all(g.dead for g in stopping):
            self.notify()
            serving.joinall(stopping, timeout=self.heartbeat_interval)
        if time.monotonic() >= deadline:
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
        serving.sleep(0)


def _patch_then_load_serving(log):
    """Patch this process (the child, after the fork), then import and return
    :mod:`loop._gunicorn.serving`."""
    # Both imports are deferred to this point: the arbiter imports this module before it
    # forks and must not load the hub, asyncio or loop's servers; and the child is patched
    # before loop's servers (and then the application) are imported.
    from loop import monkey
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", monkey.MonkeyPatchWarning)
        monkey.patch_all()
    for warning in caught:
        # Typically tempfile's lock, bound when the arbiter imported it; harmless here,
        # so only worth a debug line rather than a warning in every worker's boot.
        log.debug("%s", warning.message)
    from loop._gunicorn import serving
    return serving


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
        self._options = self._serving.server_options(self)
        super().run()

    def make_server(self, listener, pool, ssl_context):
        return self._serving.GunicornWSGIServer(self, listener, pool, ssl_context,
                                                self._options)


#: The earlier name of :class:`GreenWorker`, kept so existing command lines go on working.
GreenWSGIWorker = GreenWorker


# -- serving through gunicorn's parser ----------------------------------------------------------

class GreenGunicornWorker(_GreenProcess, AsyncWorker):
    """gunicorn's async worker on loop's hub: gunicorn's HTTP parser and request handling,
    loop's green threads (the counterpart of ``-k gevent``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read per request by timeout_ctx; cfg attribute access goes through __getattr__.
        self._keepalive = self.cfg.keepalive

    def timeout_ctx(self):
        return self._serving.Timeout(self._keepalive, False)

    def make_server(self, listener, pool, ssl_context):
        return self._serving.gunicorn_stream_server(self, listener, pool, ssl_context)

    def handle(self, listener, client, addr):
        client.setblocking(True)
        super().handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except (self._serving.GreenletExit, SystemExit):
            # server.stop() killed us at the end of the graceful period.
            raise StopIteration() from None
        finally:
            if not self.alive:
                # max_requests reached (gunicorn only clears alive): stop accepting now
                # rather than at the next heartbeat.
                self.recycle()
