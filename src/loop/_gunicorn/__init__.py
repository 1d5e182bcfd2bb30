"""The gunicorn workers (``gunicorn -k loop.worker.GreenWorker app:app``), behind :mod:`loop.worker`.

Design
======

Two processes, two rules
------------------------
gunicorn's arbiter imports the worker class *before* it forks, in the master.  The classes
therefore live in :mod:`loop._gunicorn.process`, which imports nothing but gunicorn's base
classes and the standard library: no monkey patching, no hub, no asyncio, not even loop's own
server modules.  Everything green happens in the child, in ``init_process``, which gunicorn
calls right after the fork:

1. ``loop.monkey.patch_all()``, so that the application's blocking libraries (``socket``,
   ``time.sleep``, ``threading``, ``ssl``...) cooperate;
2. :mod:`loop._gunicorn.serving` is imported: everything the worker needs from loop's hub and
   servers, gunicorn's settings mapped onto them, and the request handler of ``GreenWorker``;
   then the listeners the arbiter created are re-wrapped as green sockets (same descriptors);
3. gunicorn's own ``init_process`` runs (signals, app loading, ``post_worker_init``) and calls
   ``run`` in the main green thread.  The hub is created on first use in this process; a hub
   the master may have had is rebuilt by loop's fork hook.

Two ways to serve
-----------------
:class:`GreenWorker` serves through :class:`loop.pywsgi.WSGIServer`: loop's strict parser
(httptools) and its response path.  That is the only way to a large gain: with gunicorn's
request handling, its own Python code (parser, ``wsgi.create``, response writer) is about 70% of
a hello-world request's CPU time (py-spy), and a worker using it needs about three times the
CPU per request of one using ``WSGIServer`` (``bench/wsgi.py``).  gunicorn's settings are mapped onto the server (keep-alive,
limits, ``max_requests``, SSL, ``secure_scheme_headers`` from ``forwarded_allow_ips``, PROXY
protocol, ``SCRIPT_NAME``, ``sendfile``), and its logger and request hooks are fed with
objects that carry what they read.  What does not map is listed in ``docs/servers.md``.

:class:`GreenGunicornWorker` is gunicorn's :class:`~gunicorn.workers.base_async.AsyncWorker` on
loop's green threads: gunicorn parses HTTP (its own parser options, HTTP/2, uwsgi) and runs the
app, loop supplies the concurrency; the drop-in for ``-k gevent`` for applications that depend on
gunicorn's request handling (``gunicorn.socket``, HTTP/2, the parser's leniency options).

Both run one :class:`loop.server.StreamServer` per listener, whose pool of
``worker_connections`` green threads serves the connections.  With several workers the listener
is shared (``shared_listener``), and each readiness report is answered with a batch of accepts
that follows the backlog (see "Accepting fairly" in :mod:`loop.server`).  Both simpler rules
fail here: one connection per turn of the event loop (gevent's worker does that) starves new
connections behind kept-alive ones, since a turn of a busy worker serves every connection that
became readable (a burst of 100 new connections waited 3-15 s in the tests); the whole backlog
at once lets the first worker to wake take a whole burst of kept-alive connections while its
sibling idles.

Signals and the heartbeat
-------------------------
The main green thread runs the heartbeat: ``notify()`` (touch the file the arbiter watches) once
a second while ``alive``.  A worker whose hub is blocked by a runaway request stops touching it,
and the arbiter's timeout kills exactly that worker; a worker that merely has many slow requests
in flight keeps beating.

gunicorn installs its handlers with ``signal.signal`` and points ``signal.set_wakeup_fd`` at a
pipe nobody polls in an async worker.  A Python signal handler runs only when the interpreter
gets control, and a hub asleep in ``epoll_wait`` might not get it until its next timer.  So after
gunicorn's ``init_signals`` we register TERM, QUIT, INT, USR1 and ABRT again through the hub's
event loop (:func:`loop.signal_handler`): the loop wakes at once, and each handler runs in a new
green thread, where it may block (``handle_quit`` sleeps; ``reopen_files`` takes locks).
Until those handlers are in place the worker runs the arbiter's, inherited through the fork,
which would lose a signal; so TERM, QUIT and the others are blocked from the start of
``init_process`` until ``init_signals`` has routed them.  TERM (graceful) wakes the heartbeat
loop immediately; then every server is stopped while the heartbeat continues: the listener is
closed, and the connections wind down without losing a request (see "Winding down").  QUIT and INT exit at once.  HUP is the arbiter's business (it
starts new workers and TERMs the old ones), and so is USR2 (a new arbiter; the old one's
workers get TERM when it is told to stop); USR1 reopens the log files.

Winding down
------------
TERM, HUP (through TERM) and recycling after ``max_requests`` all end in the same graceful
stop, whose rule is: a request the application ran gets its response, and a request that will
not be served is never run.  With :class:`GreenWorker`, a request whose bytes the worker has
read is served and its response says ``Connection: close``, including every request that
starts once the worker knows it will stop (``max_requests`` reached, before the servers are
told); from that moment the worker accepts nothing more (the connections in the shared listen
backlog go to a sibling or to the replacement); a connection waiting for its next request is
closed without reading it, so what the client sent meanwhile is not run and the client sees the
connection close with no response (an HTTP client retries such a request on a new connection).  :class:`GreenGunicornWorker` runs
gunicorn's request loop: each connection serves the request it reads next with
``Connection: close``, and idle ones close after ``--keep-alive``.  What still runs when the
grace period ends is cut and logged; that happens a little before ``graceful_timeout``, because
the arbiter kills a worker silently at that point.

Modules
-------
``process`` (the classes, arbiter side), ``serving`` (the worker side, imported after the
patch); the PROXY protocol header is parsed, without IO, by :mod:`loop._protocols.proxy`.
:mod:`loop.worker` is the public name of the classes.
"""
