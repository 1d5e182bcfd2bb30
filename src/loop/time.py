"""Green ``time`` (gevent's ``gevent.time``): the stdlib module's namespace with a cooperative
``sleep`` (:mod:`loop._green.time`)."""
import time as _stdlib_time

globals().update({name: value for name, value in vars(_stdlib_time).items()
                  if not name.startswith("__")})

from loop._green.time import __implements__, sleep  # noqa: E402

del _stdlib_time
