"""Green ``signal`` (:mod:`loop.signal`): handlers installed with ``signal.signal`` may wake green
threads and block.

Python runs a signal handler in the main OS thread, between two bytecodes of whatever is
running there -- often the hub itself, sitting in ``epoll_wait``.  Two things go wrong with a
plain handler under loop: (1) what it wakes (``event.set()``) is queued in the hub, but the
event loop that was interrupted goes straight back to sleep with its old timeout, so the woken
green thread may not run until some unrelated event; (2) if it blocks (``lock.acquire()``,
``time.sleep``) while the hub fiber is the one running, it would have to switch out of the hub,
which is impossible (``BlockingSwitchOutError``).

:func:`signal` therefore installs a wrapper around the handler that

* runs the handler at once, in the interrupted green thread, exactly like the stdlib (so an
  exception it raises, such as ``KeyboardInterrupt``, surfaces where the program was), unless
  the interrupted code is the hub: then the handler runs in a new green thread (so it may
  block), and an exception from it is raised in the OS thread's main green thread at the call
  it is blocked in -- where the stdlib would have raised it (``recv`` interrupted by a
  ``SIGALRM`` handler that raises, for example);
* then nudges the hub's event loop (``call_soon_threadsafe``, which writes to its self-pipe), so
  whatever the handler woke runs promptly.

:func:`getsignal` returns the handler the user installed, not the wrapper.
"""
import signal as _stdlib_signal

from loop._core.api import spawn_raw
from loop._core.hub import get_hub_if_exists
from loop._switch import getcurrent

__all__ = ["signal", "getsignal"]

#: The names loop.monkey.patch_signal() replaces.
__implements__ = ["signal", "getsignal"]

_original_signal = _stdlib_signal.signal
_original_getsignal = _stdlib_signal.getsignal
_SIG_DFL = _stdlib_signal.SIG_DFL
_SIG_IGN = _stdlib_signal.SIG_IGN
_installed = {}  # signum -> (wrapper, user handler)


def _nothing():
    pass


class _Wrapper:
    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signum, frame):
        hub = get_hub_if_exists()
        if hub is None:
            return self.handler(signum, frame)
        try:
            if getcurrent() is hub.fiber:
                spawn_raw(self._run_for_main, hub, signum)
            else:
                return self.handler(signum, frame)
        finally:
            try:
                hub.loop.call_soon_threadsafe(_nothing)
            except RuntimeError:  # the loop is closed
                pass

    def _run_for_main(self, hub, signum):
        # The signal arrived while the hub was polling, i.e. while the main green thread (the
        # one the stdlib would have run the handler in) was blocked.  An exception from the
        # handler is raised there, at its blocking call, as it would be without loop.
        try:
            self.handler(signum, None)
        except BaseException as exc:
            main = hub.main
            if main is not None and not main.dead:
                hub.interrupt(main, exc)
            else:
                hub.handle_error(self.handler, type(exc), exc, exc.__traceback__)


def signal(signalnum, handler):
    """``signal.signal`` whose Python handlers cooperate with green threads."""
    if callable(handler) and handler not in (_SIG_DFL, _SIG_IGN):
        wrapper = _Wrapper(handler)
        previous = _original_signal(signalnum, wrapper)
        _installed[signalnum] = (wrapper, handler)
    else:
        previous = _original_signal(signalnum, handler)
        _installed.pop(signalnum, None)
    return _unwrap(signalnum, previous)


def getsignal(signalnum):
    return _unwrap(signalnum, _original_getsignal(signalnum))


# They stand in for the stdlib's functions in the signal module (whose own wrappers report
# __module__ == "signal").
signal.__module__ = getsignal.__module__ = "signal"


def _unwrap(signalnum, value):
    if isinstance(value, _Wrapper):
        return value.handler
    return value
