"""Rooms, their members on this server, nicknames, and the server's counters.

All of it is plain data touched only from green threads of one hub, so there are no locks:
green threads switch only where they block, and nothing here blocks.  Delivering a batch of
events to a room renders it once per wire format (TCP lines, JSON) and puts the same rendered
items into each member's outbox, which never blocks either (see :mod:`chat.outbox`).
"""
import re

__all__ = ["Rooms", "Stats", "valid_name", "DEFAULT_ROOM"]

DEFAULT_ROOM = "lobby"
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,24}\Z")


def valid_name(name):
    """Nicknames and room names: 1-24 letters, digits, ``_`` or ``-``."""
    return bool(_NAME.match(name))


class Stats:
    """Server-wide counters, shown by ``/stats`` and logged."""

    def __init__(self):
        self.connections = 0         # open now
        self.connections_total = 0
        self.lines_received = 0
        self.messages_published = 0
        self.events_queued = 0       # put into outboxes
        self.dropped = 0             # dropped from full outboxes (slow clients)
        self.refused = 0             # lines refused: too long, bad UTF-8, too fast
        self.kicked_slow = 0         # disconnected: stuck reading
        self.kicked_flood = 0        # disconnected: too many refused lines
        self.connections_refused = 0  # per-address limit reached, or no WebSocket slot left

    def as_dict(self):
        return dict(vars(self))

    def summary(self):
        return (f"connections {self.connections} open / {self.connections_total} total; "
                f"lines received {self.lines_received}; messages {self.messages_published}; "
                f"events queued {self.events_queued}; dropped for slow clients {self.dropped}; "
                f"lines refused {self.refused}; disconnected: {self.kicked_slow} slow, "
                f"{self.kicked_flood} flooding; connections refused {self.connections_refused}")


class Rooms:
    """Which local session is in which room, and who owns which nickname here."""

    def __init__(self, stats):
        self.stats = stats
        self._members = {}          # room name -> set of sessions
        self._nicks = {}            # nickname (casefolded) -> session
        self.sessions = set()

    # -- nicknames -------------------------------------------------------------------------------

    def claim_nick(self, session, nick):
        """Give ``nick`` to ``session`` if nobody else here has it."""
        key = nick.casefold()
        owner = self._nicks.get(key)
        if owner is not None and owner is not session:
            return False
        if session.nick is not None:
            self._nicks.pop(session.nick.casefold(), None)
        self._nicks[key] = session
        return True

    def release_nick(self, session):
        if session.nick is not None and self._nicks.get(session.nick.casefold()) is session:
            del self._nicks[session.nick.casefold()]

    # -- membership ------------------------------------------------------------------------------

    def add(self, session, room):
        self._members.setdefault(room, set()).add(session)

    def remove(self, session, room):
        members = self._members.get(room)
        if members is not None:
            members.discard(session)
            if not members:
                del self._members[room]

    def nicks_in(self, room):
        return sorted(s.nick for s in self._members.get(room, ()))

    def room_counts(self):
        return {room: len(members) for room, members in self._members.items()}

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self, room, batch):
        """Queue the events of ``batch`` (a list, oldest first) for every local member of
        ``room``; never blocks."""
        members = self._members.get(room)
        if not members:
            return
        # A thousand members share two or so formats: render each event once per format, then
        # each member costs one outbox operation for the whole batch.
        rendered = {}
        for session in members:
            render = session.render
            items = rendered.get(render)
            if items is None:
                items = rendered[render] = [render(event) for event in batch]
            session.outbox.put_many(items)
        self.stats.events_queued += len(members) * len(batch)

    def broadcast(self, event):
        """Queue ``event`` for every connected session (server notices)."""
        for session in self.sessions:
            session.outbox.put(session.render(event))
