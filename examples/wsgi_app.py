"""A small WSGI application, served by :class:`loop.pywsgi.WSGIServer` or by gunicorn.

    python examples/wsgi_app.py [--host H] [--port P]
    gunicorn -k loop.worker.GreenWorker examples.wsgi_app:app

Routes: ``/`` (hello), ``/sleep?seconds=0.5`` (a slow request: green threads keep serving the
others meanwhile), ``/echo`` (POST: the body back), ``/stream`` (a chunked response).
"""
import argparse
import json
from urllib.parse import parse_qs

import loop


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        return _respond(start_response, "200 OK", b"hello from loop\n")
    if path == "/sleep":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        seconds = min(float(query.get("seconds", ["0.5"])[0]), 10.0)
        loop.sleep(seconds)             # parks only this request's green thread
        return _respond(start_response, "200 OK", f"slept {seconds}\n".encode())
    if path == "/echo" and environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        return _respond(start_response, "200 OK", body, "application/octet-stream")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])   # no length: chunked
        return (f"line {n}\n".encode() for n in range(5))
    if path == "/environ":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        return _respond(start_response, "200 OK", body, "application/json")
    return _respond(start_response, "404 Not Found", b"not found\n")


def _respond(start_response, status, body, content_type="text/plain"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def main(argv=None):
    import signal

    from loop.pywsgi import WSGIServer
    parser = argparse.ArgumentParser(description="serve examples/wsgi_app.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = WSGIServer((args.host, args.port), app)
    server.start()
    host, port = server.address[:2]
    print(f"serving on http://{host}:{port}/", flush=True)
    loop.signal_handler(signal.SIGTERM, server.stop, 2.0)
    loop.signal_handler(signal.SIGINT, server.stop, 2.0)
    server.serve_forever()


if __name__ == "__main__":
    main()
