"""``Timeout``: raise an exception in the current green thread after some seconds.

The implementation lives in :mod:`loop._core.timeout` (the core: the one package that switches
green threads); this module is its public name, as in gevent.
"""
from loop._core.timeout import (  # noqa: F401
    Timeout, with_timeout, timeout_object)

__all__ = ['Timeout', 'with_timeout', 'timeout_object']
