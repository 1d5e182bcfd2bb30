"""How a room message reaches the room's members: in this process, or across processes.

:class:`LocalBus` hands a batch of events straight to :meth:`chat.rooms.Rooms.deliver`.

:class:`RedisBus` lets several chat processes (on one machine or several) share rooms.  Every
message is PUBLISHed on the channel ``<prefix>room:<name>``; each process PSUBSCRIBEs to
``<prefix>room:*`` in one green thread and delivers what arrives to its own members -- its own
messages included, so every process shows a room's messages in the order Redis saw them.
Presence (``/who``, ``/rooms``) lives in one Redis hash per room, ``<prefix>who:<name>``, whose
fields are ``<process id>:<session id>`` and values nicknames; a process removes its fields when
it stops.  A process that dies without stopping leaves stale names behind (a production
deployment would add expiring heartbeats; this example keeps it simple).

redis-py does blocking socket IO, so the chat server calls :func:`loop.monkey.patch_all` before
importing it when ``--redis`` is given: redis-py's sockets are then green sockets, and a
process blocked in ``pubsub.listen()`` or a ``PUBLISH`` only parks that green thread.
"""
import logging
import os
import time
import uuid

import loop

from chat import events

__all__ = ["LocalBus", "RedisBus"]

log = logging.getLogger("chat.bus")


class LocalBus:
    """Rooms exist in this process only."""

    def __init__(self, rooms):
        self.rooms = rooms

    def start(self):
        pass

    def stop(self):
        pass

    def publish(self, room, batch):
        """Send ``batch`` (a list of events, in order) to everyone in ``room``."""
        self.rooms.deliver(room, batch)

    def entered(self, session, room):
        pass

    def exited(self, session, room):
        pass

    def who(self, room):
        return self.rooms.nicks_in(room)

    def room_counts(self):
        return self.rooms.room_counts()


class RedisBus(LocalBus):
    """Rooms shared by every process connected to the same Redis with the same ``prefix``."""

    def __init__(self, rooms, url, prefix="loopchat:"):
        super().__init__(rooms)
        import redis            # only now: after patch_all, and only when asked for
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=5,
                                          health_check_interval=30)
        self.prefix = prefix
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pubsub = None
        self._listener = None
        self._local_fields = {}     # (room, field) -> nickname, to remove at stop

    def start(self):
        self.redis.ping()           # fail at startup, with a clear error, if Redis is not there
        self._pubsub = self.redis.pubsub()   # _listen skips everything but pmessage
        self._pubsub.psubscribe(self.prefix + "room:*")
        # PSUBSCRIBE is only sent here. Wait for Redis to confirm it, so that nothing another
        # process publishes after we report "listening" can be missed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0.5)
            if message is not None and message["type"] == "psubscribe":
                break
        else:
            raise RuntimeError("Redis did not confirm the subscription within 10 s")
        self._listener = loop.spawn(self._listen)

    def stop(self):
        if self._listener is not None:
            self._listener.kill(block=True, timeout=1)
        try:
            for (room, field) in list(self._local_fields):
                self.redis.hdel(self._who_key(room), field)
            self._local_fields.clear()
            if self._pubsub is not None:
                self._pubsub.close()
            self.redis.close()
        except Exception as exc:        # Redis gone: nothing left to clean
            log.warning("redis cleanup failed: %s", exc)

    def _listen(self):
        channel_prefix = (self.prefix + "room:").encode()
        while True:
            try:
                for message in self._pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    room = message["channel"][len(channel_prefix):].decode("utf-8", "replace")
                    try:
                        event = events.from_json(message["data"])
                    except ValueError as exc:
                        log.warning("ignoring bad message on %s: %s", message["channel"], exc)
                        continue
                    self.rooms.deliver(room, [event])
            except Exception as exc:
                # redis-py reconnects and resubscribes on the next listen(); do not spin.
                log.error("redis subscription failed (%s); retrying in 1 s", exc)
                loop.sleep(1)

    def publish(self, room, batch):
        channel = self.prefix + "room:" + room
        if len(batch) == 1:
            self.redis.publish(channel, batch[0].as_json())
            return
        # One round trip for the batch; Redis keeps the order of a connection's commands.
        pipe = self.redis.pipeline(transaction=False)
        for event in batch:
            pipe.publish(channel, event.as_json())
        pipe.execute()

    def _who_key(self, room):
        return self.prefix + "who:" + room

    def _field(self, session):
        return f"{self.process_id}:{session.id}"

    def entered(self, session, room):
        field = self._field(session)
        self.redis.hset(self._who_key(room), field, session.nick)
        self.redis.sadd(self.prefix + "rooms", room)
        self._local_fields[(room, field)] = session.nick

    def exited(self, session, room):
        field = self._field(session)
        self.redis.hdel(self._who_key(room), field)
        self._local_fields.pop((room, field), None)

    def who(self, room):
        return sorted(v.decode("utf-8", "replace") for v in self.redis.hvals(self._who_key(room)))

    def room_counts(self):
        counts = {}
        for raw in self.redis.smembers(self.prefix + "rooms"):
            room = raw.decode("utf-8", "replace")
            count = self.redis.hlen(self._who_key(room))
            if count:
                counts[room] = count
            else:
                self.redis.srem(self.prefix + "rooms", room)
        return counts
