"""``ThreadPool``: run blocking functions in real OS threads; green threads wait for the results
without blocking the hub.

The implementation lives in :mod:`loop._core.threadpool` (the core: the one package that switches
green threads); this module is its public name, as in gevent.
"""
from loop._core.threadpool import (  # noqa: F401
    ThreadPool, ThreadResult, ThreadPoolExecutor)

__all__ = ['ThreadPool', 'ThreadResult', 'ThreadPoolExecutor']
