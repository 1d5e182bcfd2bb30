"""A plain threaded HTTP server (no loop) that answers slowly: the outbound service the framework
apps call.  ``GET /echo/<text>?delay=<seconds>`` sleeps, then answers ``<text>``.  Prints its port
and serves until its stdin closes."""
import http.server
import sys
import threading
import time
import urllib.parse


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        delay = float(urllib.parse.parse_qs(url.query).get("delay", ["0"])[0])
        time.sleep(delay)
        body = url.path.rsplit("/", 1)[-1].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), SlowHandler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()
