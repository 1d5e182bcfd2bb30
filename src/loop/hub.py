"""gevent's ``gevent.hub`` names: the hub, its Waiter, and the basic green-thread operations.

``Hub`` follows gevent's error conventions (``handle_error(context, type, value, tb)``,
``SYSTEM_ERROR``, ``NOT_ERROR``, ``print_exception``, ``hub.parent``, ``hub.loop.now()``); see
:mod:`loop._core.conventions`.  ``hub.loop`` is the hub's asyncio event loop, not a libev loop:
code that made libev watchers (``loop.io``, ``loop.timer``) must use asyncio's ``call_later``
and ``add_reader`` or loop's ``wait_readable``/``sleep`` instead.
"""
from loop._core.api import SignalHandler as signal
from loop._core.api import idle, kill, spawn_raw
from loop._core.conventions import Hub, Waiter, get_hub_class, set_default_hub_class
from loop._core.exceptions import GreenletExit, LoopExit
from loop._core.hub import get_hub, get_hub_if_exists, reinit, sleep
from loop._switch import getcurrent

__all__ = ["getcurrent", "GreenletExit", "spawn_raw", "sleep", "kill", "signal", "reinit",
           "get_hub", "Hub", "Waiter", "LoopExit", "idle", "get_hub_if_exists",
           "get_hub_class", "set_default_hub_class"]
