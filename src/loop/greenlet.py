"""``Greenlet``: a green thread with a result, links and gevent's API.

The implementation lives in :mod:`loop._core.greenlet` (the core: the one package that switches
green threads); this module is its public name, as in gevent.
"""
from loop._core.greenlet import (  # noqa: F401
    Greenlet, GreenletExit, joinall, killall, DIRECT_LINK_TYPES)

__all__ = ['Greenlet', 'GreenletExit', 'joinall', 'killall', 'DIRECT_LINK_TYPES']
