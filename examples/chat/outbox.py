"""The per-client outbox, and the policy for clients that read too slowly.

Why
---
Delivering a room message must never wait for any one client.  So nothing writes to a client's
socket except that client's own writer green thread; everyone else only appends to the client's
outbox, which never blocks.  A client that reads slowly (or not at all) therefore only delays
itself -- as long as its outbox cannot grow without bound.

Policy
------
* An outbox holds at most ``capacity`` items (default 500), each one event already rendered for
  this client's transport (a TCP line, or a JSON text for a browser).
* When it is full, the **oldest** items are dropped to make room for new ones, and counted:
  for a chat, recent messages matter more than old ones.
* Once the writer gets going again, the client first receives
  ``!!! N messages were dropped because your connection was too slow``.
* A client for which more than ``max_drops`` (default 2,000) items had to be dropped since it
  last made progress is considered stuck: ``on_stuck`` is called once, and the session
  disconnects it.

Every drop is also counted in :class:`chat.rooms.Stats` (``/stats`` shows both numbers) and the
session logs the total when the client goes away.

Cost
----
A busy room puts the same batch of items into hundreds of outboxes, so :meth:`Outbox.put_many`
is one bounded ``deque.extend`` (the deque's ``maxlen`` drops the oldest items in C; the count
is arithmetic) plus, only when the writer is not already due to run, one wake-up.  The writer
takes everything queued at once (:meth:`Outbox.take`): one write per wake-up, however many
messages arrived meanwhile.
"""
from collections import deque

from loop.event import Event

__all__ = ["Outbox"]


class Outbox:
    def __init__(self, capacity=500, max_drops=2000, on_drop=None, on_stuck=None,
                 drop_notice=None):
        if capacity < 1:
            raise ValueError("an outbox holds at least one item")
        self.capacity = capacity
        self.max_drops = max_drops
        self.on_drop = on_drop          # on_drop(count)
        self.on_stuck = on_stuck
        self.drop_notice = drop_notice  # drop_notice(count) -> the item that tells the client
        self.dropped = 0            # over the client's lifetime
        self.unreported = 0         # dropped since the writer last took items
        self.closed = False
        self.stuck = False
        self._queue = deque(maxlen=capacity)
        self._spare = deque(maxlen=capacity)    # the batch the writer was given last time
        self._nonempty = Event()

    def __len__(self):
        return len(self._queue)

    def put(self, item):
        """Queue ``item``; never blocks.  Ignored once the outbox is closed."""
        self.put_many((item,))

    def put_many(self, items):
        """Queue ``items`` (a sequence), oldest first; never blocks."""
        if self.closed:
            return
        queue = self._queue
        excess = len(queue) + len(items) - self.capacity
        queue.extend(items)             # maxlen: the oldest ``excess`` items fall off the left
        if excess > 0:
            self._dropped(excess)
        if not self._nonempty.is_set():
            self._nonempty.set()

    def _dropped(self, count):
        self.dropped += count
        self.unreported += count
        if self.on_drop is not None:
            self.on_drop(count)
        if self.unreported > self.max_drops and not self.stuck:
            self.stuck = True
            if self.on_stuck is not None:
                self.on_stuck()

    def close(self):
        """No more items; the writer sends what is queued, then :meth:`take` returns None."""
        self.closed = True
        self._nonempty.set()

    def take(self):
        """Wait for items and return all of them (oldest first), preceded by a notice if some
        were dropped; ``None`` once closed and empty."""
        queue = self._queue
        while not queue:
            if self.closed:
                return None
            self._nonempty.clear()
            self._nonempty.wait()
        # Hand the writer the queue itself and collect into the spare one meanwhile: no copy,
        # no allocation.  The writer is done with the previous batch when it calls take again.
        spare = self._spare
        spare.clear()
        self._queue, self._spare = spare, queue
        if self.unreported:
            count, self.unreported = self.unreported, 0
            if self.drop_notice is not None:
                # Not appendleft: on a full deque that would push the newest item out.
                batch = [self.drop_notice(count)]
                batch.extend(queue)
                return batch
        return queue
