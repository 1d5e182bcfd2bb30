"""Exceptions of the hub and the green API, with gevent's names.

Misuse of green threads usually shows up as a hang; these exceptions turn the common misuses into
immediate, named errors instead.
"""
from loop._switch import FiberError, FiberExit

__all__ = [
    "LoopExit",
    "BlockingSwitchOutError",
    "InvalidSwitchError",
    "ConcurrentObjectUseError",
    "GreenletExit",
    "FiberExit",
    "FiberError",
    "HubDestroyed",
]

#: Raised inside a green thread to end it quietly; ``Greenlet.kill()`` throws it by default.
GreenletExit = FiberExit


class LoopExit(Exception):
    """This operation would block forever.

    Raised in the thread's main green thread when it waits while every other green thread waits
    too and nothing -- no timer, no file descriptor, no thread pool job, no asyncio task -- can
    wake any of them.
    """


class BlockingSwitchOutError(AssertionError):
    """A blocking call was made from the hub itself (an asyncio callback or coroutine).

    The hub runs the event loop; if it blocked, nothing could ever wake it.  From asyncio code use
    ``await`` (and ``await loop.run_green(fn)`` to run blocking green code).
    """


class InvalidSwitchError(AssertionError):
    """A waiting green thread was resumed by something other than the hub event it waits for."""


class ConcurrentObjectUseError(AssertionError):
    """Two green threads wait on the same object in the same direction (e.g. one socket's reads)."""


class HubDestroyed(FiberExit):
    """Thrown into a hub's own fiber by ``hub.destroy()`` so that its event loop stops at once.

    A kind of ``GreenletExit``: the hub ends quietly.  Not for application code to raise."""

    def __init__(self, destroy_loop=True):
        FiberExit.__init__(self, destroy_loop)
        self.destroy_loop = destroy_loop


# Classes show (and pickle under) their public module's name.
for _public in __all__:
    _public = globals()[_public]
    if isinstance(_public, type) and _public.__module__ == __name__:
        _public.__module__ = "loop.exceptions"
del _public

#: The message of the ``BlockingSwitchOutError`` that a wait started inside the hub raises.
BLOCKING_IN_HUB = (
    "Cannot block inside the hub: this code runs in an asyncio callback or coroutine on the "
    "hub's event loop.  Use 'await' there (and 'await loop.run_green(fn)' to run blocking green "
    "code), or move the call into a green thread.")


def safe_repr(obj):
    """``repr(obj)``, or the default repr when the object's own raises: for error reports,
    which must not fail themselves."""
    try:
        return repr(obj)
    except Exception:
        return object.__repr__(obj)
