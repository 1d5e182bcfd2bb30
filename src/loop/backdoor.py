"""An interactive Python console into a running process, over TCP (gevent's backdoor).

``BackdoorServer(("127.0.0.1", 5001), locals={"app": app}).start()`` and then
``nc 127.0.0.1 5001`` (or ``telnet``) gives a ``>>>`` prompt inside the process, for looking at
a live server.  Each connection gets its own console in its own green thread; the process keeps
serving while a console waits for input, and code typed at the prompt may itself wait (sleep,
make requests) like any green thread.

Safety: the console runs arbitrary code with the process's rights and there is no
authentication.  The listener therefore defaults to ``127.0.0.1`` (a bare port number, or a
host of ``""``, means the loopback address, not every interface); binding elsewhere must be
spelled out, and should only be done behind something that authenticates.

Output: ``print`` and tracebacks of the console's code go to the client.  ``sys.stdout`` and
``sys.stderr`` are replaced, while at least one console is connected, by a router that sends
the writes of a console's green thread to that client and everything else to the original
stream, so the rest of the process keeps its output.
``exit()``/``quit()``/Ctrl-D end the session, never the process.
"""
import sys

from loop._backdoor import BackdoorServer

__all__ = ["BackdoorServer", "main"]


def main(argv=None):
    """``python -m loop.backdoor [port]``: serve a console on 127.0.0.1 until interrupted."""
    argv = sys.argv[1:] if argv is None else argv
    port = int(argv[0]) if argv else 9000
    server = BackdoorServer(("127.0.0.1", port))
    server.start()
    sys.stderr.write("backdoor listening on %s:%d\n" % server.address[:2])
    server.serve_forever()


if __name__ == "__main__":
    main()
