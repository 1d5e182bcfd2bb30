"""Implementation of :mod:`loop.backdoor` (see its docstring for the behaviour).

Why a stream router instead of swapping ``sys.stdout``: a console spends most of its life
waiting for the next line, and while it waits every other green thread runs.  Pointing
``sys.stdout`` at the client for the whole session (or even for one command that waits) would
send the rest of the process's output to the client.  The router looks at the current green
thread on every write instead: what the console's own green thread writes goes to its client,
everything else to the stream that was there before.  (Green threads that the typed code spawns
write to the process's stream; the typed code can join them and print their results.)
"""
import code
import sys

from loop._switch import getcurrent
from loop.server import StreamServer

__all__ = ["BackdoorServer"]

_DEFAULT_HOST = "127.0.0.1"


class _StreamRouter:
    """Stands in for ``sys.stdout``/``sys.stderr`` while consoles are connected."""

    def __init__(self, original):
        self.original = original
        self.sessions = {}  # console fiber -> client file

    def _target(self):
        target = self.sessions.get(getcurrent())
        return target if target is not None else self.original

    def write(self, data):
        return self._target().write(data)

    def flush(self):
        return self._target().flush()

    def __getattr__(self, name):
        return getattr(self.original, name)


class _Routing:
    """Installs the routers on first use, removes them with the last session."""

    def __init__(self):
        self.routers = None
        self.count = 0

    def add(self, fiber, client):
        if self.routers is None:
            self.routers = (_StreamRouter(sys.stdout), _StreamRouter(sys.stderr))
            sys.stdout, sys.stderr = self.routers
        for router in self.routers:
            router.sessions[fiber] = client
        self.count += 1

    def remove(self, fiber):
        for router in self.routers:
            router.sessions.pop(fiber, None)
        self.count -= 1
        if self.count == 0:
            out, err = self.routers
            # Put the originals back unless somebody replaced the routers meanwhile.
            if sys.stdout is out:
                sys.stdout = out.original
            if sys.stderr is err:
                sys.stderr = err.original
            self.routers = None


_routing = _Routing()


class _EndSession(Exception):
    pass


class _Console(code.InteractiveConsole):
    def __init__(self, client, namespace):
        code.InteractiveConsole.__init__(self, namespace)
        self.client = client

    def write(self, data):
        self.client.write(data)
        self.client.flush()

    def raw_input(self, prompt=""):
        self.write(prompt)
        line = self.client.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def runcode(self, compiled):
        try:
            exec(compiled, self.locals)
        except SystemExit:
            raise _EndSession() from None
        except BaseException:
            self.showtraceback()
        finally:
            try:
                sys.stdout.flush()
            except Exception:
                pass


class BackdoorServer(StreamServer):
    """A :class:`loop.server.StreamServer` that serves a Python console per connection.

    ``listener`` defaults to ``("127.0.0.1", 0)``; a port number or an empty host means the
    loopback address.  ``locals``: names the console starts with (each connection gets its own
    copy, plus ``__builtins__``).  ``banner``: printed on connect (default: the Python
    version)."""

    def __init__(self, listener=None, locals=None, banner=None, **server_args):
        if listener is None:
            listener = (_DEFAULT_HOST, 0)
        elif isinstance(listener, int) and not isinstance(listener, bool):
            listener = (_DEFAULT_HOST, listener)
        elif isinstance(listener, tuple) and listener and not listener[0]:
            listener = (_DEFAULT_HOST,) + tuple(listener[1:])
        StreamServer.__init__(self, listener, **server_args)
        self.locals = dict(locals or {})
        self.banner = banner

    def _namespace(self):
        namespace = dict(self.locals)
        namespace.setdefault("__name__", "__console__")
        namespace.setdefault("__builtins__", __builtins__)
        return namespace

    def handle(self, sock, address):
        client = sock.makefile("rw", encoding="utf-8", errors="replace", newline="\n")
        fiber = getcurrent()
        _routing.add(fiber, client)
        try:
            console = _Console(client, self._namespace())
            banner = self.banner if self.banner is not None else "Python %s on %s\n" % (
                sys.version, sys.platform)
            try:
                console.interact(banner, exitmsg="")
            except (_EndSession, OSError):
                pass
        finally:
            _routing.remove(fiber)
            try:
                client.close()
            except OSError:
                pass
