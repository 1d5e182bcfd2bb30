"""Serve a WSGI app with loop.pywsgi.WSGIServer after loop.monkey.patch_all().

    python serve_wsgi.py module:attribute

Prints the port, then serves until it is terminated."""
from loop import monkey

monkey.patch_all()

import importlib  # noqa: E402
import sys  # noqa: E402

from loop.pywsgi import WSGIServer  # noqa: E402


def main(target):
    module_name, _, attribute = target.partition(":")
    application = getattr(importlib.import_module(module_name), attribute)
    server = WSGIServer(("127.0.0.1", 0), application, log=False, error_log=sys.stderr)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
