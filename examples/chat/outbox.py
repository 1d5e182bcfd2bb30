"""The per-client outbox, and the policy for clients that read too slowly.

Why
---
Delivering a room message must never wait for any one client.  So nothing writes to a client's
socket except that client's own writer green thread; everyone else only appends to the client's
outbox, which never blocks.  A client that reads slowly (or not at all) therefore only delays
itself -- as long as its outbox cannot grow without bound.

Policy
------
* An outbox holds at most ``capacity`` events (default 500).
* When it is full, the **oldest** event is dropped to make room for the new one, and counted:
  for a chat, recent messages matter more than old ones.
* Once the writer gets going again, the client first receives
  ``!!! N messages were dropped because your connection was too slow``.
* A client for which more than ``max_drops`` (default 2,000) events had to be dropped since it
  last made progress is considered stuck: ``on_stuck`` is called once, and the session
  disconnects it.

Every drop is also counted in :class:`chat.rooms.Stats` (``/stats`` shows both numbers) and the
session logs the total when the client goes away.
"""
from collections import deque

from loop.event import Event

from chat import events

__all__ = ["Outbox"]


class Outbox:
    def __init__(self, capacity=500, max_drops=2000, on_drop=None, on_stuck=None):
        self.capacity = capacity
        self.max_drops = max_drops
        self.on_drop = on_drop
        self.on_stuck = on_stuck
        self.dropped = 0            # over the client's lifetime
        self.unreported = 0         # dropped since the writer last took events
        self.closed = False
        self.stuck = False
        self._queue = deque()
        self._nonempty = Event()

    def __len__(self):
        return len(self._queue)

    def put(self, event):
        """Queue ``event``; never blocks.  Ignored once the outbox is closed."""
        if self.closed:
            return
        queue = self._queue
        if len(queue) >= self.capacity:
            queue.popleft()
            self.dropped += 1
            self.unreported += 1
            if self.on_drop is not None:
                self.on_drop()
            if self.unreported > self.max_drops and not self.stuck:
                self.stuck = True
                if self.on_stuck is not None:
                    self.on_stuck()
        queue.append(event)
        if not self._nonempty.is_set():
            self._nonempty.set()

    def close(self):
        """No more events; the writer sends what is queued, then :meth:`take` returns None."""
        self.closed = True
        self._nonempty.set()

    def take(self, limit=64):
        """Wait for events and return up to ``limit`` of them (oldest first), preceded by a
        notice if some were dropped; ``None`` once closed and empty."""
        queue = self._queue
        while not queue:
            if self.closed:
                return None
            self._nonempty.clear()
            self._nonempty.wait()
        batch = []
        if self.unreported:
            batch.append(events.error(
                f"{self.unreported} messages were dropped because your connection was too slow"))
            self.unreported = 0
        popleft = queue.popleft
        for _ in range(min(limit, len(queue))):
            batch.append(popleft())
        return batch
