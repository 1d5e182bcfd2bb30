"""gunicorn worker classes: ``gunicorn -k loop.worker.GreenWorker app:app``.

:class:`GreenWorker` serves through :class:`loop.pywsgi.WSGIServer` (loop's parser and response
path, gunicorn's settings, logger and hooks); :class:`GreenGunicornWorker` runs gunicorn's own
request handling on loop's green threads (the counterpart of ``-k gevent``);
:data:`GreenWSGIWorker` is the earlier name of :class:`GreenWorker`.  How they work, and why:
:mod:`loop._gunicorn`.  Importing this module imports gunicorn (an optional dependency) and
nothing of loop's hub: the arbiter imports it before it forks.
"""
from loop._gunicorn.process import GreenGunicornWorker, GreenWorker, GreenWSGIWorker

__all__ = ["GreenWorker", "GreenGunicornWorker", "GreenWSGIWorker"]
