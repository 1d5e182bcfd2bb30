"""gevent.pywsgi names a port may use directly: Input over a file-like object, MAX_REQUEST_LINE,
and the request details gevent's server gives applications."""
from io import BytesIO

import pytest

from loop import pywsgi
from loop.pywsgi import Input


def chunked(*parts, last=True):
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    return body + (b"0\r\n\r\n" if last else b"")


def test_input_over_a_file_reads_a_content_length_body_and_no_further():
    rfile = BytesIO(b"hello\nworld!NEXT REQUEST")
    body = Input(rfile, content_length=12)
    assert body.readline() == b"hello\n"
    assert body.read() == b"world!"
    assert body.read() == b""
    assert rfile.read() == b"NEXT REQUEST"


def test_input_over_a_file_decodes_a_chunked_body_and_stops_at_its_end():
    rfile = BytesIO(chunked(b"ab", b"cd\nef") + b"NEXT")
    body = Input(rfile, chunked_input=True)
    assert list(body) == [b"abcd\n", b"ef"]
    assert rfile.read() == b"NEXT"


@pytest.mark.parametrize("data, framing", [
    (b"1", {"content_length": 2}),                       # shorter than announced
    (chunked(b"1", b"2", last=False), {"chunked_input": True}),   # no last chunk
    (b"2\r\n1", {"chunked_input": True}),                 # a chunk cut short
    (b"zz\r\nab\r\n0\r\n\r\n", {"chunked_input": True}),  # not a chunk size
])
@pytest.mark.parametrize("how", ["read", "read(10)", "readline"])
def test_input_over_a_file_raises_oserror_for_a_short_or_malformed_body(data, framing, how):
    body = Input(BytesIO(data), **framing)
    with pytest.raises(OSError):
        if how == "read(10)":
            body.read(10)
        else:
            getattr(body, how)()


def test_input_over_a_file_takes_a_content_length_beyond_32_bits():
    line = b"a" * (pywsgi.MAX_REQUEST_LINE + 10) + b"\n"
    body = Input(BytesIO(b"asdf\n" + line), content_length=25 * 10 ** 9)
    assert body.readline() == b"asdf\n"
    assert body.readline(25 * 10 ** 9) == line


def test_max_request_line_is_the_servers_default():
    server = pywsgi.WSGIServer(("127.0.0.1", 0), lambda environ, start_response: [])
    assert server.max_request_line == pywsgi.MAX_REQUEST_LINE == 8190


@pytest.mark.parametrize("body", [
    [bytearray(b"hello")],
    [memoryview(b"hello")],
    (part for part in (bytearray(b"hel"), memoryview(b"lo"))),
])
def test_bytearray_and_memoryview_body_chunks_are_sent_as_bytes(body):
    from wsgi_helpers import get, serving
    items = list(body)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return items if len(items) == 1 else iter(items)

    with serving(app) as server:
        response = get(server)
    assert response.status == 200
    assert response.body == b"hello"


def test_repeated_cookie_headers_are_joined_as_one_cookie_list():
    from wsgi_helpers import get, serving

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["HTTP_COOKIE"].encode()]

    with serving(app) as server:
        response = get(server, headers=b"Cookie: a=1\r\nCookie: b=2\r\n")
    assert response.body == b"a=1; b=2"


def test_secure_environ_hides_values_unless_told_otherwise():
    environ = pywsgi.SecureEnviron({"HTTP_COOKIE": "session=secret"})
    assert "secret" not in repr(environ) and "secret" not in str(environ)
    assert "keys: 1" in repr(environ)
    environ.whitelist_keys = ("REQUEST_METHOD",)
    environ["REQUEST_METHOD"] = "GET"
    assert repr(environ) == repr({"HTTP_COOKIE": "<MASKED>", "REQUEST_METHOD": "GET"})
    environ.secure_repr = False
    assert repr(environ) == repr(dict(environ))
    del environ.secure_repr, environ.whitelist_keys
    assert "secret" not in repr(environ)


def test_environ_types_copy_as_themselves_and_pickle_as_dicts():
    import copy
    import pickle
    for cls in (pywsgi.Environ, pywsgi.SecureEnviron):
        environ = cls({"key": "value"})
        assert type(environ.copy()) is cls
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(environ, protocol)
            assert b"Environ" not in data
            assert type(pickle.loads(data)) is dict and pickle.loads(data) == environ
        assert copy.copy(environ) == environ


def test_server_builds_each_environ_with_its_environ_class():
    from wsgi_helpers import get, serving
    seen = []

    def app(environ, start_response):
        seen.append((type(environ), "secret" in repr(environ)))
        start_response("200 OK", [])
        return [b"ok"]

    with serving(app) as server:
        assert get(server, headers=b"Cookie: s=secret\r\n").status == 200
        server.environ_class = pywsgi.SecureEnviron
        assert get(server, headers=b"Cookie: s=secret\r\n").status == 200
    assert seen == [(dict, True), (pywsgi.SecureEnviron, False)]


@pytest.mark.parametrize("status, headers, message", [
    ("200 OK\r\nX-Injected: 1", [], "carriage return or newline in status"),
    ("200 OK", [("X-Test", "hi\r\nX-Injected: 1")], "carriage return or newline in header value"),
    ("200 OK", [("X-Test\r\n", "hi")], "carriage return or newline in header name"),
])
def test_response_splitting_is_refused_in_start_response_in_gevents_words(status, headers,
                                                                           message):
    from wsgi_helpers import get, serving
    raised = []

    def app(environ, start_response):
        try:
            start_response(status, headers)
        except ValueError as exc:
            raised.append(exc)
            raise
        return [b"never sent"]

    with serving(app, error_log=False) as server:
        response = get(server)
    assert response.status == 500 and b"X-Injected" not in response.body
    assert [exc.args for exc in raised] == [(message, status if "status" in message else
                                            headers[0][1] if "value" in message else
                                            headers[0][0])]


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_a_list_body_of_several_pieces_is_sent_with_its_content_length(version):
    from wsgi_helpers import Client, connect, serving

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/big":
            return [b"x" * (1 << 19)] * 3           # above the join limit: streamed
        return [b"hello ", b"world"]

    with serving(app) as server:
        client = Client(connect(server))
        keep_alive = b"Connection: keep-alive\r\n" if version == b"HTTP/1.0" else b""
        client.send(b"GET / " + version + b"\r\nHost: x\r\n" + keep_alive + b"\r\n")
        response = client.read_response()
        assert response.body == b"hello world"
        assert response.header("Content-Length") == "11"
        assert response.header("Transfer-Encoding") is None
        assert not response.closes                  # HTTP/1.0 keep-alive kept
        client.send(b"GET /big " + version + b"\r\nHost: x\r\n" + keep_alive + b"\r\n")
        response = client.read_response()
        assert len(response.body) == 3 << 19
        assert response.header("Content-Length") is None


def test_a_logger_like_log_is_written_through_a_logging_log_adapter():
    from wsgi_helpers import get, serving

    class Recorder:
        mood = "calm"

        def __init__(self):
            self.logged = []

        def log(self, level, message):
            self.logged.append((level, message))

    recorder = Recorder()

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"hello"]

    with serving(app, log=recorder) as server:
        assert isinstance(server.log, pywsgi.LoggingLogAdapter)
        assert get(server).status == 200
        server.log.mood = "busy"                # attributes are the logger's own
        assert recorder.mood == "busy" and server.log.mood == "busy"
        del server.log.mood
        assert recorder.mood == "calm"
    (level, line), = recorder.logged
    assert level == 20 and '"GET / HTTP/1.1" 200 5' in line and not line.endswith("\n")
