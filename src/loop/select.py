"""Green ``select`` (gevent's ``gevent.select``): the stdlib module's namespace with ``select``
and ``poll`` cooperative.

``epoll`` (and ``devpoll``/``kqueue``) are re-exported unchanged: their objects block the whole
OS thread.  ``loop.monkey.patch_select(aggressive=True)`` removes them from the stdlib module so
that libraries fall back to ``poll``/``select``.  See :mod:`loop._green.select` for the design.
"""
import select as _stdlib_select

globals().update({name: value for name, value in vars(_stdlib_select).items()
                  if not name.startswith("__")})

from loop._green.select import __blocking__, __implements__, poll, select, wait_any_fd  # noqa: E402

del _stdlib_select
