"""Name resolution that never blocks the hub: the C resolver runs in a pool of real threads.

``getaddrinfo`` and friends call the C library, which may read files, talk to a DNS server and
wait seconds.  Each lookup therefore runs in a worker thread of a dedicated
:class:`loop.threadpool.ThreadPool` while the calling green thread waits on the hub.

Why a dedicated pool, and a large one: gevent's default resolver shares the hub's pool of 10
threads, so the eleventh concurrent lookup queues behind the first ten (and behind any unrelated
blocking job).  Lookups are nearly always waiting on the network, not using CPU, so this pool
grows on demand up to ``LOOP_RESOLVER_THREADS`` (default 128) threads; idle ones cost a parked
thread each.

Fast path: a numeric address (``"127.0.0.1"``, ``"::1"``, ``None``) needs no lookup, so it is
resolved in the calling green thread without a thread hop.  It still yields once (``sleep(0)``):
a lookup is where gevent's resolvers switch, and code that opens connections in a loop
(``create_connection`` starts with one) relies on that to let other green threads, timers and IO
in; without it, a burst of green threads connecting to an address would run back to back.

The functions wrap the *original* stdlib functions, bound at import time (the monkey patch
imports this module before it replaces anything), so their results and errors (``gaierror``,
``herror``, enum-typed ``getaddrinfo`` tuples) are exactly the stdlib's.
"""
import _socket
import os
import socket as _stdlib_socket

from loop._core.hub import get_hub, get_hub_if_exists, sleep as _hub_sleep
from loop._core.threadpool import ThreadPool
from loop._switch import getcurrent

__all__ = ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo",
           "getfqdn", "resolver_pool", "is_numeric_host"]

#: The names loop.monkey.patch_dns() replaces in the stdlib ``socket`` module.
__implements__ = ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                  "getnameinfo", "getfqdn"]

# The originals (the stdlib module is not patched yet when this is imported).
_original_getaddrinfo = _stdlib_socket.getaddrinfo
_c_gethostbyname = _socket.gethostbyname
_c_gethostbyname_ex = _socket.gethostbyname_ex
_c_gethostbyaddr = _socket.gethostbyaddr
_c_getnameinfo = _socket.getnameinfo
_inet_pton = _socket.inet_pton

_pool = None


def resolver_pool():
    """The thread pool that runs lookups (created on first use)."""
    global _pool
    if _pool is None:
        _pool = ThreadPool(int(os.environ.get("LOOP_RESOLVER_THREADS", "128")))
    return _pool


def _in_thread(func, *args):
    hub = get_hub()
    if hub.fiber is getcurrent():
        # Called from an asyncio callback in the hub: we cannot wait; resolve inline, which is
        # what the stdlib would have done.
        return func(*args)
    return resolver_pool().spawn(func, *args).get()


def is_numeric_host(host):
    """True when ``host`` needs no resolver: None, an IPv4 or IPv6 literal (with %scope)."""
    if host is None:
        return True
    if isinstance(host, (bytes, bytearray)):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    try:
        _inet_pton(_socket.AF_INET, host)
        return True
    except (OSError, ValueError):
        pass
    try:
        _inet_pton(_socket.AF_INET6, host.partition("%")[0])
        return True
    except (OSError, ValueError):
        return False


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """:func:`socket.getaddrinfo` that resolves names in a worker thread."""
    if is_numeric_host(host) and (port is None or isinstance(port, int)):
        result = _original_getaddrinfo(host, port, family, type, proto, flags)
        hub = get_hub_if_exists()  # none: no other green thread in this OS thread to let in
        if hub is not None and hub.fiber is not getcurrent():  # not asyncio code on it
            _hub_sleep(0)
        return result
    return _in_thread(_original_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname):
    if is_numeric_host(hostname) and ":" not in str(hostname):
        return _c_gethostbyname(hostname)
    return _in_thread(_c_gethostbyname, hostname)


def gethostbyname_ex(hostname):
    return _in_thread(_c_gethostbyname_ex, hostname)


def gethostbyaddr(ip_address):
    return _in_thread(_c_gethostbyaddr, ip_address)


def getnameinfo(sockaddr, flags):
    return _in_thread(_c_getnameinfo, sockaddr, flags)


def getfqdn(name=""):
    return _in_thread(_blocking_getfqdn, name)


def _blocking_getfqdn(name):
    # The stdlib's algorithm, calling the C functions directly: the stdlib version looks
    # gethostbyaddr up in the (maybe patched) socket module, and a worker thread must not wait
    # on a hub.
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _socket.gethostname()
    try:
        hostname, aliases, _addresses = _c_gethostbyaddr(name)
    except OSError:
        return name
    for candidate in [hostname] + list(aliases):
        if "." in candidate:
            return candidate
    return hostname
