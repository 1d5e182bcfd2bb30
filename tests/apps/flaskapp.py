"""A small Flask app for the framework tests: ``/visit/<n>?http=<s>&label=<x>`` calls the slow
outbound HTTP service (``FLASKAPP_SLOW_URL``) with ``requests`` and renders a Jinja template;
every part of the answer depends on the request, so a mixed-up answer shows."""
import os

import flask
import requests

app = flask.Flask(__name__)
app.config["PROPAGATE_EXCEPTIONS"] = True
SLOW_URL = os.environ.get("FLASKAPP_SLOW_URL", "")

TEMPLATE = ("visit {{ number }} label={{ label }} echo={{ echo }} "
            "path={{ request.path }} user={{ g.user }}")


@app.before_request
def remember_user():
    flask.g.user = "u%s" % (flask.request.view_args or {}).get("number", "-")


@app.route("/visit/<int:number>")
def visit(number):
    echo = ""
    http_wait = flask.request.args.get("http")
    if http_wait:
        response = requests.get("%s/echo/%d" % (SLOW_URL, number),
                                params={"delay": http_wait}, timeout=30)
        response.raise_for_status()
        echo = response.text
    return flask.render_template_string(TEMPLATE, number=number, echo=echo,
                                        label=flask.request.args.get("label", ""))


@app.route("/ping")
def ping():
    return "pong"
