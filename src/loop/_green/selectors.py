"""Green ``selectors``: a ``DefaultSelector`` whose ``select()`` blocks only the caller.

:class:`GreenSelector` is the stdlib ``PollSelector`` with its ``poll`` object replaced by
:class:`loop._green.select.poll`: registration bookkeeping, key objects and event translation
stay the stdlib's, only the wait goes through the hub.  ``poll`` (not ``select``) underneath
means no ``FD_SETSIZE`` limit.  :class:`GreenSelectSelector` is the stdlib ``SelectSelector`` on
the green ``select``.  The hub's own asyncio loop keeps the original selector (bound by
:mod:`loop._core.originals` before any patching).
"""
import selectors as _stdlib_selectors

from loop._green.select import poll as _green_poll
from loop._green.select import select as _green_select

__all__ = ["GreenSelector", "DefaultSelector", "GreenSelectSelector"]

#: The names loop.monkey.patch_selectors() replaces with :class:`GreenSelector`.
__implements__ = ["DefaultSelector"]
#: Removed from the stdlib module by an aggressive patch (they block the OS thread).
__blocking__ = [name for name in ("EpollSelector", "DevpollSelector", "KqueueSelector")
                if hasattr(_stdlib_selectors, name)]


class GreenSelectSelector(_stdlib_selectors.SelectSelector):
    """``SelectSelector`` on the green ``select`` (a patched ``selectors.SelectSelector``)."""
    _select = staticmethod(_green_select)


if _green_poll is not None and hasattr(_stdlib_selectors, "PollSelector"):
    class GreenSelector(_stdlib_selectors.PollSelector):
        """A ``PollSelector`` that waits on the hub."""
        _selector_cls = staticmethod(_green_poll)

    # Shown (repr, pickling by reference) under the public module that re-exports it.
    GreenSelector.__module__ = "loop.selectors"
else:  # pragma: no cover - platforms without poll()
    GreenSelector = GreenSelectSelector

DefaultSelector = GreenSelector
