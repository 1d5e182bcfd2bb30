"""Life-cycle events of loop, published to subscribers (gevent's ``gevent.events``).

A subscriber is any callable in :data:`subscribers`; :func:`notify` calls each with the event
object, in order.  loop publishes:

* around :func:`loop.monkey.patch_all`: :class:`GeventWillPatchAllEvent` (before anything is
  patched), then per stdlib module :class:`GeventWillPatchModuleEvent` and
  :class:`GeventDidPatchModuleEvent`, then :class:`GeventDidPatchBuiltinModulesEvent` and
  :class:`GeventDidPatchAllEvent`.  A subscriber that raises :class:`DoNotPatch` from a
  *will-patch-module* event keeps that module unpatched (the other modules are patched).  The
  module events are also published by the single ``patch_*`` functions.
* :class:`EventLoopBlocked` when the blocking monitor (``LOOP_MAX_BLOCKING_TIME``) finds the
  hub blocked, for subscribers that want to log or alert rather than print.

The patch events additionally run the plugins registered as package entry points under the
event's ``ENTRY_POINT_NAME`` group (``loop.plugins.monkey.will_patch_all`` and so on), so an
installed package can adjust patching without being imported by the program.

The class names are gevent's, so a gevent subscriber ports by changing its import.  gevent
declares each event's interface with ``zope.interface`` (``IGeventWillPatchAllEvent``...); loop
has no such dependency, so there are only the classes.
"""

__all__ = [
    "subscribers", "notify", "notify_and_call_entry_points", "DoNotPatch",
    "GeventPatchEvent", "GeventWillPatchEvent", "GeventDidPatchEvent",
    "GeventWillPatchModuleEvent", "GeventDidPatchModuleEvent", "GeventWillPatchAllEvent",
    "GeventDidPatchBuiltinModulesEvent", "GeventDidPatchAllEvent", "EventLoopBlocked",
]

#: The subscribers, called in order with each event.  Append to subscribe.
subscribers = []


def notify(event):
    """Call every subscriber with ``event``.  An exception from a subscriber propagates to
    the code that published the event (``DoNotPatch`` is how patching is vetoed)."""
    for subscriber in list(subscribers):
        subscriber(event)


def notify_and_call_entry_points(event):
    """:func:`notify`, then call each plugin registered under ``event.ENTRY_POINT_NAME``."""
    notify(event)
    group = getattr(event, "ENTRY_POINT_NAME", None)
    if not group:
        return
    # importlib.metadata is slow to import, and most events have no entry points.
    from importlib import metadata
    try:
        plugins = metadata.entry_points(group=group)
    except Exception:  # broken distribution metadata must not stop patching
        return
    for plugin in plugins:
        plugin.load()(event)


class DoNotPatch(BaseException):
    """Raise from a subscriber of :class:`GeventWillPatchModuleEvent` to keep that module
    unpatched."""


class GeventPatchEvent:
    """Base of the patch events: ``source`` is loop's module, ``target`` the stdlib one."""

    def __init__(self, source, target):
        self.source = source
        self.target = target

    def __repr__(self):
        return "<%s source=%r target=%r>" % (type(self).__name__, self.source, self.target)


class GeventWillPatchEvent(GeventPatchEvent):
    """Something is about to be patched."""


class GeventDidPatchEvent(GeventPatchEvent):
    """Something was patched."""


class GeventWillPatchModuleEvent(GeventWillPatchEvent):
    """``target`` (the stdlib module ``module_name``) is about to get ``items`` from
    ``source``; raise :class:`DoNotPatch` to prevent it."""

    ENTRY_POINT_NAME = "loop.plugins.monkey.will_patch_module"

    def __init__(self, module_name, source, target, items):
        super().__init__(source, target)
        self.module_name = module_name
        self.target_item_names = items


class GeventDidPatchModuleEvent(GeventDidPatchEvent):
    """The stdlib module ``module_name`` was patched."""

    ENTRY_POINT_NAME = "loop.plugins.monkey.did_patch_module"

    def __init__(self, module_name, source, target):
        super().__init__(source, target)
        self.module_name = module_name


class _PatchAllEvent:
    def __init__(self, patch_all_arguments, patch_all_kwargs):
        super().__init__(None, None)
        self._patch_all_arguments = patch_all_arguments
        self._patch_all_kwargs = patch_all_kwargs

    @property
    def patch_all_arguments(self):
        """The switches ``patch_all`` was called with (name -> bool), a copy."""
        return dict(self._patch_all_arguments)

    @property
    def patch_all_kwargs(self):
        """Any other keyword arguments ``patch_all`` was given, a copy."""
        return dict(self._patch_all_kwargs)

    def __repr__(self):
        return "<%s arguments=%r kwargs=%r>" % (type(self).__name__, self._patch_all_arguments,
                                                 self._patch_all_kwargs)


class GeventWillPatchAllEvent(_PatchAllEvent, GeventWillPatchEvent):
    """``patch_all`` is about to run."""

    ENTRY_POINT_NAME = "loop.plugins.monkey.will_patch_all"

    def will_patch_module(self, module_name):
        """Whether ``patch_all`` was asked to patch ``module_name`` (a switch name)."""
        return bool(self._patch_all_arguments.get(module_name))


class GeventDidPatchBuiltinModulesEvent(_PatchAllEvent, GeventDidPatchEvent):
    """``patch_all`` patched the stdlib modules (third-party patches may follow)."""

    ENTRY_POINT_NAME = "loop.plugins.monkey.did_patch_builtins"


class GeventDidPatchAllEvent(_PatchAllEvent, GeventDidPatchEvent):
    """``patch_all`` finished."""

    ENTRY_POINT_NAME = "loop.plugins.monkey.did_patch_all"


class EventLoopBlocked:
    """The hub did not get control back for ``blocking_time`` seconds; ``greenlet`` is the
    green thread that was running, ``info`` lines describing where it was."""

    def __init__(self, greenlet, blocking_time, info, hub=None):
        self.greenlet = greenlet
        self.blocking_time = blocking_time
        self.info = info
        self.hub = hub
