"""The green threads of one client connection, and how a connection ends.

Design
------
Each connection has two green threads besides the one the server gave it:

* the **reader** reads lines from the client and runs them through the session (commands,
  messages);
* the **writer** takes events from the session's outbox and writes them to the client.

Splitting them is what keeps slow clients harmless: only the writer ever blocks on this
client's socket, and only the writer of a slow client waits.  The server's green thread (the
*supervisor*, :func:`serve`) starts both and waits for the first sign that the connection is
over, then ends it the right way:

=====================================  ===============================================
what happened                          how the connection ends
=====================================  ===============================================
the client hung up (reader ends)       writer killed; nothing left to say
``/quit``, flooding, server shutdown   the outbox is closed after a farewell; the writer
(``Session.end``)                      flushes it (at most ``flush_timeout`` seconds),
                                       then the transport closes cleanly
the client is stuck (outbox policy)    both killed; the socket is closed at once
an error in the reader or writer       logged; both killed; socket closed
=====================================  ===============================================

A *transport* adapts one kind of connection: ``receive_line(guard, before_wait)`` (a cleaned
line, ``None`` at end of stream, or :class:`chat.limits.Refused` /
:class:`chat.limits.Disconnect`; it calls ``before_wait()`` each time before it reads from the
network, which is when the session publishes the lines read so far), ``send_events(batch)``
(items rendered by ``session.render``, all in one write where the transport can) and
``close(clean, reason)``.
"""
import logging

import loop
from loop.event import Event

from chat import events
from chat.limits import Disconnect, Refused

__all__ = ["serve"]

log = logging.getLogger("chat")


def serve(session, transport, flush_timeout=2.0):
    """Run ``session`` over ``transport`` until the connection ends; returns when it has."""
    guard = session.chat.limits.guard()
    over = Event()
    session.on_end = over.set
    session.start()
    reader = loop.spawn(_read_loop, session, transport, guard)
    writer = loop.spawn(_write_loop, session, transport)
    reader.rawlink(lambda _g: over.set())
    writer.rawlink(lambda _g: over.set())
    clean = False
    try:
        over.wait()
        if session.outbox.closed and not session.outbox.stuck and not writer.ready():
            writer.join(flush_timeout)
        clean = writer.ready() and writer.successful() and session.outbox.closed \
            and not session.outbox.stuck
    finally:
        # Killing a green thread blocked in recv or send raises GreenletExit there; the socket
        # is closed below in any case, so nothing is left half-done.
        loop.killall([reader, writer], block=True, timeout=1)
        for g in (reader, writer):
            if g.exception is not None and not isinstance(g.exception, loop.GreenletExit):
                log.error("%r: %s failed: %r", session, g.name, g.exception)
        session.finish()
        transport.close(clean, session.end_reason or "")


def _read_loop(session, transport, guard):
    stats = session.chat.stats
    flush = session.flush
    while not session.outbox.closed:
        try:
            line = transport.receive_line(guard, flush)
        except Refused as refusal:
            stats.refused += 1
            session.send(events.error(str(refusal)))
            continue
        except Disconnect as verdict:
            stats.refused += 1
            stats.kicked_flood += 1
            log.warning("%r disconnected: %s", session, verdict)
            session.end("flooding", events.error(f"disconnected: {verdict}"))
            return
        if line is None:
            if session.end_reason is None:
                session.end_reason = "connection closed"
            return
        session.handle_line(line)


def _write_loop(session, transport):
    take = session.outbox.take
    while True:
        batch = take()
        if batch is None:
            return
        try:
            transport.send_events(batch)
        except OSError:
            if session.end_reason is None:
                session.end_reason = "connection lost"
            return
