"""``Event`` and ``AsyncResult``: one green thread (or OS thread) tells others that something
happened, or hands them a value.

The implementation lives in :mod:`loop._core.event` (the core: the one package that switches
green threads); this module is its public name, as in gevent.
"""
from loop._core.event import (  # noqa: F401
    Event, AsyncResult)

__all__ = ['Event', 'AsyncResult']
