"""The blocking monitor: reports green threads that keep the event loop too long.

It is off unless ``LOOP_MAX_BLOCKING_TIME`` (seconds) is set when a hub is created.  It installs
a switch hook (``loop._switch.settrace``) that records which fiber runs and since when, and
starts one real OS thread -- the original ``start_new_thread``, so monkey patching cannot make it
a green thread that would wait on the hub it watches -- that wakes up every half period: if a
green thread other than the hub has kept the loop for longer than the limit without switching,
it prints that green thread and its current stack to stderr, once per blocking episode.  The
hook costs a Python call per switch, which is why it is opt-in.  It lives in the core because
the hub starts it; :mod:`loop.util` is its public home.
"""
import sys
import traceback

from loop._core import originals
from loop._switch import gettrace, settrace

__all__ = ["BlockingMonitor", "start_blocking_monitor"]


class BlockingMonitor:
    """Reports green threads that keep the loop longer than ``max_blocking_time`` seconds."""

    def __init__(self, hub, max_blocking_time, stream=None):
        self.hub = hub
        self.max_blocking_time = max_blocking_time
        self.stream = stream
        self.thread_ident = hub.thread_ident
        self.active = hub.fiber
        self.since = originals.monotonic()
        self.switches = 0
        self.reported_switch = -1
        self.running = True
        self.reports = 0
        self._previous = gettrace()
        settrace(self._trace)
        originals.start_new_thread(self._watch, ())

    def _trace(self, event, args):
        self.active = args[1]
        self.since = originals.monotonic()
        self.switches += 1
        if self._previous is not None:
            self._previous(event, args)

    def _watch(self):
        period = max(self.max_blocking_time / 2.0, 0.001)
        while self.running:
            originals.sleep(period)
            active = self.active
            if active is self.hub.fiber or self.reported_switch == self.switches:
                continue
            held = originals.monotonic() - self.since
            if held >= self.max_blocking_time:
                self.reported_switch = self.switches
                self.report(active, held)

    def report(self, fiber, held):
        frame = sys._current_frames().get(self.thread_ident)
        lines = ["loop: %r blocked the event loop for %.3f seconds (LOOP_MAX_BLOCKING_TIME=%s)"
                 % (fiber, held, self.max_blocking_time)]
        if frame is not None:
            lines.extend(line.rstrip("\n") for line in traceback.format_stack(frame))
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except Exception:
            pass
        self.reports += 1

    def stop(self):
        self.running = False
        if gettrace() == self._trace:
            settrace(self._previous)


def start_blocking_monitor(hub, max_blocking_time, stream=None):
    """Start a :class:`BlockingMonitor` for ``hub`` (called by the hub when
    ``LOOP_MAX_BLOCKING_TIME`` is set)."""
    monitor = BlockingMonitor(hub, max_blocking_time, stream)
    hub.blocking_monitor = monitor
    return monitor
