"""Green ``signal`` (gevent's ``gevent.signal``): the stdlib module's namespace, with ``signal``
installing handlers that may wake green threads and block, and ``getsignal`` returning them.

See :mod:`loop._green.signal` for why a plain handler misbehaves under a hub.
"""
import signal as _stdlib_signal

globals().update({name: value for name, value in vars(_stdlib_signal).items()
                  if not name.startswith("__")})

from loop._green.signal import __implements__, getsignal, signal  # noqa: E402

del _stdlib_signal
