"""loop: green threads on an asyncio/uvloop hub, with gevent's API.

Port a gevent program by changing its imports::

    import loop
    g = loop.spawn(fetch, url)
    loop.joinall([g], timeout=5)

Mix with asyncio on the same loop: ``loop.await_(coro)`` from a green thread, ``await greenlet``
or ``await loop.run_green(fn, *args)`` from asyncio code.

Each green thread runs in a copy of the contextvars context of the code that created it (as an
asyncio task does): values set before ``spawn`` are visible inside, values set inside stay there.

Importing this package is cheap: it does not import asyncio (the hub does, when first used), nor
the monkey patches or the servers.  Events, locks, queues and pools live in ``loop.event``,
``loop.lock``, ``loop.queue``, ``loop.pool``, ``loop.local`` and ``loop.threadpool``.
"""
import sys as _sys

from loop._api import (fork, get_hub, getcurrent, idle, iwait, joinall, kill, killall, reinit,
                       signal_handler, sleep, spawn, spawn_later, spawn_raw, wait)
from loop._interop import await_, run_green
from loop.exceptions import (BlockingSwitchOutError, ConcurrentObjectUseError, GreenletExit,
                             InvalidSwitchError, LoopExit)
from loop.greenlet import Greenlet
from loop.timeout import Timeout, with_timeout

#: The interpreter's thread switch interval (gevent exports these two under its own name).
getswitchinterval = _sys.getswitchinterval
setswitchinterval = _sys.setswitchinterval

__version__ = "0.1.0"

__all__ = [
    "Greenlet", "GreenletExit", "spawn", "spawn_later", "spawn_raw", "joinall", "killall",
    "kill", "wait", "iwait", "sleep", "idle", "getcurrent", "get_hub", "reinit", "fork",
    "signal_handler", "Timeout", "with_timeout", "await_", "run_green", "LoopExit",
    "BlockingSwitchOutError", "InvalidSwitchError", "ConcurrentObjectUseError",
    "getswitchinterval", "setswitchinterval",
]
