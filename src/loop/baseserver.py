"""gevent's ``gevent.baseserver`` names.

gevent splits its servers into ``BaseServer`` (listener, spawning, start/stop) and the stream
and datagram servers built on it.  loop has one server class, :class:`loop.server.StreamServer`,
which carries all of ``BaseServer``'s public interface (``start``, ``serve_forever``, ``stop``,
``close``, ``started``, ``closed``, ``address``, ``server_host``/``server_port``, ``set_spawn``,
``pool``, ``handle``, the ``spawn`` argument's forms); ``BaseServer`` is that class, so code that
subclasses ``BaseServer`` and overrides ``handle`` works.  Subclasses that implement gevent's
private ``do_read``/``do_handle``/``do_close`` hooks (a UDP server, for instance) do not: loop has
no datagram server.
"""
from loop.server import StreamServer as BaseServer
from loop.server import parse_address

__all__ = ["BaseServer", "parse_address"]
