"""Green ``time.sleep`` (:mod:`loop.time`): it blocks only the calling green thread."""
import _thread
import threading as _threading
import time as _stdlib_time

from loop._core.hub import get_hub_if_exists, sleep as _hub_sleep

__all__ = ["sleep"]

#: The names loop.monkey.patch_time() replaces.
__implements__ = ["sleep"]

# The real ones: loop.monkey imports this module before it patches ``time`` and ``_thread``.
_real_sleep = _stdlib_time.sleep
_os_thread_ident = _thread.get_ident
_main_thread = _threading.main_thread()


def sleep(secs):
    """``time.sleep`` that blocks only the current green thread (``sleep(0)`` yields)."""
    if type(secs) is not float and type(secs) is not int:
        if isinstance(secs, (str, bytes, bytearray)) or secs is None or isinstance(secs, complex):
            return _real_sleep(secs)  # raises the stdlib's TypeError
        secs = float(secs)
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    if secs != secs:
        raise ValueError("Invalid value NaN (not a number)")
    if get_hub_if_exists() is None and _os_thread_ident() != _main_thread.ident:
        # An OS thread that never used loop (a thread pool worker, a thread started before the
        # patch): making a hub there just to sleep is wasteful; blocking it blocks only it.
        return _real_sleep(secs)
    _hub_sleep(secs)
