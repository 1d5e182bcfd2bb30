"""The core: the hub, and everything that suspends or resumes a green thread.

What the core is
================
A green thread is a fiber of the C extension (``loop._switch``); running one means switching
the C stack to it.  The core is the one package that does that.  Every OS thread that uses loop
gets a hub (:mod:`loop._core.hub`): an asyncio event loop and the fiber that runs it.  A green
thread that waits registers how it wants to be woken and switches to the hub fiber; the event
loop runs until a callback switches back.  Everything above the core -- the public green API,
the green stdlib, monkey patching, the servers -- waits and wakes through the core's functions
and never switches itself.

Modules, by concern:

- ``originals.py``: the stdlib functions the core needs, bound before any monkey patch, and
  ``prepare()``, which imports asyncio and uvloop before patching.
- ``eventloop.py``: the hub's event loop classes (uvloop's or the stdlib's) that record what
  code other than the hub schedules on them, for the ``LoopExit`` check.
- ``waiter.py``: :class:`~loop._core.waiter.Waiter`, one wait of one green thread, and the wake
  tokens; how every module above the core blocks.
- ``fdtable.py``: who waits on which file descriptor.
- ``hub.py``: the hub (ready queue, timers, wakeup sources, fd waits, ``LoopExit``) and the
  module functions (``get_hub``, ``sleep``, ``wait_readable``...).
- ``monitor.py``: the blocking monitor the hub starts when ``LOOP_MAX_BLOCKING_TIME`` is set.
- ``greenlet.py``, ``links.py``, ``event.py``, ``timeout.py``, ``api.py``: green threads with
  gevent's API, link notification, ``Event``/``AsyncResult``, ``Timeout``, ``spawn`` and friends.
- ``interop.py`` and ``nesting.py``: asyncio code and green code in one thread, both ways.
- ``threadpool.py``: real OS threads whose results wake green threads.
- ``conventions.py``: gevent's error-handling conventions on a Hub subclass (the class
  ``get_hub()`` makes), and gevent's Waiter API.
- ``exceptions.py``: the exceptions of the hub and the green API.

Which modules switch, and why
=============================
Switching is kept to two modules, so that the safety checks live where the switches are: a
wait checks that it was resumed by the event it registered (``InvalidSwitchError``), and a wait
started inside the hub itself fails at once (``BlockingSwitchOutError``) instead of
deadlocking the event loop.

- ``hub.py`` switches *into* green threads -- the drain of the ready queue, ``Hub.resume`` (a
  single-shot callback: a timer, a readable fd, a pool result), ``Hub.interrupt`` (an
  exception thrown into a waiter) -- and *out of* them: ``Hub.park``, where every wait ends up
  (``Waiter.wait``, the one way code above the hub blocks, and ``Hub.switch``), and the sleeps
  (``sleep``, ``Hub.sleep``, ``Hub.yield_now``).  It also clears asyncio's running-loop slot
  around the switches into green threads, so only asyncio code sees the running loop.
- ``greenlet.py`` throws into its own green thread on ``Greenlet.throw`` (gevent's API), through
  the fiber type's own ``throw``.

``waiter.py`` does not switch: a Waiter registers a wait and hands its green thread to
``Hub.park``.

The import rule
===============
The core imports only ``loop._core.*``, ``loop._switch``, the stdlib, asyncio and uvloop --
nothing above it.  Inside the core, a module imports at its top; an import inside a function is
kept only where it breaks an import cycle, and its comment names the cycle (the hub makes its
thread pool and its gevent-style subclass; a Waiter finds the current hub; greenlet reaches
``api`` and ``interop``, which build on Greenlet; ``originals.prepare`` imports the modules that
must be loaded before patching).  Modules above the core import its public names only: no
leading underscore crosses a module boundary.
"""
