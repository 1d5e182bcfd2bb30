"""gevent's public-API tests that fail under loop, each with its reason.

Keys are test ids as ``run_gevent_suite.py`` prints them (``file.Class.test``, or the file name
for a script-style file).  Reasons start with one of:

* ``gevent-internal:`` the test asserts a detail of gevent's implementation (an exact repr, a
  libev/libuv watcher, a private module or attribute) rather than behaviour a port relies on;
* ``difference:`` loop behaves differently; the reason says how, and whether it is deliberate.
"""

KNOWN_FAILURES = {
}
