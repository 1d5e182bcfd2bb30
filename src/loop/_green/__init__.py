"""The green stdlib: stdlib modules whose blocking calls block only the calling green thread.

What is here
============
One module per stdlib module it stands in for, plus two helpers:

- ``socket.py`` (the green socket), ``dns.py`` (name resolution in a thread pool),
  ``serversocket.py`` (the socket the servers hand to handlers);
- ``select.py`` (``select``/``poll``), ``selectors.py`` (``DefaultSelector``);
- ``ssl.py`` (``SSLSocket``/``SSLContext``);
- ``thread.py`` (green ``_thread``: threads, locks, identities);
- ``subprocess.py`` (``Popen`` on green pipes), ``pipe.py`` (the raw green pipe end, also under
  ``fileobject.py``'s file objects);
- ``os.py`` (``waitpid``), ``signal.py`` (handlers that may block), ``time.py`` (``sleep``).

How it is used
==============
The public modules ``loop.socket``, ``loop.ssl``, ``loop.thread``, ... are thin mirrors: they
re-export the green names from here and define nothing themselves (those standing in for a
whole stdlib module -- socket, select, selectors, ssl, os, signal, time -- first copy the stdlib
module's namespace, as gevent's do).  :mod:`loop.monkey` installs the objects of these modules
into the stdlib ones, each module's ``__implements__`` naming what it replaces.  Either way the
objects are the same, so ``socket.socket is loop.socket.socket`` after a patch; public classes
set ``__module__`` to their public module, which is where users (and ``repr`` and ``pickle``)
find them.

The rules of the package
========================
- Waiting goes through the core (``loop._core``: the hub's ``wait_readable``, ``Waiter``...);
  nothing here switches fibers itself.
- Each module binds the stdlib originals it wraps when it is imported (``_original_select =
  select.select``).  That is correct only because :mod:`loop.monkey` imports all of them before
  it patches anything: a new module here must be imported there too.
- A module imports at its top; the modules of this package import the core, the public green
  API (``loop.lock``, ``loop.local``) and each other, never ``loop.monkey`` or the public
  mirrors.
"""
