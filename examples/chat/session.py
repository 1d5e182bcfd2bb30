"""One connected user: nickname, room, commands.  Knows nothing about sockets.

A transport (:mod:`chat.tcp`, :mod:`chat.web`) turns what the client sends into cleaned lines
and calls :meth:`Session.handle_line`; everything the user should see goes into
``session.outbox`` as a :class:`chat.events.Event` rendered by ``session.render`` (a TCP line or
a browser's JSON).  Browsers and ``nc`` users speak the same line protocol, so both kinds of
client share this code.

Room messages are published in batches: :meth:`handle_line` only queues them, and the reader
calls :meth:`flush` before it waits for more input.  A client that sent many lines at once (a
paste, a bot) thus costs each member of the room one outbox operation per read instead of one
per line, while a single line is published as soon as it was read, as before.  Anything else
the session does (a command, a reply, leaving the room) flushes first, so the order the client
sent things in is the order everyone sees them in.
"""
import itertools
import logging

from chat import events
from chat.outbox import Outbox
from chat.rooms import DEFAULT_ROOM, valid_name

__all__ = ["Session", "HELP"]

log = logging.getLogger("chat")

HELP = """commands:
  /nick NAME     change your nickname (letters, digits, _ and -, at most 24)
  /join ROOM     leave your room and join ROOM (created when needed)
  /rooms         list rooms and how many people are in each
  /who           list the people in your room
  /me ACTION     tell the room what you are doing
  /stats         server counters, and how many messages were dropped for you
  /quit [WHY]    leave
  /help          this text
anything else is a message to your room"""

_ids = itertools.count(1)

# A bound on one batch, for clients that send thousands of tiny lines in one read.
MAX_BATCH = 1024


class Session:
    def __init__(self, chat, kind, address, render=events.Event.as_line):
        self.chat = chat                # chat.app.Chat: rooms, bus, stats
        self.kind = kind                # "tcp" or "web", for logs
        self.address = address
        self.render = render            # Event -> what the transport's writer sends
        self.id = next(_ids)
        self.nick = None
        self.room = None
        self.outbox = Outbox(chat.limits.outbox, chat.limits.max_drops,
                             on_drop=self._count_drop, on_stuck=self._stuck,
                             drop_notice=self._drop_notice)
        self._pending = []              # room events read but not yet published
        self.end_reason = None
        self.on_end = None              # set by the connection: called when the session ends

    def __repr__(self):
        return f"<Session {self.id} {self.nick} {self.kind} {self.address}>"

    # -- lifetime --------------------------------------------------------------------------------

    def start(self):
        chat = self.chat
        nick = f"guest{self.id}"
        chat.rooms.claim_nick(self, nick)
        self.nick = nick
        chat.rooms.sessions.add(self)
        chat.stats.connections += 1
        chat.stats.connections_total += 1
        self.send(events.info(f"welcome to loop chat, {nick}! type /help for commands"))
        self._enter(DEFAULT_ROOM)
        self.flush()

    def finish(self):
        """The connection is gone: leave the room, free the nickname, log the drops."""
        chat = self.chat
        self.flush()
        if self.room is not None:
            self._leave(self.end_reason or "disconnected")
        chat.rooms.release_nick(self)
        if self in chat.rooms.sessions:
            chat.rooms.sessions.discard(self)
            chat.stats.connections -= 1
        if self.outbox.dropped:
            log.warning("%s %s: %d messages were dropped for this slow client",
                        self.nick, self.address, self.outbox.dropped)

    def end(self, reason, farewell=None):
        """End the session: ``farewell`` (an event) is sent, then the connection is closed
        once the outbox has been flushed."""
        if self.end_reason is None:
            self.end_reason = reason
        self.flush()
        if farewell is not None:
            self.outbox.put(self.render(farewell))
        self.outbox.close()
        if self.on_end is not None:
            self.on_end()

    def _count_drop(self, count):
        self.chat.stats.dropped += count

    def _drop_notice(self, count):
        return self.render(events.error(
            f"{count} messages were dropped because your connection was too slow"))

    def _stuck(self):
        # Called from whoever was delivering: only note it and wake the connection, which
        # disconnects the client from its own green thread.
        self.chat.stats.kicked_slow += 1
        log.warning("%s %s: disconnected, stuck (%d messages dropped)",
                    self.nick, self.address, self.outbox.dropped)
        self.end_reason = "too slow"
        if self.on_end is not None:
            self.on_end()

    def send(self, event):
        """Queue ``event`` for this client only (after what it published so far)."""
        self.flush()
        self.outbox.put(self.render(event))

    def flush(self):
        """Publish the room events queued by :meth:`handle_line`, as one batch."""
        pending = self._pending
        if pending:
            # Swap first: with Redis, publishing waits, and nothing may join this batch then.
            self._pending = []
            self.chat.bus.publish(self.room, pending)

    # -- input -----------------------------------------------------------------------------------

    def handle_line(self, line):
        """One cleaned line from the client."""
        if not line:
            return
        self.chat.stats.lines_received += 1
        if line.startswith("/") and not line.startswith("//"):
            command, _, argument = line[1:].partition(" ")
            self.flush()
            handler = self._commands.get(command.lower())
            if handler is None:
                self.send(events.error(f"unknown command /{command}; try /help"))
                return
            handler(self, argument.strip())
        else:
            if line.startswith("//"):   # "//" sends a line that starts with "/"
                line = line[1:]
            self._publish(events.message(self.room, self.nick, line))

    def _publish(self, event):
        # To the current room, in the next batch.
        self.chat.stats.messages_published += 1
        pending = self._pending
        pending.append(event)
        if len(pending) >= MAX_BATCH:
            self.flush()

    # -- rooms -----------------------------------------------------------------------------------

    def _enter(self, room):
        self.room = room
        self.chat.rooms.add(self, room)
        self.chat.bus.entered(self, room)
        self._publish(events.joined(room, self.nick))

    def _leave(self, why=""):
        self.flush()
        room = self.room
        self.chat.rooms.remove(self, room)
        self.chat.bus.exited(self, room)
        self.room = None
        # After removing ourselves: the others hear it, we do not need to.
        self.chat.stats.messages_published += 1
        self.chat.bus.publish(room, [events.left(room, self.nick, why)])

    # -- commands --------------------------------------------------------------------------------

    def cmd_nick(self, name):
        if not valid_name(name):
            self.send(events.error("usage: /nick NAME (1-24 letters, digits, _ or -)"))
            return
        if name == self.nick:
            return
        if not self.chat.rooms.claim_nick(self, name):
            self.send(events.error(f"nickname {name} is taken"))
            return
        old, self.nick = self.nick, name
        self.chat.bus.entered(self, self.room)     # update presence under the new name
        self._publish(events.renamed(self.room, old, name))

    def cmd_join(self, room):
        room = room.removeprefix("#")
        if not valid_name(room):
            self.send(events.error("usage: /join ROOM (1-24 letters, digits, _ or -)"))
            return
        if room == self.room:
            self.send(events.info(f"you are already in #{room}"))
            return
        self._leave(f"joined #{room}")
        self._enter(room)

    def cmd_rooms(self, _argument):
        counts = self.chat.bus.room_counts()
        lines = [f"#{room} ({n})" for room, n in sorted(counts.items())]
        self.send(events.info("rooms: " + (", ".join(lines) if lines else "none")))

    def cmd_who(self, _argument):
        nicks = self.chat.bus.who(self.room)
        self.send(events.info(f"in #{self.room}: " + ", ".join(nicks)))

    def cmd_me(self, action):
        if not action:
            self.send(events.error("usage: /me ACTION"))
            return
        self._publish(events.action(self.room, self.nick, action))

    def cmd_stats(self, _argument):
        self.send(events.info(
            f"server: {self.chat.stats.summary()}\n"
            f"you: {self.outbox.dropped} messages dropped for you, "
            f"{len(self.outbox)} waiting in your outbox"))

    def cmd_quit(self, why):
        self.end_reason = why or "quit"
        self.end("quit", events.info("bye"))

    def cmd_help(self, _argument):
        self.send(events.info(HELP))

    _commands = {"nick": cmd_nick, "join": cmd_join, "rooms": cmd_rooms, "who": cmd_who,
                 "me": cmd_me, "stats": cmd_stats, "quit": cmd_quit, "help": cmd_help}
