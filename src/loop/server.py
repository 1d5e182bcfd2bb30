"""Green stream servers: accept connections on the hub, serve each one in its own green thread.

Design
======

``StreamServer(listener, handle)`` calls ``handle(socket, address)`` in a new green thread for
every accepted connection, with a green socket (:mod:`loop._green.socket`) whose blocking calls park
only that green thread.  Everything that is not accepting -- reading, writing, timeouts, TLS --
is the handler's business and happens in straight-line blocking code.

Accepting in the hub
--------------------
The listening descriptor gets one persistent reader callback in the hub
(:meth:`loop._core.hub.Hub.start_fd_callback`), registered once at :meth:`StreamServer.start` and kept
until :meth:`StreamServer.close`; going through the hub, it coexists with green threads that
``select()`` on the listener or wait on it.  When the loop
reports it readable, the callback (running in the hub itself, no green thread involved) calls
``accept()`` until ``EAGAIN`` or ``max_accept`` connections, wraps each descriptor in a green
socket and spawns its handler.  The accept path therefore costs the syscall, one socket object
and one green thread: no switch into an acceptor green thread, no per-accept registration of a
readiness wait.  ``max_accept`` bounds the burst so one busy listener cannot starve the handlers
that are already running.

Accepting fairly
----------------
The loop runs the callback once per turn, and a turn of a busy server runs every connection
that became readable, so a turn can take tens of milliseconds.  A new connection must not wait
more than a turn or two behind the kept-alive ones: each turn accepts every connection waiting
in the backlog, up to the free slots of the pool.

A listener shared by several processes (gunicorn's workers: ``shared_listener``) needs more
care.  The kernel wakes every process waiting on it, and the first to call ``accept()`` takes
what is there: a process that takes the whole backlog at once ends up with nearly all of a
burst of connections (100 of 100 in a test with two workers) while its sibling idles, and
kept-alive connections stay where they landed.  Taking one connection per turn keeps the
processes even but starves new connections behind busy turns (a burst of 100 waited 3-15 s).
So a shared listener accepts in a batch that follows the backlog: it starts at one, doubles
while a turn finds more connections waiting than its batch took, and drops to what was waiting
once a turn empties the backlog.  Idle processes thus take turns at a burst (31-40 of 100 for
the less loaded of two workers), and a busy one catches up with any backlog in a few turns.

Because the callback runs in the hub it must never block.  Spawning does not block, except into
a full :class:`loop.pool.Pool`, so the callback checks ``pool.full()`` first; when the pool is
full it *pauses*: it removes the reader (new connections wait in the kernel's backlog, which is
the back-pressure we want) and starts one green thread that waits for a free slot and then
resumes accepting.  Running out of descriptors (``EMFILE``) pauses the same way for a moment
instead of spinning on a listener that stays readable.

A persistent reader is invisible to the hub's deadlock detection (it is not a wait of a green
thread), so the server counts itself as a wakeup source while it accepts; a green thread in
:meth:`serve_forever` is then never told that "nothing can wake it".

Stopping
--------
:meth:`close` stops accepting and closes the listener; connections in flight go on.
:meth:`stop` closes, then waits up to ``timeout`` for the handlers to finish (a
:meth:`loop.pool.Group.join`, so the waiting is cooperative: no polling), then logs how many
connections are left (a warning through :meth:`log_error`) and kills their handlers: whatever
runs there is cut, a response being written included.  The grace period is the one bound on a
graceful stop, so that is the only place where one is cut.  Subclasses hook :meth:`_begin_stop`
to tell their handlers to wind down (the WSGI server serves what it has read with
``Connection: close`` and closes connections waiting for a next request) and
:meth:`_before_kill`.  :meth:`stop` may be called from another OS thread: it then runs in the
server's hub and the caller waits for it.

Errors
------
Two kinds of trouble are reported in two ways.  An exception raised by code the server was given
-- the ``spawn`` function, run in the accept callback -- is an error with a traceback, like one
that ends a green thread: it goes to the hub's ``handle_error((address, server), type, value,
tb)``, gevent's convention, so a program (or a test) that customises the hub's error handling
sees it; the connection is closed and accepting goes on.  Conditions the server meets itself
(``accept()`` failing, handlers cut at :meth:`stop`) are messages for the server's log:
:meth:`log_error`, which subclasses send to their logs.

Addresses
---------
``listener`` is an existing socket (used as it is, already listening or only bound), an
``(host, port)`` tuple (IPv4, or IPv6 when the host contains ``:``), a ``"host:port"`` /
``"[v6]:port"`` / ``":port"`` string, or a unix socket path (``"/run/app.sock"`` or
``"unix:/run/app.sock"``).
"""
import _socket
import errno
import logging
import os
import socket as _stdlib_socket
import ssl
import stat
import sys
import threading

# Thread identity must come from the real _thread module bound before any monkey patching:
# a patched threading.get_ident() names green threads, and close() would bounce forever.
from loop._core.event import Event
from loop._core.greenlet import Greenlet
from loop._core.hub import get_hub
from loop._core.originals import get_ident as _real_get_ident
from loop._green.serversocket import ServerSocket
from loop.pool import Group, Pool
from loop._green.ssl import SSLSocket

__all__ = ["StreamServer", "parse_address"]

_c_accept = _socket.socket._accept

# accept() errors that mean "this one connection failed": try the next.
_ACCEPT_TRANSIENT = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EPERM,
                               errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET,
                               errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH))
# accept() errors that mean "out of a resource": pause accepting for a moment.
_ACCEPT_EXHAUSTED = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_EXHAUSTED_PAUSE = 0.1


def parse_address(address):
    """``(family, sockaddr)`` for a listener given as a tuple, ``"host:port"``, ``":port"``,
    ``"[v6]:port"``, a port number, or a unix socket path."""
    if isinstance(address, tuple):
        host = address[0] or ""
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        return family, (host or ("::" if family == _socket.AF_INET6 else "0.0.0.0"),) + \
            tuple(int(part) for part in address[1:2]) + tuple(address[2:])
    if isinstance(address, int):
        return _socket.AF_INET, ("0.0.0.0", address)
    if isinstance(address, (bytes, os.PathLike)):
        address = os.fsdecode(address)
    if not isinstance(address, str):
        raise TypeError("expected a socket, (host, port), 'host:port' or a path, got %r"
                        % (address,))
    if address.startswith("unix:"):
        return _socket.AF_UNIX, address[5:]
    if "/" in address:
        return _socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "", address
    if host.startswith("[") and host.endswith("]"):
        return _socket.AF_INET6, (host[1:-1], int(port))
    try:
        port = int(port)
    except ValueError:
        raise ValueError("cannot parse listener address %r" % (address,)) from None
    return parse_address((host, port))


class StreamServer:
    """Accept connections on ``listener`` and call ``handle(socket, address)`` for each one in
    its own green thread.

    ``spawn``: ``"default"`` (a new green thread per connection, no limit), an ``int`` (at most
    that many connections at once: a :class:`loop.pool.Pool` of that size), a ``Pool`` or
    ``Group`` to use, or any callable ``spawn(func, *args)`` (the server then cannot wait for
    or kill handlers on :meth:`stop`).  ``None`` runs each handler in a new green thread too:
    gevent calls it inside the accept callback, where a handler that blocks fails, and one
    that does not block behaves the same either way.  ``ssl_context``: an :class:`ssl.SSLContext`; each
    connection is wrapped (server side) before ``handle`` sees it, the handshake happening on
    the first read or write.  Instead of a context, gevent's ``ssl.wrap_socket`` keywords
    (``certfile``, ``keyfile``, ``ca_certs``, ``cert_reqs``, ``ssl_version``, ``ciphers``) build
    one.  The socket is closed when ``handle`` returns.
    """

    #: Listen backlog for a listener we create.
    backlog = 1024
    #: The most connections accepted per readiness report of the listener.
    max_accept = 100
    #: The listener is shared with other processes (several gunicorn workers): accept in
    #: batches that follow the backlog (see "Accepting fairly") instead of ``max_accept`` at once.
    shared_listener = False
    #: Seconds :meth:`stop` waits for handlers by default before killing them.
    stop_timeout = 1.0
    reuse_addr = True

    def __init__(self, listener, handle=None, spawn="default", backlog=None, ssl_context=None,
                 **ssl_args):
        if ssl_args:
            if ssl_context is not None:
                raise TypeError("pass ssl_context or ssl keywords, not both")
            ssl_context = _ssl_context_from(ssl_args)
        if backlog is not None:
            self.backlog = backlog
        if handle is not None:
            self.handle = handle
        self.ssl_context = ssl_context
        self.socket = None
        self._address = None
        self._bound_address = None
        self.family = None
        if hasattr(listener, "accept") and hasattr(listener, "fileno"):
            if backlog is not None:
                raise _BacklogWithSocket("backlog must be None when listener is a socket")
            self._given_socket = listener
            self.family = listener.family
        else:
            self._given_socket = None
            self.family, self._address = parse_address(listener)
        self.pool = None
        self._spawn = None
        self.set_spawn(spawn)
        self._accept_batch = 1
        self._hub = None
        self._fd = -1
        self._reading = False
        self._accepting = True      # not stopped by stop_accepting()
        self._paused = False
        self._stop_event = None
        self._stopping = False
        self._closed = False
        self._started = False
        self.delay = _EXHAUSTED_PAUSE

    def set_spawn(self, spawn):
        if spawn == "default":
            self.pool = Group()
            self._spawn = self.pool.spawn
        elif isinstance(spawn, int) and not isinstance(spawn, bool):
            self.pool = Pool(spawn)
            self._spawn = self.pool.spawn
        elif isinstance(spawn, Group):
            self.pool = spawn
            self._spawn = spawn.spawn
        elif spawn is None or callable(spawn):
            self.pool = None
            self._spawn = spawn or Greenlet.spawn
        else:
            raise TypeError("spawn must be 'default', an int, a Pool or a callable: %r"
                            % (spawn,))

    def set_handle(self, handle):
        """Call ``handle(socket, address)`` for the connections accepted from now on."""
        self.handle = handle

    def __repr__(self):
        handle = self.__dict__.get("handle")
        if handle is None:
            described = ""
        elif getattr(handle, "__self__", None) is self:
            # a bound method of the server itself: its repr would recurse into ours
            described = " handle=<bound method %s of self>" % handle.__name__
        else:
            described = " handle=%r" % (handle,)
        return "<%s at %#x %s%s%s>" % (type(self).__name__, id(self), self._describe_address(),
                                       described, " started" if self._started else "")

    def _describe_address(self):
        address = self.address
        if isinstance(address, tuple) and self.family == _socket.AF_INET6:
            return "[%s]:%s" % address[:2]
        if isinstance(address, tuple):
            return "%s:%s" % address[:2]
        return repr(address)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self):
        """The bound address once the socket exists (kept after :meth:`close`, so the port a
        server had can still be named), else the one we were given."""
        if self._bound_address is not None:
            return self._bound_address
        if self._given_socket is not None:
            try:
                return self._given_socket.getsockname()
            except OSError:     # closed by its owner before the server used it
                return None
        return self._address

    @property
    def server_host(self):
        address = self.address
        return address[0] if isinstance(address, tuple) else None

    @property
    def server_port(self):
        address = self.address
        return address[1] if isinstance(address, tuple) else None

    @property
    def started(self):
        return self._started and not self._closed

    @property
    def closed(self):
        return self._closed

    # -- the listener ------------------------------------------------------------------------

    def init_socket(self):
        """Create, bind and listen (or adopt the given socket).  Idempotent; needs no hub, so a
        server can be bound before forking or in another thread."""
        if self.socket is not None:
            return self.socket
        if self._given_socket is not None:
            sock = self._given_socket
            try:
                listening = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN)
            except OSError:
                listening = True
            if not listening:
                sock.listen(self.backlog)
        else:
            sock = self._make_listener()
        # The accept path uses the C accept() on a non-blocking descriptor.
        sock.setblocking(False)
        self._bound_address = sock.getsockname()
        self.socket = sock
        return sock

    def _make_listener(self):
        family, address = self.family, self._address
        sock = _stdlib_socket.socket(family, _socket.SOCK_STREAM)
        try:
            if family == _socket.AF_UNIX:
                _remove_stale_unix_socket(address)
            elif self.reuse_addr and sys.platform != "win32":
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- running -----------------------------------------------------------------------------

    def start(self):
        """Start accepting in the background (in this OS thread's hub) and return."""
        if self._closed:
            raise RuntimeError("%r is closed" % (self,))
        if self._started:
            return
        self.init_socket()
        self._hub = get_hub()
        self._thread = threading.current_thread()
        self._fd = self.socket.fileno()
        self._stop_event = Event()
        self._stopped_event = Event()
        self._started = True
        self._accept_batch = 1
        self._hub.add_wakeup_source()
        self._start_reading()

    def serve_forever(self, stop_timeout=None):
        """Start (if needed) and serve until :meth:`stop` or :meth:`close`; then stop."""
        if not self._started:
            self.start()
        try:
            self._stop_event.wait()
        finally:
            if not self._stopping:
                Greenlet.spawn(self.stop, stop_timeout).join()
            else:
                # stop() runs elsewhere (another green thread, or called from another OS
                # thread): returning now could end this thread, and its hub, under the
                # handlers that stop() is still draining.
                self._stopped_event.wait()

    def stop_accepting(self):
        """Leave new connections in the listen backlog until :meth:`start_accepting`; the
        listener stays open and connections in flight go on."""
        self._accepting = False
        self._stop_reading()

    def start_accepting(self):
        """Accept again after :meth:`stop_accepting` (the server must be started)."""
        self._accepting = True
        if self._started and not self._paused:
            self._start_reading()

    def _start_reading(self):
        if not self._reading and not self._closed and self._accepting:
            self._reading = True
            self._hub.start_fd_callback(self._fd, True, self._on_acceptable)

    def _stop_reading(self):
        if self._reading:
            self._reading = False
            self._hub.stop_fd_callback(self._fd, True)

    def _on_acceptable(self):
        # Runs in the hub: must not block.  Accept until EAGAIN or a batch of connections.
        listener = self.socket
        pool = self.pool
        spawn = self._spawn
        handle = self._handle_connection
        family = self.family
        sock_class = ServerSocket
        shared = self.shared_listener
        batch = self._accept_batch if shared else self.max_accept
        for attempt in range(batch):
            if pool is not None and pool.full():
                self._pause_until_free()
                return
            try:
                fd, address = _c_accept(listener)
            except BlockingIOError:
                if shared:
                    # The backlog is empty: as many as were waiting now will do next time.
                    self._accept_batch = attempt or 1
                return
            except OSError as exc:
                if self._closed:
                    return
                if exc.errno in _ACCEPT_TRANSIENT:
                    continue
                self._pause_for(self.delay)
                if exc.errno not in _ACCEPT_EXHAUSTED:
                    self.log_error("accept() on %r failed: %s", self, exc)
                return
            try:
                sock = sock_class(family, _socket.SOCK_STREAM, 0, fd)
            except OSError:
                os.close(fd)
                continue
            try:
                spawn(handle, sock, address)
            except Exception as exc:
                sock.close()
                self._hub.handle_error((address, self), type(exc), exc, exc.__traceback__)
        if shared:
            # More were waiting than this batch took: this process falls behind, take more.
            self._accept_batch = min(batch * 2, self.max_accept)

    def _pause_until_free(self):
        self._stop_reading()
        if not self._paused:
            self._paused = True
            Greenlet.spawn(self._resume_when_free)

    def _resume_when_free(self):
        try:
            self.pool.wait_available()
        finally:
            self._paused = False
            if not self._closed:
                self._start_reading()

    def _pause_for(self, seconds):
        self._stop_reading()
        if not self._paused:
            self._paused = True
            self._hub.call_later(seconds, self._resume_after_pause)

    def _resume_after_pause(self):
        self._paused = False
        if not self._closed:
            self._start_reading()

    def _handle_connection(self, sock, address):
        try:
            if self.ssl_context is not None:
                sock = self.wrap_socket(sock)
            self.handle(sock, address)
        finally:
            sock.close()

    def wrap_socket(self, sock):
        """Wrap an accepted green socket for TLS (server side, lazy handshake)."""
        return SSLSocket._create(sock=sock, server_side=True, do_handshake_on_connect=False,
                                 context=self.ssl_context)

    def handle(self, sock, address):
        raise NotImplementedError("pass handle= or override StreamServer.handle")

    # -- stopping ----------------------------------------------------------------------------

    def close(self):
        """Stop accepting and close the listener; connections in flight go on."""
        if self._closed:
            return
        if self._hub is not None and _real_get_ident() != self._hub.thread_ident:
            self._call_in_hub_thread(self.close)
            return
        self._closed = True
        if self._started:
            self._stop_reading()
            self._hub.remove_wakeup_source()
        sock = self.socket
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
            if self.family == _socket.AF_UNIX and self._given_socket is None:
                try:
                    os.unlink(self._address)
                except OSError:
                    pass
        if self._stop_event is not None:
            self._stop_event.set()    # serve_forever() wakes and stops (drains) the handlers

    def stop(self, timeout=None):
        """Close, let the handlers finish for up to ``timeout`` seconds (default
        :attr:`stop_timeout`), then kill the rest.  Callable from another OS thread."""
        if self._hub is not None and _real_get_ident() != self._hub.thread_ident:
            self._call_in_hub_thread(self.stop, timeout)
            return
        if timeout is None:
            timeout = self.stop_timeout
        self._stopping = True
        self.close()
        try:
            self._begin_stop()
            pool = self.pool
            if pool is not None and len(pool):
                if not pool.join(timeout):
                    self.log_error("%d connection(s) still open %s s after stop() began: "
                                   "closing them, cutting what runs there", len(pool), timeout,
                                   level=logging.WARNING)
                    self._before_kill()
                    pool.kill(block=True, timeout=1.0)
        finally:
            if self._stop_event is not None:
                self._stop_event.set()
                self._stopped_event.set()

    def _begin_stop(self):
        """Hook: tell handlers to wind down (called after the listener closed)."""

    def _before_kill(self):
        """Hook: the grace period is over; handlers still running are about to be killed."""

    def _call_in_hub_thread(self, method, *args):
        # The hub of another OS thread owns this server: run ``method`` in a green thread
        # there and wait (really block: we are not in that hub) until it returns.
        done = threading.Event()
        errors = []

        def run():
            try:
                method(*args)
            except BaseException as exc:  # handed back to the caller
                errors.append(exc)
            finally:
                done.set()

        self._hub.run_callback_threadsafe(Greenlet.spawn, run)
        # If the server's thread has ended (its hub no longer runs), nobody will run it.
        while not done.wait(0.1):
            if not self._thread.is_alive():
                return
        if errors:
            raise errors[0]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # -- errors ------------------------------------------------------------------------------

    def log_error(self, message, *args, level=logging.ERROR):
        """Report a problem of the server (not of one connection); ``level`` is a
        :mod:`logging` level.  Written to stderr; subclasses send it to their logs."""
        text = message % args if args else message
        try:
            sys.stderr.write("%s: %s\n" % (type(self).__name__, text))
        except Exception:
            pass


class _BacklogWithSocket(TypeError, ValueError):
    """``backlog`` given with a ready socket (gevent raises TypeError, earlier loop ValueError)."""


_SSL_KEYWORDS = frozenset(("certfile", "keyfile", "ca_certs", "cert_reqs", "ssl_version",
                           "ciphers", "server_side", "do_handshake_on_connect",
                           "suppress_ragged_eofs"))


def _ssl_context_from(ssl_args):
    """A server-side SSLContext from gevent's ``ssl.wrap_socket`` keywords."""
    unknown = set(ssl_args) - _SSL_KEYWORDS
    if unknown:
        raise TypeError("unexpected keyword arguments: %s" % ", ".join(sorted(unknown)))
    if not ssl_args.get("server_side", True):
        raise ValueError("a server's TLS is server side")
    certfile = ssl_args.get("certfile")
    if certfile is None:
        raise ValueError("serving TLS needs a certfile")
    version = ssl_args.get("ssl_version")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if version is None else version)
    context.load_cert_chain(certfile, ssl_args.get("keyfile"))
    if ssl_args.get("ca_certs"):
        context.load_verify_locations(ssl_args["ca_certs"])
    if ssl_args.get("cert_reqs") is not None:
        context.verify_mode = ssl_args["cert_reqs"]
    if ssl_args.get("ciphers"):
        context.set_ciphers(ssl_args["ciphers"])
    # do_handshake_on_connect and suppress_ragged_eofs are accepted and left to loop.ssl: the
    # handshake happens on the first read or write, so accepting never waits for a client.
    return context


def _remove_stale_unix_socket(path):
    # A socket file left behind by a dead server would make bind() fail with EADDRINUSE.  Only
    # remove it if it is a socket and nobody answers on it.
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    probe = _stdlib_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()
