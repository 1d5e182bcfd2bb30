"""asyncio and green threads on one event loop, both ways.

Design
======

The hub *is* an asyncio event loop, so no bridge thread or second loop is needed: asyncio tasks
and green threads are scheduled by the same ``run_forever``.  Code that runs as asyncio (tasks,
callbacks) runs on the hub fiber; green threads are other fibers that the hub switches into.

* Green -> asyncio: :func:`await_` wraps the awaitable in a task on the hub loop and parks the
  calling green thread on a :class:`loop._core.waiter.Waiter` until the task's done-callback
  wakes it.  Only that green thread waits; everything else keeps running.  If the green thread
  is killed or times out, the task is cancelled.
* asyncio -> green: a :class:`loop.Greenlet` is awaitable.  ``await g`` links an asyncio future
  to it; cancelling the awaiting task kills the green thread.  :func:`run_green` spawns and
  awaits in one call.
* The hub fiber must never block, so green blocking calls from asyncio code raise
  ``BlockingSwitchOutError`` with a message that says to ``await`` instead.  The mirror case,
  ``asyncio.run()`` inside a green thread (whose hub already runs this thread's event loop), is
  :mod:`loop._core.nesting`'s: a clear RuntimeError that says to use ``loop.await_`` when nothing is
  patched, a cooperative nested loop after ``patch_all()``.

asyncio is imported only when a hub is created, so ``import loop`` stays cheap.
"""

from loop._core.api import spawn
from loop._core.exceptions import BlockingSwitchOutError
from loop._core.hub import get_hub, get_hub_if_exists
from loop._core.originals import prepare
from loop._core.waiter import Waiter
from loop._switch import getcurrent

__all__ = ["await_", "run_green", "wait_greenlet_future"]

def await_(awaitable):
    """Wait, in the current green thread only, for an asyncio awaitable; return its result or
    raise its exception.  Runs it as a task on the hub's event loop."""
    hub = get_hub()
    if getcurrent() is hub.fiber:
        if hasattr(awaitable, "close") and hasattr(awaitable, "cr_frame"):
            awaitable.close()  # a coroutine that will never run: no "never awaited" warning
        raise BlockingSwitchOutError(
            "loop.await_() was called from asyncio code running on the hub; use 'await' there.")
    asyncio = prepare()["asyncio"]
    cf = prepare()["concurrent.futures"]
    if isinstance(awaitable, cf.Future):
        future = asyncio.wrap_future(awaitable, loop=hub.loop)
    else:
        future = asyncio.ensure_future(awaitable, loop=hub.loop)
    if future.done():
        return future.result()
    waiter = Waiter(hub)
    future.add_done_callback(waiter.wake)
    hub.add_wakeup_source(waiter)
    try:
        waiter.wait()
    except BaseException:
        future.remove_done_callback(waiter.wake)
        future.cancel()
        raise
    finally:
        hub.remove_wakeup_source(waiter)
    return future.result()


def wait_greenlet_future(greenlet):
    """An asyncio future (on the running loop) that completes with ``greenlet``'s outcome."""
    asyncio = prepare()["asyncio"]
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def copy_outcome(g):
        if future.done():
            return
        if g.successful():
            future.set_result(g.value)
        else:
            future.set_exception(g.exception)

    def on_done(g):
        # Link callbacks run in the green thread's hub; hop threads if the loop differs.
        hub = get_hub_if_exists()
        if hub is not None and hub.loop is loop:
            copy_outcome(g)
        else:
            loop.call_soon_threadsafe(copy_outcome, g)

    def on_cancel(f):
        if f.cancelled() and not greenlet.ready():
            greenlet.kill(block=False)

    if greenlet.ready():
        copy_outcome(greenlet)
    else:
        greenlet.rawlink(on_done)
        future.add_done_callback(on_cancel)
    return future


async def run_green(function, *args, **kwargs):
    """From asyncio code: run ``function(*args, **kwargs)`` in a new green thread and await its
    result.  Cancelling the awaiting task kills the green thread."""
    return await spawn(function, *args, **kwargs)
