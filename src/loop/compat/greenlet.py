"""greenlet's public API on loop's fibers.

Code written for the ``greenlet`` package runs on loop when this module stands in for it::

    import sys, loop.compat.greenlet
    sys.modules["greenlet"] = loop.compat.greenlet

The fiber type is shared, so ``getcurrent()`` here and ``loop.getcurrent()`` return the same
objects. The one behaviour that differs in ``loop._switch`` itself -- switching or throwing into a
finished fiber raises there -- is switched back to greenlet's rule for ``greenlet`` instances:
such a switch goes to the nearest live parent.
"""
from loop._switch import Fiber as _Fiber
from loop._switch import FiberError as error
from loop._switch import FiberExit as GreenletExit
from loop._switch import getcurrent, gettrace, settrace

__all__ = ["greenlet", "getcurrent", "GreenletExit", "error", "settrace", "gettrace"]

# greenlet exposes its version; code sometimes checks it.
__version__ = "3.1.0"

# Feature flags greenlet has exported since 0.4; code written for old greenlets still tests them.
GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True


class _GreenletMeta(type):
    # Every fiber is a greenlet to this facade, including the main one that getcurrent() returns.
    def __instancecheck__(cls, obj):
        return isinstance(obj, _Fiber)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _Fiber)


class greenlet(_Fiber, metaclass=_GreenletMeta):
    """greenlet.greenlet: a fiber with greenlet's rules for finished targets."""

    _dead_switch_goes_to_parent = True

    @property
    def gr_parent(self):
        return self.parent

    @staticmethod
    def getcurrent():
        return getcurrent()

    # greenlet's spelling of settrace/gettrace as static methods.
    settrace = staticmethod(settrace)
    gettrace = staticmethod(gettrace)
    GreenletExit = GreenletExit
    error = error
