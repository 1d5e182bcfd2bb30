"""Events: everything a client is sent, in a form both transports can render.

A room message fans out to every member, possibly a thousand of them.  So an event is immutable
and renders itself at most once per format (cached): delivery to a room renders it once for its
TCP members and once for its browsers, and every member's outbox gets those same objects.

The text form is the TCP protocol (readable in ``nc``)::

    [lobby] <alice> hello               message
    [lobby] * alice waves               action (/me)
    *** alice joined #lobby             join / leave / nick / info
    !!! line too long                   error

The JSON form is what the web page's JavaScript reads::

    {"type": "message", "room": "lobby", "nick": "alice", "text": "hello"}
"""
import json

__all__ = ["Event", "message", "action", "joined", "left", "renamed", "info", "error",
           "from_json"]


class Event:
    __slots__ = ("type", "room", "nick", "text", "_line", "_json")

    def __init__(self, type, text="", room=None, nick=None):
        self.type = type
        self.room = room
        self.nick = nick
        self.text = text
        self._line = None
        self._json = None

    def as_line(self):
        """The TCP protocol line, UTF-8, newline-terminated."""
        if self._line is None:
            self._line = (_TEXT_FORMS[self.type](self) + "\n").encode("utf-8")
        return self._line

    def as_json(self):
        """The JSON text sent to browsers (and through Redis)."""
        if self._json is None:
            payload = {"type": self.type, "text": self.text}
            if self.room is not None:
                payload["room"] = self.room
            if self.nick is not None:
                payload["nick"] = self.nick
            self._json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return self._json

    def __repr__(self):
        return f"Event({self.type!r}, {self.text!r}, room={self.room!r}, nick={self.nick!r})"


_TEXT_FORMS = {
    "message": lambda e: f"[{e.room}] <{e.nick}> {e.text}",
    "action": lambda e: f"[{e.room}] * {e.nick} {e.text}",
    "join": lambda e: f"*** {e.nick} joined #{e.room}",
    "leave": lambda e: f"*** {e.nick} left #{e.room}" + (f" ({e.text})" if e.text else ""),
    "nick": lambda e: f"*** {e.nick} is now known as {e.text}",
    "info": lambda e: "\n".join("*** " + line for line in e.text.split("\n")),
    "error": lambda e: f"!!! {e.text}",
}


def message(room, nick, text):
    return Event("message", text, room, nick)


def action(room, nick, text):
    return Event("action", text, room, nick)


def joined(room, nick):
    return Event("join", "", room, nick)


def left(room, nick, why=""):
    return Event("leave", why, room, nick)


def renamed(room, old, new):
    return Event("nick", new, room, old)


def info(text):
    return Event("info", text)


def error(text):
    return Event("error", text)


def from_json(data):
    """Rebuild an event published by another process; ``ValueError`` if it is not one."""
    payload = json.loads(data)
    kind = payload.get("type")
    if kind not in _TEXT_FORMS or not isinstance(payload.get("text"), str):
        raise ValueError(f"not a chat event: {data!r}")
    return Event(kind, payload["text"], payload.get("room"), payload.get("nick"))
