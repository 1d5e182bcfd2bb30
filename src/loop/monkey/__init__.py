"""Make blocking stdlib code cooperative: ``loop.monkey.patch_all()``.

Design
======

What a patch is
---------------
A patch replaces *attributes of the stdlib module objects* (``socket.socket``,
``time.sleep``, ``threading._allocate_lock``...) with loop's green versions.  Code that looks
the name up at call time (``socket.socket(...)``, ``time.sleep(1)``, ``threading.Lock()``)
becomes cooperative whatever the import order.  Every replacement is recorded by
:mod:`loop.monkey._registry`, so :func:`get_original` returns the real object,
:func:`is_module_patched`/:func:`is_object_patched` answer truthfully, and patching twice
keeps the first original (``patch_all()`` twice is a no-op).

The green replacements are themselves thin: the green socket *is* a ``socket.socket`` subclass
(:mod:`loop._green.socket`), the green SSL socket *is* an ``ssl.SSLSocket``
(:mod:`loop._green.ssl`), green threads are driven by the stdlib ``threading`` module itself
running on green ``_thread`` primitives (:mod:`loop._green.thread`,
:mod:`loop.monkey._thread_patches`), ``subprocess.Popen`` is the stdlib class on green pipes
(:mod:`loop._green.subprocess`).  Behaviour therefore stays the stdlib's, which is what the
CPython test suite run (``tests/stdlib/run_stdlib.py``, ``docs/compatibility.md``) checks.

The package
-----------
This module holds the ``patch_*`` functions and decides their order; what it installs comes
from the green stdlib, :mod:`loop._green` (the public mirrors ``loop.socket``, ``loop.time``...
re-export the same objects, so ``socket.socket is loop.socket.socket`` after the patch).
:mod:`loop.monkey._registry` records every replacement and answers ``get_original``;
:mod:`loop.monkey._thread_patches` knows which private names of ``threading`` each Python
version copies, and keeps green threads alive across ``fork``; ``python -m loop.monkey`` runs
:mod:`loop.monkey.__main__`, which calls :func:`main`.

The hub keeps the real stdlib
-----------------------------
The hub runs an asyncio (or uvloop) event loop; if asyncio's selector, self-pipe socket or
locks were green, the hub would wait on itself.  Before anything is replaced,
:func:`loop._core.originals.prepare` imports asyncio, uvloop and concurrent.futures, and the core
has bound the originals it needs (``_socket.socketpair``, the original ``DefaultSelector`` class,
``_thread`` functions, ``time.sleep``).  Every loop module that needs an original binds it at
its own import (the green modules bind the real functions they wrap), and this module imports
them all at its top, so that no patch can come first.

Import order
------------
Patching early (first line of the program, or ``python -m loop.monkey script.py``) is best, but
the common "asyncio / ssl / threading / concurrent.futures was imported first" case works:

* module attributes are looked up at call time by nearly all stdlib code, so replacing them
  fixes existing importers;
* the places where the stdlib *copied* a name at import time are fixed explicitly: threading's
  private ``_start_new_thread``/``_allocate_lock``/... copies (per Python version),
  ``ssl.SSLContext.sslsocket_class`` (so contexts created before the patch hand out green
  sockets), ``ssl.create_connection``, ``subprocess._PopenSelector`` (and
  ``subprocess.threading``, for ``Popen``'s waitpid lock),
  ``socketserver._ServerSelector``, ``multiprocessing.connection._WaitSelector``, the free
  module-level locks of ``concurrent.futures.thread`` and ``logging``;
* any *other* module that bound an original with ``from x import y`` before the patch cannot be
  fixed safely (it may want the original); :func:`patch_all` lists those in one
  :class:`MonkeyPatchWarning`.

Order of the patches
--------------------
os, thread, time, socket + dns, select + selectors, ssl (its ``create_connection`` is the green
socket's), subprocess (whose ``wait`` needs green os and time), signal, queue (needs green
threading).  ``aggressive=True`` (the default) also *removes* ``select.epoll``/``kqueue``/
``devpoll`` and the matching selector classes, so that libraries probing for them fall back to
the green ``poll``/``select``; the hub's own selector was bound before.

Events
------
Each ``patch_*`` of a stdlib module publishes :class:`loop.events.GeventWillPatchModuleEvent`
before and ``GeventDidPatchModuleEvent`` after; a subscriber raising ``DoNotPatch`` keeps the
module as it is.  :func:`patch_all` publishes the patch-all events around them and also hands
them to installed plugins (entry points), with any extra keyword arguments it was given; see
:mod:`loop.events`.  ``saved`` (module name -> {name: original}) is the registry's table, and
assigning a new dict to ``loop.monkey.saved`` replaces it (as gevent's tests do to start over).
"""
import functools
import importlib
import os as _os
import runpy
import select as _select
import selectors as _selectors
import ssl as _ssl
import subprocess as _subprocess
import sys
import types

# Imported here, before any patch can run, for their side effect: each module of loop binds the
# stdlib objects it needs (real locks, the real thread start, the functions the green stdlib
# wraps) when it is imported, so all of them must be loaded while the stdlib is still the
# stdlib.  (The green stdlib modules below are also what the patches install.)
import loop._core.api  # noqa: F401
import loop._core.interop  # noqa: F401
import loop.event  # noqa: F401
import loop.local  # noqa: F401
import loop.lock  # noqa: F401
import loop.pool  # noqa: F401
import loop.queue  # noqa: F401
import loop.threadpool  # noqa: F401
# The public mirrors copy their stdlib module's namespace when imported: loaded now, they keep
# the unpatched one whenever the program first imports them (loop.select.epoll stays).
import loop.os  # noqa: F401
import loop.select  # noqa: F401
import loop.selectors  # noqa: F401
import loop.signal  # noqa: F401
import loop.socket  # noqa: F401
import loop.ssl  # noqa: F401
import loop.time  # noqa: F401
from loop import events
from loop._core.originals import prepare
from loop._green import dns as _green_dns
from loop._green import os as _green_os
from loop._green import select as _green_select
from loop._green import selectors as _green_selectors
from loop._green import signal as _green_signal
from loop._green import socket as _green_socket
from loop._green import ssl as _green_ssl
from loop._green import subprocess as _green_subprocess
from loop._green import time as _green_time
from loop.monkey import _registry as _patch_registry
from loop.monkey import _thread_patches
from loop.monkey._registry import (MonkeyPatchWarning, get_original, is_module_patched,
                                  is_object_patched, patch_item, remove_item,
                                  warn_stale_references)

__all__ = ["patch_all", "patch_socket", "patch_dns", "patch_ssl", "patch_time", "patch_select",
           "patch_selectors", "patch_thread", "patch_queue", "patch_subprocess", "patch_os",
           "patch_signal", "patch_psycopg", "get_original", "is_module_patched",
           "is_object_patched", "is_anything_patched", "patch_module", "MonkeyPatchWarning",
           "saved", "main"]


class _MonkeyModule(types.ModuleType):
    """This module's type: ``saved`` reads and writes the patch registry's table."""

    @property
    def saved(self):
        return _patch_registry.saved

    @saved.setter
    def saved(self, value):
        _patch_registry.saved = value


sys.modules[__name__].__class__ = _MonkeyModule


def _prepare():
    """Import what the hub runs on (asyncio, uvloop, concurrent.futures) before the first
    replacement; the modules imported above bound their originals already."""
    prepare()


def _replaced_originals(module_name, names):
    module = importlib.import_module(module_name)
    found = {}
    for name in names:
        if is_object_patched(module_name, name):
            continue  # already green: code that bound it since then holds the green object
        value = getattr(module, name, None)
        if value is not None and not isinstance(value, (int, str, float, bool)):
            found[id(value)] = "%s.%s" % (module_name, name)
    return found


def _patch_module(module_name, green_module, names):
    module = importlib.import_module(module_name)
    for name in names:
        patch_item(module, name, getattr(green_module, name))


def is_anything_patched():
    """True if any patch was applied in this process."""
    return any(_patch_registry.saved.values())


def patch_module(target_module, source_module, items=None):
    """Replace ``items`` (default: ``source_module.__implements__``) of ``target_module`` with
    the objects of the same name in ``source_module``; recorded like every patch, so
    ``get_original`` still answers.  For third-party green replacements."""
    if items is None:
        items = getattr(source_module, "__implements__", None)
        if items is None:
            raise AttributeError("%r has no __implements__; pass items"
                                 % (source_module.__name__,))
    for name in items:
        patch_item(target_module, name, getattr(source_module, name))
    return True


def _announced(module_name, green_module_name):
    """Publish the will/did-patch-module events around a ``patch_*`` function; a subscriber
    raising ``DoNotPatch`` skips the patch (the function then returns False)."""
    def decorate(patch):
        @functools.wraps(patch)
        def announced(*args, **kwargs):
            if not events.subscribers:
                return patch(*args, **kwargs)
            _prepare()
            target = importlib.import_module(module_name)
            source = importlib.import_module(green_module_name)
            items = tuple(getattr(source, "__implements__", ()))
            try:
                events.notify(events.GeventWillPatchModuleEvent(module_name, source, target,
                                                                items))
            except events.DoNotPatch:
                return False
            result = patch(*args, **kwargs)
            events.notify(events.GeventDidPatchModuleEvent(module_name, source, target))
            return result
        return announced
    return decorate


# -- single patches ------------------------------------------------------------------------------

@_announced("time", "loop.time")
def patch_time():
    """``time.sleep`` yields to other green threads."""
    _prepare()
    _patch_module("time", _green_time, _green_time.__implements__)


@_announced("socket", "loop.socket")
def patch_socket(dns=True, aggressive=True):
    """Green ``socket.socket``, ``create_connection``, ``create_server``, ``socketpair``,
    ``fromfd``; with ``dns``, the resolver functions too."""
    _prepare()
    _patch_module("socket", _green_socket, _green_socket.__implements__)
    if dns:
        patch_dns()


def patch_dns():
    """``getaddrinfo``, ``gethostbyname(_ex)``, ``gethostbyaddr``, ``getnameinfo``,
    ``getfqdn`` run in a thread pool."""
    _prepare()
    _patch_module("socket", _green_dns, _green_dns.__implements__)


@_announced("select", "loop.select")
def patch_select(aggressive=True):
    """Green ``select.select`` and ``select.poll``; also patches ``selectors``."""
    _prepare()
    _patch_module("select", _green_select, _green_select.__implements__)
    if aggressive:
        for name in _green_select.__blocking__:
            remove_item(_select, name)
    patch_selectors(aggressive)


@_announced("selectors", "loop.selectors")
def patch_selectors(aggressive=True):
    """``selectors.DefaultSelector`` (and ``PollSelector``/``SelectSelector``) wait on the
    hub; stale copies in subprocess, socketserver and multiprocessing are re-pointed."""
    _prepare()
    green = _green_selectors.GreenSelector
    patch_item(_selectors, "DefaultSelector", green)
    if hasattr(_selectors, "PollSelector"):
        patch_item(_selectors, "PollSelector", green)
    patch_item(_selectors, "SelectSelector", _green_selectors.GreenSelectSelector)
    if aggressive:
        for name in _green_selectors.__blocking__:
            remove_item(_selectors, name)
    for module_name, attr in (("subprocess", "_PopenSelector"),
                              ("socketserver", "_ServerSelector"),
                              ("multiprocessing.connection", "_WaitSelector")):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            patch_item(module, attr, green)


@_announced("ssl", "loop.ssl")
def patch_ssl():
    """Green ``ssl.SSLSocket``; every ``SSLContext`` (also ones created before the patch)
    hands out green SSL sockets."""
    _prepare()
    original_context = get_original("ssl", "SSLContext")
    patch_item(original_context, "sslsocket_class", _green_ssl.SSLSocket)
    # ssl.SSLSocket itself stays the stdlib class: ssl._create() calls
    # super(SSLSocket, self) with the module-level name, which must be the stdlib class.  The
    # green class is its subclass, so isinstance(sock, ssl.SSLSocket) holds.
    patch_item(_ssl, "create_connection", _green_socket.create_connection)


@_announced("threading", "loop.thread")
def patch_thread(threading=True, _threading_local=True, logging=True):
    """Threads become green threads; ``threading`` locks, conditions, events, semaphores,
    ``local`` and ``get_ident`` are green."""
    _prepare()
    _thread_patches.patch_thread_modules(threading, _threading_local, logging)


@_announced("queue", "loop.queue")
def patch_queue():
    """``queue.SimpleQueue`` becomes the pure-Python one on green locks (``queue.Queue`` and
    friends use threading's locks, green once threads are patched)."""
    _prepare()
    _thread_patches.patch_queue()


@_announced("os", "loop.os")
def patch_os():
    """``os.waitpid``/``os.wait`` block only the calling green thread (``os.fork`` already
    re-initialises the hub in the child through ``os.register_at_fork``)."""
    _prepare()
    _patch_module("os", _green_os, _green_os.__implements__)


@_announced("subprocess", "loop.subprocess")
def patch_subprocess():
    """``subprocess.Popen`` pipes and ``communicate`` are green, and so is the lock ``wait``
    holds around ``waitpid`` (``wait`` itself needs :func:`patch_os` and :func:`patch_time`,
    which ``patch_all`` applies)."""
    _prepare()
    patch_item(_subprocess, "io", _green_subprocess.green_io)
    patch_item(_subprocess, "_PopenSelector", _green_selectors.GreenSelector)
    patch_item(_subprocess, "threading", _green_subprocess.green_threading)


@_announced("signal", "loop.signal")
def patch_signal():
    """``signal.signal`` handlers may wake and block green threads."""
    _prepare()
    _patch_module("signal", _green_signal, _green_signal.__implements__)


def patch_psycopg():
    """Make psycopg 3's waits cooperative.

    psycopg waits for its socket with ``psycopg.waiting.wait``, which is the C ``wait_c``
    (a blocking ``poll()`` in C) whenever the binary or C extension is installed -- unless it
    detects *gevent's* patch.  We point it at psycopg's own ``wait_poll``, which calls
    ``select.poll()`` at call time, i.e. loop's green poll; ``wait_conn`` (connecting) already
    uses ``selectors.DefaultSelector``, green after :func:`patch_selectors`.  Setting
    ``PSYCOPG_WAIT_FUNC=wait_poll`` in the environment before psycopg is imported has the same
    effect; :func:`patch_all` does one or the other.
    """
    _prepare()
    try:
        # Late on purpose: psycopg is optional, and only a caller that asks gets it imported.
        import psycopg.waiting as waiting
    except ImportError:
        return False
    patch_item(waiting, "wait", waiting.wait_poll)
    if hasattr(waiting, "_ready_poll"):
        patch_item(waiting, "_ready", waiting._ready_poll)
    return True


# -- everything ----------------------------------------------------------------------------------

_STALE_CHECK = {
    "socket": ["socket", "create_connection", "socketpair", "fromfd", "getaddrinfo",
               "gethostbyname"],
    "time": ["sleep"],
    "select": ["select", "poll"],
    "threading": ["Lock", "Event", "Condition", "Semaphore"],
    "_thread": ["allocate_lock", "start_new_thread", "get_ident"],
    "ssl": ["wrap_socket"],
}


def patch_all(socket=True, dns=True, time=True, select=True, thread=True, os=True, ssl=True,
              subprocess=True, signal=True, queue=True, psycopg=True, aggressive=True,
              warn_stale=True, **plugin_kwargs):
    """Apply every patch (each can be turned off by keyword).  Safe to call more than once.

    Other keyword arguments are not used here; they are handed to the patch-all events'
    subscribers and plugins (see :mod:`loop.events`), as gevent does."""
    arguments = dict(socket=socket, dns=dns, time=time, select=select, thread=thread, os=os,
                     ssl=ssl, subprocess=subprocess, signal=signal, queue=queue,
                     psycopg=psycopg, aggressive=aggressive)
    _prepare()
    events.notify_and_call_entry_points(events.GeventWillPatchAllEvent(arguments, plugin_kwargs))
    originals = {}
    if warn_stale:
        for module_name, names in _STALE_CHECK.items():
            originals.update(_replaced_originals(module_name, names))
    if os:
        patch_os()
    if thread:
        patch_thread()
    if time:
        patch_time()
    if socket:
        patch_socket(dns=dns, aggressive=aggressive)
    if select:
        patch_select(aggressive=aggressive)
    if ssl:
        patch_ssl()
    if subprocess:
        patch_subprocess()
    if signal:
        patch_signal()
    if queue and thread:
        patch_queue()
    if psycopg and select:
        if "psycopg.waiting" in sys.modules:
            patch_psycopg()
        else:
            # Not imported yet: psycopg reads this when it is, without us importing it now.
            _os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_poll")
    if warn_stale:
        # Only originals that this call actually replaced count as stale.
        replaced = {key: name for key, name in originals.items()
                    if is_object_patched(*name.split(".", 1))}
        warn_stale_references(replaced)
    events.notify_and_call_entry_points(
        events.GeventDidPatchBuiltinModulesEvent(arguments, plugin_kwargs))
    events.notify_and_call_entry_points(events.GeventDidPatchAllEvent(arguments, plugin_kwargs))


# -- python -m loop.monkey -----------------------------------------------------------------------

_USAGE = """usage: python -m loop.monkey [--no-NAME ...] (script.py | -m module) [args...]

Runs the script (or module) as __main__ after loop.monkey.patch_all().
--no-NAME turns one patch off (NAME: socket, dns, time, select, thread, os, ssl, subprocess,
signal, queue, psycopg, aggressive)."""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    options = {}
    while argv and argv[0].startswith("--"):
        flag = argv.pop(0)
        if flag in ("--help", "-h"):
            print(_USAGE)
            return 0
        if not flag.startswith("--no-"):
            print(_USAGE, file=sys.stderr)
            return 2
        options[flag[5:].replace("-", "_")] = False
    if not argv or argv == ["-m"]:
        print(_USAGE, file=sys.stderr)
        return 2
    patch_all(**options)
    if argv[0] == "-m":
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = _os.path.dirname(_os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    return 0

