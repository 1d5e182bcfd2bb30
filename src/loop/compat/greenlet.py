"""greenlet's public API on loop's fibers.

Code written for the ``greenlet`` package runs on loop when this module stands in for it::

    import sys, loop.compat.greenlet
    sys.modules["greenlet"] = loop.compat.greenlet

Why it is built this way: the fiber type is shared, so ``getcurrent()`` here and
``loop.getcurrent()`` return the same objects, and greenlet code can mix with loop's green
threads. The core (``loop._switch``) already follows greenlet's rules for switching, throwing,
parents, contexts and the switch hook; this module adds only what is greenlet's and not
loop's:

* greenlet's class, whose instances forward a switch or throw into a finished greenlet to its
  nearest live parent (the core raises instead for plain fibers), and which every fiber passes
  ``isinstance`` checks against, as every green thread of gevent is a greenlet. The main fiber
  of each thread is made an instance of it, so ``type(getcurrent())`` is this ``greenlet``.
* greenlet's exact words where code or tests match them: ``repr()`` states, the messages of
  parent and context assignment, of ``throw()`` with something that is not an exception.
* greenlet's argument rules (``greenlet(run, parent)``, ``run=None`` kept as None) and its
  refusal to hand out a greenlet while the interpreter is finalizing.

Where greenlet made a choice that loop's own API does not share, this facade keeps greenlet's
choice anyway: it exists to run greenlet code unchanged (docs/compatibility.md lists them).
"""
import sys as _sys
from abc import ABCMeta as _ABCMeta
from contextvars import Context as _Context

from loop import _switch
from loop._switch import Fiber as _Fiber
from loop._switch import FiberError as error
from loop._switch import FiberExit as GreenletExit
from loop._switch import gettrace, settrace

__all__ = ["greenlet", "getcurrent", "GreenletExit", "error", "settrace", "gettrace"]

# greenlet exposes its version; code sometimes checks it.
__version__ = "3.1.0"

# Feature flags greenlet has exported since 0.4; code written for old greenlets still tests them.
GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True

_current_fiber = _switch.getcurrent
_is_finalizing = _sys.is_finalizing
_fiber_init = _Fiber.__init__
_fiber_parent = _Fiber.parent
_fiber_context = _Fiber.gr_context
_fiber_run = _Fiber.run
_NOT_GIVEN = object()


def getcurrent():
    """The running greenlet. Like greenlet, refuses (RuntimeError) once the interpreter is
    finalizing, e.g. in a ``__del__`` run by the last garbage collection."""
    if _is_finalizing():
        raise RuntimeError("greenlet.getcurrent() is not available while the interpreter is "
                           "finalizing")
    return _current_fiber()


class _GreenletMeta(_ABCMeta):
    # Every fiber is a greenlet.greenlet to this facade (loop's green threads and the hub
    # included), the way every gevent green thread is one. Subclasses check as usual.
    def __instancecheck__(cls, obj):
        if cls is greenlet:
            return isinstance(obj, _Fiber)
        return super().__instancecheck__(obj)

    def __subclasscheck__(cls, sub):
        if cls is greenlet:
            return issubclass(sub, _Fiber)
        return super().__subclasscheck__(sub)


def _is_main(fiber):
    return _fiber_parent.__get__(fiber) is None


class greenlet(_Fiber, metaclass=_GreenletMeta):
    """greenlet.greenlet: a fiber with greenlet's rules (see the module docstring)."""

    _dead_switch_goes_to_parent = True

    def __init__(self, run=_NOT_GIVEN, parent=None):
        # Two arguments at most, as greenlet takes (Fiber's third is its own copy_context).
        if run is _NOT_GIVEN or run is None:
            _fiber_init(self, None, parent)
            if run is None:
                _fiber_run.__set__(self, None)   # greenlet keeps an explicit None as the run
        else:
            _fiber_init(self, run, parent)

    def _get_parent(self):
        return _fiber_parent.__get__(self)

    def _set_parent(self, parent):
        if not isinstance(parent, _Fiber):
            raise TypeError("GreenletChecker: Expected any type of greenlet, not "
                            + type(parent).__name__)
        if _is_main(self):
            raise AttributeError("cannot set the parent of a main greenlet")
        _fiber_parent.__set__(self, parent)

    def _del_parent(self):
        raise AttributeError("can't delete attribute")

    parent = property(_get_parent, _set_parent, _del_parent,
                      "The greenlet that receives this one's result.")
    gr_parent = parent

    def _get_context(self):
        return _fiber_context.__get__(self)

    def _set_context(self, context):
        if context is not None and type(context) is not _Context:
            raise TypeError("greenlet context must be a contextvars.Context or None")
        _fiber_context.__set__(self, context)

    def _del_context(self):
        raise AttributeError("can't delete context attribute")

    gr_context = property(_get_context, _set_context, _del_context,
                          "The contextvars.Context the greenlet runs in (None: empty).")

    @property
    def _stack_saved(self):
        # greenlet: bytes of C stack copied to the heap while suspended. The nearest fact for a
        # fiber, which keeps its stack in place: the bytes of its own stack it holds suspended.
        usage = self._stack_usage()
        return usage["c_stack_bytes"] if usage else 0

    def __repr__(self):
        cls = type(self)
        where = "<%s.%s object at %#x" % (cls.__module__, cls.__qualname__, id(self))
        if self.dead:
            # Main fibers die only with their thread; others whose thread exited still show
            # their frames (their stacks are kept).
            exited = _is_main(self) or self.gr_frame is not None
            return "%s %sdead>" % (where, "(thread exited) " if exited else "")
        return "%s %s%s%s%s>" % (
            where,
            "current" if self is _current_fiber() else "suspended",
            " active" if self else "",
            " started" if self else " pending",
            " main" if _is_main(self) else "",
        )

    getcurrent = staticmethod(getcurrent)
    settrace = staticmethod(settrace)
    gettrace = staticmethod(gettrace)
    GreenletExit = GreenletExit
    error = error


# From now on every thread's main fiber is a greenlet (this thread's included).
_switch._set_main_fiber_type(greenlet)
