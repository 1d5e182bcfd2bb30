"""Input limits and the flood limiter.

Every client gets the same budget, enforced before a line reaches the chat logic:

* a line is at most ``MAX_LINE_BYTES`` bytes (TCP) or characters (WebSocket); longer ones are
  refused with an error and the rest of the line is skipped;
* a line must be UTF-8; control characters other than tab are removed, so nobody can send
  terminal escape sequences to the ``nc`` users;
* ``RATE`` lines per second with bursts of ``BURST`` (a token bucket); lines above that are
  refused with an error.

Each refusal is a *strike*.  Strikes come out of a second, smaller bucket that refills slowly;
when it is empty the client is disconnected.  A client that makes an occasional mistake never
runs out; a client that floods or sends garbage does within a second or two.
"""
import re
import time

__all__ = ["MAX_LINE_BYTES", "TokenBucket", "InputGuard", "clean_text"]

MAX_LINE_BYTES = 2048
RATE = 20.0          # lines per second, sustained
BURST = 40           # lines accepted at once after a quiet period
STRIKES = 20         # refusals tolerated in a burst ...
STRIKE_REFILL = 1.0  # ... and regained per second

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x80-\x9f]")


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` spends one."""

    __slots__ = ("capacity", "rate", "tokens", "stamp", "clock")

    def __init__(self, rate, capacity, clock=time.monotonic):
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.clock = clock
        self.stamp = clock()

    def take(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def clean_text(text):
    """``text`` without control characters (tab kept) and surrounding whitespace."""
    return _CONTROL.sub("", text).strip()


class Refused(Exception):
    """A line was refused; ``str(exc)`` is the error the client is sent."""


class Disconnect(Exception):
    """The client used up its strikes; ``str(exc)`` says why."""


class InputGuard:
    """Applies the limits to one client's lines.  :meth:`check_bytes` / :meth:`check_text`
    return the cleaned text, raise :class:`Refused` (tell the client, go on) or
    :class:`Disconnect` (tell the client, hang up)."""

    def __init__(self, rate=RATE, burst=BURST, strikes=STRIKES, max_line=MAX_LINE_BYTES):
        self.lines = TokenBucket(rate, burst)
        self.strikes = TokenBucket(STRIKE_REFILL, strikes)
        self.max_line = max_line
        self.refused = 0

    def strike(self, reason):
        """Count a refusal; raises :class:`Disconnect` when too many came too fast, otherwise
        :class:`Refused` with ``reason``."""
        self.refused += 1
        if not self.strikes.take():
            raise Disconnect(f"too many bad or excessive lines (last: {reason})")
        raise Refused(reason)

    def check_bytes(self, raw):
        if len(raw) > self.max_line:
            self.strike(f"line too long (max {self.max_line} bytes), ignored")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.strike("invalid UTF-8, line ignored")
        return self._check_rate(text)

    def check_text(self, text):
        if len(text) > self.max_line:
            self.strike(f"line too long (max {self.max_line} characters), ignored")
        return self._check_rate(text)

    def _check_rate(self, text):
        if not self.lines.take():
            self.strike(f"slow down: at most {self.lines.rate:g} lines per second, line ignored")
        return clean_text(text)
