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

# The names below are loaded on first use (PEP 562), so that importing a module of the package
# that does not need the C core -- the sans-IO HTTP reader in loop._protocols.http, say -- does
# not build a hub or even need the compiled extension.
_LAZY = {
    "loop._core.api": ("fork", "get_hub", "getcurrent", "idle", "iwait", "joinall", "kill",
                       "killall", "reinit", "signal_handler", "sleep", "spawn", "spawn_later",
                       "spawn_raw", "wait"),
    "loop._core.interop": ("await_", "run_green"),
    "loop._core.exceptions": ("BlockingSwitchOutError", "ConcurrentObjectUseError",
                              "GreenletExit", "InvalidSwitchError", "LoopExit"),
    "loop._core.greenlet": ("Greenlet",),
    "loop._core.timeout": ("Timeout", "with_timeout"),
}
_ORIGIN = {name: module for module, names in _LAZY.items() for name in names}
# Submodules that ``import loop`` used to bring in with the names above; code that reaches them
# as ``loop.event`` after a bare ``import loop`` still finds them.
_ORIGIN.update((name, "loop." + name) for name in ("event", "exceptions", "greenlet", "timeout"))


def __getattr__(name):
    # The first use of a lazy name loads them all and removes this function: while a module
    # defines __getattr__, CPython never specializes attribute loads from it, so every
    # ``loop.sleep(0)`` or ``loop.spawn(...)`` of a program would take the slow generic lookup.
    if name not in _ORIGIN:
        raise AttributeError("module 'loop' has no attribute %r" % (name,))
    import importlib
    namespace = globals()
    for attribute, module in _ORIGIN.items():
        imported = importlib.import_module(module)
        namespace[attribute] = imported if module == "loop." + attribute \
            else getattr(imported, attribute)
    namespace.pop("__getattr__", None)
    return namespace[name]


def __dir__():
    return sorted(set(globals()) | set(_ORIGIN))


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
