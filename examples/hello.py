"""The smallest app to serve with loop:

    python -m loop.pywsgi examples.hello:app --bind 127.0.0.1:8000
    gunicorn -k loop.worker.GreenWorker examples.hello:app     (once the worker lands)
"""


def app(environ, start_response):
    body = b"Hello from loop\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
