"""Visibility tools: ``print_run_info()``, ``assert_switches`` and the blocking monitor.

All three are built on the switch hook of the C core (``loop._switch.settrace``), which calls a
function with ``("switch" | "throw", (origin, target))`` on every switch of the thread that
installed it.

The blocking monitor is off unless ``LOOP_MAX_BLOCKING_TIME`` (seconds) is set when a hub is
created; the hub starts it, so it lives in the core (:mod:`loop._core.monitor`, which explains
it) and is re-exported here.
"""
import gc
import sys
import threading
import traceback

from loop._core.hub import get_hub, get_hub_if_exists
from loop._core.monitor import BlockingMonitor, start_blocking_monitor
from loop._core.originals import monotonic as _monotonic
from loop._switch import Fiber, getcurrent, gettrace, settrace

__all__ = ["print_run_info", "format_run_info", "assert_switches", "start_blocking_monitor",
           "BlockingMonitor", "wrap_errors"]

# ---------------------------------------------------------------------------------------------
# print_run_info

def _fiber_state(fiber):
    if fiber is getcurrent():
        return "running"
    if fiber.dead:
        return "dead"
    if fiber:
        return "suspended"
    return "not started"


def format_run_info(thread_stacks=True, greenlet_stacks=True, limit=None):
    """Lines describing every OS thread (with its stack) and every live green thread (with
    the stack where it waits)."""
    lines = []
    if thread_stacks:
        names = {t.ident: t.name for t in threading.enumerate()}
        lines.append("*" * 40 + " Threads")
        for ident, frame in sys._current_frames().items():
            lines.append("Thread 0x%x (%s)" % (ident, names.get(ident, "?")))
            lines.extend(line.rstrip("\n") for line in traceback.format_stack(frame, limit))
            lines.append("")
    lines.append("*" * 40 + " Green threads")
    hub = get_hub_if_exists()
    if hub is not None:
        lines.append("Hub of this thread: %r" % (hub,))
    fibers = [obj for obj in gc.get_objects() if isinstance(obj, Fiber)]
    for fiber in fibers:
        if fiber.dead:
            continue
        role = ""
        if hub is not None:
            if fiber is hub.fiber:
                role = " [hub]"
            elif fiber is hub.main:
                role = " [main]"
        lines.append("%r: %s%s" % (fiber, _fiber_state(fiber), role))
        frame = fiber.frame
        if greenlet_stacks and frame is not None:
            lines.extend("  " + line.rstrip("\n")
                         for line in traceback.format_stack(frame, limit))
    return lines


def print_run_info(thread_stacks=True, greenlet_stacks=True, limit=None, file=None):
    """Print every OS thread and every green thread with its stack."""
    file = file if file is not None else sys.stderr
    for line in format_run_info(thread_stacks, greenlet_stacks, limit):
        print(line, file=file)


# ---------------------------------------------------------------------------------------------
# assert_switches

class _FailedToSwitch(AssertionError):
    pass


class assert_switches:
    """Context manager for tests: fail unless the block switched green threads.

    ``max_blocking_time``: also fail if any green thread ran longer than that many seconds
    without switching.  ``hub_only``: only count switches into the hub."""

    def __init__(self, max_blocking_time=None, hub_only=False):
        self.max_blocking_time = max_blocking_time
        self.hub_only = hub_only
        self.switches = 0
        self.longest = 0.0
        self.longest_fiber = None
        self._previous = None
        self._last = None
        self._hub_fiber = None

    def _trace(self, event, args):
        origin, target = args
        now = _monotonic()
        if not self.hub_only or target is self._hub_fiber:
            self.switches += 1
        held = now - self._last
        if held > self.longest and origin is not self._hub_fiber:
            self.longest = held
            self.longest_fiber = origin
        self._last = now
        if self._previous is not None:
            self._previous(event, args)

    def __enter__(self):
        self._hub_fiber = get_hub().fiber
        self._previous = gettrace()
        self._last = _monotonic()
        settrace(self._trace)
        return self

    def __exit__(self, exc_type, exc_value, tb):
        settrace(self._previous)
        if exc_type is not None:
            return None
        held = _monotonic() - self._last
        if held > self.longest:
            self.longest = held
            self.longest_fiber = getcurrent()
        if not self.switches:
            raise _FailedToSwitch("No switch%s happened in the block"
                                  % (" into the hub" if self.hub_only else ""))
        if self.max_blocking_time is not None and self.longest > self.max_blocking_time:
            raise _FailedToSwitch("%r ran %.3fs without switching (limit %.3fs)"
                                  % (self.longest_fiber, self.longest, self.max_blocking_time))
        return None


class wrap_errors:
    """``wrap_errors(errors, func)``: a callable that calls ``func`` and *returns* an exception
    of the ``errors`` type(s) instead of raising it (gevent.util's helper, for callbacks whose
    outcome is inspected afterwards)."""

    def __init__(self, errors, func):
        self.errors = errors
        self.func = func

    def __call__(self, *args, **kwargs):
        try:
            return self.func(*args, **kwargs)
        except self.errors as exc:
            return exc

    def __repr__(self):
        return "<wrap_errors %r %r>" % (self.errors, self.func)
