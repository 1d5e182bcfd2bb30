"""The green socket the servers hand to their handlers.

It is the plain green socket (:mod:`loop._green.socket`): its waits keep their event-loop
registration between one ``recv`` and the next (the hub does that for every green socket), so a
connection's read cycle costs no registration syscalls.  The subclass only adds
:meth:`ServerSocket.try_send`, which the WSGI handler uses to write a response without first
switching the socket's timeout from the read timeout to the write timeout.
"""
from loop._green import socket as _green

__all__ = ["ServerSocket"]

_c_send = _green._c.send


class ServerSocket(_green.socket):
    """A green socket with :meth:`try_send`."""

    __slots__ = ()

    def try_send(self, data, flags=0):
        """Send what fits now without waiting; the number of bytes sent (0 if none)."""
        try:
            return _c_send(self, data, flags)
        except BlockingIOError:
            return 0
