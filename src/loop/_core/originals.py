"""The stdlib functions the core uses, bound before any monkey patch can replace them.

:mod:`loop.monkey` replaces ``socket``, ``select``, ``selectors``, ``threading`` and ``time``
with green versions.  The hub must keep using the real ones: its thread pool needs OS threads,
not green threads; its locks guard state shared with those threads; the stdlib event loop's
self-pipe and selector must be the kernel's, not green objects that would wait on the hub they
belong to.  So this module binds them once, when the core is first imported (which the monkey
module makes sure happens before it patches), and every core module takes them from here, under
public names: ``originals.allocate_lock``, ``originals.monotonic``, ...

:func:`prepare` does the same for what is too costly to import eagerly: asyncio, uvloop and
concurrent.futures, asyncio's running-loop slot, and the core modules that bind originals of
their own (the thread pool binds ``threading.Condition``).  The monkey module calls it before
patching anything; the hub calls it before making its first event loop.
"""
import _socket
import _thread
import selectors as _selectors
import threading as _threading
import time as _time

get_ident = _thread.get_ident
start_new_thread = _thread.start_new_thread
allocate_lock = _thread.allocate_lock
RLock = _thread.RLock
thread_local = _thread._local
socketpair = _socket.socketpair
DefaultSelector = _selectors.DefaultSelector
monotonic = _time.monotonic
sleep = _time.sleep
Condition = _threading.Condition

#: Bound by :func:`prepare` (None before): the asyncio and concurrent.futures modules, uvloop
#: (None when it is not installed), and asyncio's running-loop slot.
asyncio = concurrent_futures = uvloop = None
get_running_loop = set_running_loop = None

_prepared = {}


def prepare():
    """Import and bind everything the core needs from the stdlib (asyncio, uvloop,
    concurrent.futures).  Call before monkey patching; idempotent.  Returns a dict of them
    (keys ``asyncio``, ``concurrent.futures``, ``uvloop``, ``get_running_loop``)."""
    if _prepared:
        return _prepared
    global asyncio, concurrent_futures, uvloop, get_running_loop, set_running_loop
    import asyncio as _asyncio
    import asyncio.events
    import concurrent.futures
    try:
        import uvloop as _uvloop
    except ImportError:
        _uvloop = None
    asyncio = _asyncio
    concurrent_futures = concurrent.futures
    uvloop = _uvloop
    get_running_loop = _asyncio.events._get_running_loop
    set_running_loop = _asyncio.events._set_running_loop
    _prepared.update({"asyncio": asyncio, "concurrent.futures": concurrent_futures,
                      "uvloop": uvloop, "get_running_loop": get_running_loop})
    # In-function imports: every core module imports this one, and these three need the
    # stdlib bound above (originals -> nesting/threadpool/hub -> originals).
    from loop._core import hub, nesting
    nesting.install(asyncio, uvloop)
    # The thread pool is imported now, like everything the hub may need later: imported after
    # patching, it would take the (green) import lock from a thread that has no hub.
    from loop._core import threadpool  # noqa: F401
    # The hub class is resolved now: importing it when a thread makes its hub, after
    # patching, would take the (green) import lock, which needs a hub.
    hub.get_hub_class()
    return _prepared
