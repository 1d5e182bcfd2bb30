"""Green ``select``: the stdlib module's namespace with ``select`` and ``poll`` cooperative.

``epoll`` (and ``devpoll``/``kqueue``) are re-exported unchanged: their objects block the whole
OS thread.  ``loop.monkey.patch_select(aggressive=True)`` removes them from the stdlib module so
that libraries fall back to ``poll``/``select``.  See :mod:`loop._green.select` for the design.
"""
import select as _stdlib_select

globals().update({name: value for name, value in vars(_stdlib_select).items()
                  if not name.startswith("__")})

from loop._green.select import poll, select, wait_any_fd  # noqa: E402

__implements__ = ["select", "poll"] if poll is not None else ["select"]
#: Removed from the stdlib module by an aggressive patch.
__blocking__ = [name for name in ("epoll", "devpoll", "kqueue", "kevent")
                if hasattr(_stdlib_select, name)]
del _stdlib_select
