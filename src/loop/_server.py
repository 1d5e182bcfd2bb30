"""The green socket the servers hand to their handlers: read waits keep their registration.

Why
===
A server connection spends its life alternating ``recv`` -> ``EAGAIN`` -> wait -> ``recv``.  The
generic green socket waits through :meth:`loop._hub.Hub.wait_readable`, which registers the
descriptor with the event loop for that one wait and unregisters it afterwards.  On uvloop that
is a ``uv_poll`` handle created and closed (two ``epoll_ctl`` calls, a handle object, a dict
entry) per wait, and it was the largest single cost of an echo round trip in the profile.

:class:`ServerSocket` keeps one reader registration per connection instead, made at the first
wait and kept while the connection keeps waiting.  The loop's readiness callback wakes the green
thread that waits (through a :class:`loop._hub.Waiter`, the hub's public primitive: nothing here
switches fibers).  The event loop is level-triggered, so a registration nobody waits on would
report the same unread bytes again and again: when the callback finds no waiter (data arrived
while the handler was busy in the application), it unregisters, and the next wait registers
again.  Closing or detaching the socket unregisters first and wakes a waiting green thread with
``EBADF``, as the generic socket's ``cancel_wait`` does.

Writes keep the generic path: a server's sends rarely wait.

This belongs in the hub (``Hub.wait_readable`` could keep registrations the same way for every
green socket); until it does, the servers use this subclass.
"""
import errno

from loop import _socket as _green
from loop._hub import _TIMED_OUT, Waiter, current_hub
from loop.exceptions import ConcurrentObjectUseError

__all__ = ["ServerSocket"]

_c_fileno = _green._c.fileno
_c_recv = _green._c.recv
_c_send = _green._c.send
_c_recv_into = _green._c.recv_into


class _ReadWatch:
    """A kept reader registration of one descriptor on one hub."""
    __slots__ = ("hub", "fd", "waiter", "registered")

    def __init__(self, hub, fd):
        self.hub = hub
        self.fd = fd
        self.waiter = None
        self.registered = False

    def wait(self, timeout, timeout_exc):
        if self.waiter is not None:
            raise ConcurrentObjectUseError(
                "This socket (fd %d) is already being read by another green thread" % self.fd)
        hub = self.hub
        waiter = Waiter(hub)
        self.waiter = waiter
        if not self.registered:
            hub.loop.add_reader(self.fd, self._ready)
            self.registered = True
        hub.wakeup_sources += 1
        try:
            if waiter.wait(timeout) is _TIMED_OUT:
                raise timeout_exc
        finally:
            hub.wakeup_sources -= 1
            self.waiter = None

    def _ready(self):
        waiter = self.waiter
        if waiter is None or not waiter.waiting:
            self.unregister()       # level-triggered: do not report unread data forever
            return
        self.waiter = None
        waiter.wake()

    def unregister(self):
        if self.registered:
            self.registered = False
            try:
                self.hub.loop.remove_reader(self.fd)
            except (OSError, ValueError, RuntimeError):
                pass

    def close(self, error):
        self.unregister()
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.wake_error(error)


class ServerSocket(_green.socket):
    """A green socket whose read waits keep their event-loop registration (see above)."""

    __slots__ = ("_read_watch",)

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        _green.socket.__init__(self, family, type, proto, fileno)
        self._read_watch = None

    def _wait(self, readable, deadline):
        if not readable:
            return _green.socket._wait(self, readable, deadline)
        watch = self._read_watch
        if watch is None:
            fd = _c_fileno(self)
            if fd < 0:
                raise _green._closed_error()
            watch = self._read_watch = _ReadWatch(current_hub(), fd)
        elif watch.hub is not current_hub():
            # Used from another OS thread's hub: fall back to the generic one-shot wait.
            return _green.socket._wait(self, readable, deadline)
        if deadline is None:
            watch.wait(None, None)
        else:
            remaining = deadline - _green.monotonic()
            if remaining <= 0:
                raise _green._timed_out()
            watch.wait(remaining, _green._timed_out())

    def recv(self, *args):
        # The generic recv retries the syscall once more before waiting (a second EAGAIN and
        # exception per wait); here: one try, then wait, then read.
        try:
            return _c_recv(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        deadline = self._deadline()
        while True:
            self._wait(True, deadline)
            try:
                return _c_recv(self, *args)
            except BlockingIOError:
                pass

    def recv_into(self, *args):
        try:
            return _c_recv_into(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
        deadline = self._deadline()
        while True:
            self._wait(True, deadline)
            try:
                return _c_recv_into(self, *args)
            except BlockingIOError:
                pass

    def sendall(self, data, flags=0):
        # bytes that fit in the send buffer (nearly every response): one send, no memoryviews.
        if type(data) is bytes and self._timeout != 0.0:
            try:
                sent = _c_send(self, data, flags)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return None
            data = memoryview(data)[sent:]
        return _green.socket.sendall(self, data, flags)

    def try_send(self, data, flags=0):
        """Send what fits now without waiting; the number of bytes sent (0 if none)."""
        try:
            return _c_send(self, data, flags)
        except BlockingIOError:
            return 0

    def _forget_watch(self):
        watch = self._read_watch
        if watch is not None:
            self._read_watch = None
            watch.close(OSError(errno.EBADF, "Bad file descriptor: the socket was closed while "
                                             "a green thread was waiting on it"))

    def _real_close(self, _ss=_green._c):
        self._forget_watch()
        _green.socket._real_close(self, _ss)

    def detach(self):
        self._forget_watch()
        return _green.socket.detach(self)
