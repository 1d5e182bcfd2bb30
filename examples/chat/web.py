"""The web side: a WSGI app that serves the chat page and its WebSocket.

``GET /`` returns ``static/index.html``; its JavaScript opens ``/ws`` and speaks the same line
protocol as ``nc`` users (it sends lines such as ``/join rust`` or ``hello``) and receives JSON
events (:meth:`chat.events.Event.as_json`).  ``GET /stats.json`` returns the server counters.
The app runs under :class:`loop.pywsgi.WSGIServer`, one green thread per connection; a
WebSocket connection keeps its green thread for its whole life and runs the same
:func:`chat.connection.serve` as a TCP client; how many may do so, and for how long a quiet one
is kept, is :mod:`chat.admission`'s policy.
"""
import json
import os

from loop import websocket

from chat import events
from chat.connection import serve
from chat.limits import MAX_LINE_BYTES
from chat.session import Session

__all__ = ["WebSocketTransport", "make_app"]

_STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class WebSocketTransport:
    def __init__(self, ws):
        self.ws = ws

    def receive_line(self, guard, before_wait=None):
        if before_wait is not None:
            before_wait()
        message = self.ws.receive()
        if message is None:
            return None
        if not isinstance(message, str):
            guard.strike("binary messages are not supported; send text lines")
        return guard.check_text(message)

    def send_events(self, batch):
        # One frame per event: the page's script reads one JSON event per message.
        send = self.ws.send
        try:
            for text in batch:
                send(text)
        except websocket.ConnectionClosed as exc:
            raise OSError(str(exc)) from None

    def close(self, clean, reason):
        ws = self.ws
        if clean:
            # 1001 "going away" when the server shuts down, 1008 "policy violation" for a
            # flooder, 1000 otherwise; the reason string is shown by the page.
            code = {"server shutting down": 1001, "flooding": 1008}.get(reason, 1000)
            ws.close(code, reason[:100])
        else:
            ws.abort(1006, reason[:100])


def _static(name, content_type):
    with open(os.path.join(_STATIC, name), "rb") as f:
        body = f.read()
    return body, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                  ("Cache-Control", "no-cache")]


def make_app(chat):
    page, page_headers = _static("index.html", "text/html; charset=utf-8")
    admission = chat.admission
    limits = chat.limits

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/ws":
            if not websocket.is_websocket_request(environ):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"this URL speaks WebSocket\n"]
            if not admission.open_web_client():
                start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                           ("Retry-After", "30")])
                return [b"the chat is full, try again later\n"]
            try:
                try:
                    ws = websocket.upgrade(
                        environ, max_message_size=4 * MAX_LINE_BYTES,
                        send_timeout=limits.send_timeout, ping_interval=limits.ping_interval,
                        idle_timeout=limits.idle_timeout)
                except websocket.WebSocketError as exc:
                    start_response("400 Bad Request", [("Content-Type", "text/plain")])
                    return [str(exc).encode() + b"\n"]
                address = (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"))
                serve(Session(chat, "web", address, events.Event.as_json),
                      WebSocketTransport(ws))
            finally:
                admission.close_web_client()
            return []
        if path in ("/", "/index.html") and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            start_response("200 OK", list(page_headers))
            return [page] if environ["REQUEST_METHOD"] == "GET" else []
        if path == "/stats.json":
            body = json.dumps(chat.stats.as_dict()).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app
