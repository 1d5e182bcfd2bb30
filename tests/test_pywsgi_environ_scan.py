"""The environ of a request the C scanner read (its ``cgi`` dict) against the one pywsgi builds
from the request's fields in Python: for any plain request, and any server settings that
touch the environ, the two must be equal."""
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop import pywsgi
from loop._protocols import http
from loop._protocols.http import END_OF_MESSAGE, NEED_DATA, Request, RequestReader

pytest.importorskip("loop._protocols._http_head")

pytestmark = pytest.mark.timeout(120)


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]


def environs(data, **server_options):
    """(environ via the scanner's dict, environ via the Python loop) for the first request in
    ``data``, or None when the scanner does not take it."""
    reader = RequestReader()
    reader.feed(data)
    request = reader.next_event()
    if not isinstance(request, Request) or request.cgi is None:
        return None
    environ_class = server_options.pop("environ_class", None)
    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, **server_options)
    if environ_class is not None:
        server.environ_class = environ_class
    results = []
    ours, theirs = socket.socketpair()
    try:
        for cgi in (request.cgi, None):
            handler = pywsgi.WSGIHandler(server, ours, ("10.0.0.1", 4321))
            handler.reader.feed(data)
            taken = handler.reader.next_event()
            taken.cgi = cgi
            environ = handler._environ_for(taken)
            environ.pop("wsgi.input")
            results.append((environ, handler.reader.next_event() in (NEED_DATA, END_OF_MESSAGE)))
            handler._forget()
    finally:
        ours.close()
        theirs.close()
    return results


def test_a_plain_request_gets_the_same_environ_both_ways():
    data = (b"GET /a%20b%2/x%zz%C3%A9?q=1%20&r HTTP/1.1\r\nHost: h:8\r\nX-A: 1\r\nx-a: 2\r\n"
            b"Cookie: a=1\r\nCookie: b=2\r\nX_Spoof: z\r\nContent-Type: text/x\r\n"
            b"Content-Length: 3\r\n\r\nabc")
    (scanned, _), (built, _) = environs(data)
    assert scanned == built
    assert scanned["PATH_INFO"] == "/a b%2/x%zz\xc3\xa9"
    assert scanned["HTTP_X_A"] == "1, 2" and scanned["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOF" not in scanned and scanned["CONTENT_LENGTH"] == "3"


@pytest.mark.parametrize("options", [
    {"environ": {"HTTP_X_A": "from-the-server"}},
    {"environ": {"CONTENT_TYPE": "preset"}},
    {"script_name": "/app"},
    {"script_name": "/a"},
    {"environ_class": pywsgi.SecureEnviron},
])
def test_server_settings_that_touch_the_environ(options):
    data = b"GET /app/x?y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Type: t\r\n\r\n"
    (scanned, _), (built, _) = environs(data, **options)
    assert type(scanned) is type(built)
    assert dict(scanned) == dict(built)


_NAME = st.text(alphabet="abcXYZ-_019!#$%&'*+.^`|~", min_size=1, max_size=8)
_VALUE = st.text(alphabet="ab Z09%;,=\t\"<>~", max_size=10).map(str.strip)
_PATH = st.text(alphabet="/aZ09-._~!$&'()*+,;=:@%?", max_size=25)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PATH, st.lists(st.tuples(st.sampled_from(["", "Cookie", "Content-Length", "X-A"]),
                                 _NAME, _VALUE), max_size=6),
       st.sampled_from(["", "/a", "/a/b"]))
def test_generated_requests_get_the_same_environ_both_ways(path, fields, script_name):
    head = "GET /" + path + " HTTP/1.1\r\nHost: h\r\n"
    for fixed, name, value in fields:
        if fixed == "Content-Length":
            continue
        head += (fixed or name) + ": " + value + "\r\n"
    data = (head + "\r\n").encode("latin-1")
    both = environs(data, script_name=script_name)
    if both is not None:
        assert both[0] == both[1]
