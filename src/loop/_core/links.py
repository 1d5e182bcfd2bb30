"""Link notification, shared by :class:`loop.greenlet.Greenlet` and :mod:`loop.event`.

A *link* is a callable that gets the source (a green thread, an ``Event``, an ``AsyncResult``)
once the source is ready.  Most links are the :class:`loop._core.waiter.Waiter` of a green thread
that waits for the source (``join``, ``wait``, ``iwait``): such a link only queues a wake-up, so
whoever makes the source ready calls it at once, which costs no hub callback.  Any other link
may block, switch or fail, so those run later, together in one hub callback, each guarded by
the hub's error reporting, and never in the middle of the code that made the source ready.

The sources keep their links themselves (a green thread drops them once fired, an event keeps
them for the next ``set()``); this module only runs them.
"""
from loop._core.waiter import Waiter

__all__ = ["DIRECT_LINK_TYPES", "check_link", "notify", "notify_one", "run_links", "without"]

#: Link types that only queue a wake-up (never block, never switch, never raise): called
#: directly by the code that makes the source ready.  loop._core.api adds its iwait collector.
DIRECT_LINK_TYPES = {Waiter}


def check_link(callback):
    """Reject what cannot be a link (callers skip the check for DIRECT_LINK_TYPES)."""
    if not callable(callback):
        raise TypeError("Expected callable: %r" % (callback,))


def notify(source, links, hub):
    """Call ``links`` (a list, or one link on its own: a green thread keeps a single link
    unwrapped) for ``source``, which just became ready: direct links now, the others in ``hub``
    soon (from any OS thread)."""
    if type(links) is not list:
        notify_one(source, links, hub)
        return
    deferred = None
    for link in links:
        if type(link) in DIRECT_LINK_TYPES:
            link(source)
        elif deferred is None:
            deferred = [link]
        else:
            deferred.append(link)
    if deferred:
        hub.run_callback_threadsafe(run_links, source, deferred, hub)


def notify_one(source, link, hub):
    """Call one link added to a source that is ready already."""
    if type(link) in DIRECT_LINK_TYPES:
        link(source)
    else:
        hub.run_callback_threadsafe(run_links, source, (link,), hub)


def run_links(source, links, hub):
    """Call ``links`` for ``source`` now, in a hub callback, each guarded by the hub's error
    reporting."""
    for link in links:
        try:
            link(source)
        except BaseException as exc:
            hub.handle_error((link, source), type(exc), exc, exc.__traceback__)


def without(links, callback):
    """``links`` minus every link equal to ``callback`` (``unlink``)."""
    return [link for link in links if link != callback and link is not callback]
