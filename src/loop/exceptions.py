"""Exceptions of the hub and the green API, with gevent's names.

The implementation lives in :mod:`loop._core.exceptions` (the core: the one package that switches
green threads); this module is its public name, as in gevent.
"""
from loop._core.exceptions import (  # noqa: F401
    LoopExit, BlockingSwitchOutError, InvalidSwitchError, ConcurrentObjectUseError, GreenletExit, FiberExit, FiberError, HubDestroyed)

__all__ = ['LoopExit', 'BlockingSwitchOutError', 'InvalidSwitchError', 'ConcurrentObjectUseError', 'GreenletExit', 'FiberExit', 'FiberError', 'HubDestroyed']
