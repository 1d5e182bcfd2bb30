"""Green ``selectors``: a ``DefaultSelector`` whose ``select()`` blocks only the caller.

:class:`GreenSelector` is the stdlib ``PollSelector`` with its ``poll`` object replaced by
:class:`loop._green.select.poll`: registration bookkeeping, key objects and event translation stay the
stdlib's, only the wait goes through the hub.  ``poll`` (not ``select``) underneath means no
``FD_SETSIZE`` limit.  The hub's own asyncio loop keeps the original selector (bound in
:mod:`loop._core.hub` before any patching).
"""
import selectors as _stdlib_selectors

from loop._green.select import poll as _green_poll

__all__ = ["GreenSelector", "DefaultSelector"]

if _green_poll is not None and hasattr(_stdlib_selectors, "PollSelector"):
    class GreenSelector(_stdlib_selectors.PollSelector):
        """A ``PollSelector`` that waits on the hub."""
        _selector_cls = staticmethod(_green_poll)
else:  # pragma: no cover - platforms without poll()
    class GreenSelector(_stdlib_selectors.SelectSelector):
        from loop._green.select import select as _green_select
        _select = staticmethod(_green_select)
        del _green_select

DefaultSelector = GreenSelector
