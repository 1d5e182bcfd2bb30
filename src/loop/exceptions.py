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
