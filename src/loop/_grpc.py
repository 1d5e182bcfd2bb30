"""grpcio on green threads: the implementation behind :func:`loop.grpc.init`.

Design
======

Why grpc freezes the hub
------------------------
grpcio's C core does its own networking on its own threads.  What reaches Python is a
*completion queue*: a blocking call (``stub.Method(request)``), the thread that drives a
streaming call's responses and a server's request loop each wait for the next event with
``grpc_completion_queue_next``, a C call that releases the GIL and blocks the OS thread until
the core has something.  Monkey patching cannot reach it.  In a green thread that wait blocks
the hub's thread, so every other green thread, timer and socket stops for as long as the call
takes, and fifty concurrent calls run one after the other.

grpc's own switch
-----------------
grpcio ships the cure for gevent: ``grpc._cython.cygrpc.init_grpc_gevent`` (behind
``grpc.experimental.gevent.init_gevent``).  Once it has run, every completion-queue wait goes
through ``threadpool.apply(wait, (queue,))``, where ``threadpool`` is whatever
``gevent.hub.get_hub().threadpool`` was at init time, and callbacks that the core raises on its
own threads (metadata plugins and the like) are queued and run by one green thread started with
``gevent.pool.Group().spawn``.  Those three names are all it takes from gevent, and loop has
objects with the same behaviour: :class:`loop.threadpool.ThreadPool` (``apply`` runs the
function in a real thread while only the calling green thread waits) and
:class:`loop.pool.Group`.  So :func:`init` runs grpc's own switch with ``gevent``,
``gevent.hub`` and ``gevent.pool`` in ``sys.modules`` pointing, for the duration of that one
call and under the import lock, at small modules that hand it loop's objects; afterwards
``sys.modules`` is exactly as before (a real gevent, imported or not, is left alone).  grpc
keeps the objects, not the modules.

A pool of its own
-----------------
A completion-queue wait holds its OS thread until the event arrives: for a unary call, the whole
call; for a channel with streams in flight or a server, as long as they live.  On the hub's
shared pool (ten threads, the one DNS lookups and file objects use) fifty concurrent calls would
run ten at a time and starve everything else that needs a thread.  grpc therefore gets a
dedicated :class:`~loop.threadpool.ThreadPool` whose threads start only as concurrent waits
need them, up to ``max_threads`` (default 1024); a wait beyond that queues until a thread is
free.  The threads sleep in C with the GIL released, so an idle one costs a stack, not CPU.

Patching first
--------------
grpc's Python layer coordinates a call with ``threading.Condition`` and runs the streaming and
server loops in ``threading.Thread``.  Unpatched, those are real locks and threads and a green
thread waiting on one blocks the hub again; so :func:`init` requires ``threading`` to be patched
(``loop.monkey.patch_all()`` first), and must run before the first channel or server is made
(grpc counts channels from init on to know when its callback green thread may stop).
"""
import _imp
import sys
import types

from loop._core.threadpool import ThreadPool
from loop.monkey._registry import is_module_patched
from loop.pool import Group

__all__ = ["init", "is_initialized", "DEFAULT_MAX_THREADS"]

#: Upper bound of the dedicated pool: the most grpc waits (calls, streams, servers) in flight
#: on their own thread at once.
DEFAULT_MAX_THREADS = 1024

_installed_pool = None

# The names grpc's init imports from gevent; lent to it for the duration of the call.
_LENT_MODULES = ("gevent", "gevent.hub", "gevent.pool")


def is_initialized():
    """True once :func:`init` switched grpc to loop's green threads in this process."""
    return _installed_pool is not None


def init(max_threads=DEFAULT_MAX_THREADS):
    """Make grpc's blocking calls wait in real threads so that only the calling green thread
    waits.  Call after ``loop.monkey.patch_all()`` and before creating any channel or server.
    Calling it again is a no-op."""
    global _installed_pool
    if _installed_pool is not None:
        return
    if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
        raise ValueError("max_threads must be a positive integer, not %r" % (max_threads,))
    if not is_module_patched("threading"):
        raise RuntimeError("loop.grpc.init() needs threading patched: call "
                           "loop.monkey.patch_all() first")
    # grpcio is an optional dependency: imported by init() only.
    from grpc._cython import cygrpc
    if getattr(cygrpc, "g_gevent_activated", False):
        raise RuntimeError("grpc's gevent integration is already switched on in this process "
                           "(grpc.experimental.gevent.init_gevent() ran); it cannot serve two "
                           "event loops")

    pool = ThreadPool(max_threads)
    hub_view = types.SimpleNamespace(threadpool=pool)
    hub_module = types.ModuleType("gevent.hub")
    hub_module.get_hub = lambda: hub_view
    pool_module = types.ModuleType("gevent.pool")
    pool_module.Group = Group
    package = types.ModuleType("gevent")
    package.__path__ = []
    package.hub = hub_module
    package.pool = pool_module
    lent = {"gevent": package, "gevent.hub": hub_module, "gevent.pool": pool_module}

    _imp.acquire_lock()
    try:
        missing = object()
        previous = {name: sys.modules.get(name, missing) for name in _LENT_MODULES}
        sys.modules.update(lent)
        try:
            cygrpc.init_grpc_gevent()
        finally:
            for name, module in previous.items():
                if module is missing:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
    finally:
        _imp.release_lock()
    if cygrpc.g_gevent_threadpool is not pool:
        raise RuntimeError("this grpcio's gevent switch did not take loop's thread pool; "
                           "grpcio %s is not supported" % (_grpc_version(),))
    # A forked child has none of the parent's pool threads: the thread pool module resets every
    # pool, this one included, after a fork.
    _installed_pool = pool


def _grpc_version():
    try:
        import grpc
        return grpc.__version__
    except (ImportError, AttributeError):
        return "?"
