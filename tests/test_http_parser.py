"""The sans-IO request reader, without sockets: events, limits, splits and fuzzing."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop._protocols import http
from loop._protocols.http import (CONNECTION_CLOSED, END_OF_MESSAGE, NEED_DATA, ProtocolError, Request,
                        RequestReader, split_target)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True, params=["scanner", "llhttp-only"])
def head_scanner(request, monkeypatch):
    """Every test here runs twice: with the C scanner taking the plain requests
    (tests/test_http_head_scan.py), and with llhttp reading everything, as without the C
    extension."""
    if request.param == "llhttp-only":
        monkeypatch.setattr(http, "_scan_head", None)
    elif http._scan_head is None:
        pytest.skip("the C head scanner is not built")
    return request.param


def events(reader):
    """All events available now, stopping at NEED_DATA (not included)."""
    out = []
    while True:
        event = reader.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if event is CONNECTION_CLOSED:
            return out


def parse(*chunks, **limits):
    """Feed the non-empty chunks (feeding b"" would mean EOF) and collect the events."""
    reader = RequestReader(**limits)
    for chunk in chunks:
        if chunk:
            reader.feed(chunk)
    return reader, events(reader)


def summary(event_list):
    """Events as comparable plain data, body pieces joined per message."""
    out = []
    for event in event_list:
        if isinstance(event, Request):
            out.append(("request", event.method, event.target, event.version,
                        tuple(event.headers), event.content_length, event.chunked,
                        event.keep_alive, event.expect_continue, event.upgrade))
        elif isinstance(event, bytes):
            if out and out[-1][0] == "body":
                out[-1] = ("body", out[-1][1] + event)
            else:
                out.append(("body", event))
        else:
            out.append(event)
    return out


def error_of(*chunks, **limits):
    reader = RequestReader(**limits)
    for chunk in chunks:
        reader.feed(chunk)
    with pytest.raises(ProtocolError) as info:
        while reader.next_event() is not NEED_DATA:
            pass
    return info.value


# -- the normal path ----------------------------------------------------------------------------

def test_simple_get():
    reader, got = parse(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1 \r\n\r\n")
    request, end = got
    assert end is END_OF_MESSAGE
    assert request.method == "GET"
    assert request.target == b"/a?b=c"
    assert request.version == "HTTP/1.1"
    assert request.headers == [(b"Host", b"x"), (b"X-A", b"1")]   # trailing OWS stripped
    assert request.keep_alive and not request.has_body
    assert request.content_length is None and not request.chunked


def test_content_length_body_streamed():
    reader = RequestReader()
    reader.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    request, body = events(reader)
    assert request.content_length == 6 and body == b"abc"
    reader.feed(b"def")
    assert events(reader) == [b"def", END_OF_MESSAGE]


def test_chunked_body_and_trailers_dropped():
    _, got = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    request = got[0]
    assert request.chunked and request.content_length is None
    assert summary(got[1:]) == [("body", b"abcde"), END_OF_MESSAGE]
    assert all(name != b"X-Trailer" for name, _ in request.headers)


def test_pipelined_requests_in_order():
    _, got = parse(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz"
                   b"GET /3 HTTP/1.0\r\n\r\n")
    s = summary(got)
    assert [e[2] for e in s if isinstance(e, tuple) and e[0] == "request"] == [b"/1", b"/2", b"/3"]
    assert ("body", b"z") in s
    assert s.count(END_OF_MESSAGE) == 3


def test_error_in_later_request_comes_after_earlier_events():
    reader = RequestReader()
    reader.feed(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost: x\nX: y\r\n\r\n")
    assert reader.next_event().target == b"/ok"
    assert reader.pending_body_error() is None
    assert reader.next_event() is END_OF_MESSAGE
    with pytest.raises(ProtocolError) as info:
        reader.next_event()
    assert info.value.status == 400
    with pytest.raises(ProtocolError):      # and it stays raised
        reader.next_event()


def test_pending_body_error_known_with_head():
    reader = RequestReader()
    reader.feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert isinstance(reader.next_event(), Request)
    assert reader.pending_body_error().status == 400


@pytest.mark.parametrize("raw,keep_alive", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: te\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive(raw, keep_alive):
    _, got = parse(raw)
    assert got[0].keep_alive is keep_alive


def test_expect_continue_and_upgrade_flags():
    _, got = parse(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n"
                   b"\r\n")
    assert got[0].expect_continue
    reader, got = parse(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
                        b"Upgrade: websocket\r\n\r\n\x81\x80abcd")
    assert got[0].upgrade and got[1] is END_OF_MESSAGE
    assert reader.upgraded_data == b"\x81\x80abcd"
    reader.feed(b"GET / HTTP/1.1\r\n\r\n")     # ignored after an upgrade
    assert events(reader) == []


def test_eof_between_and_inside_requests():
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    reader.feed(b"")
    assert events(reader)[-1] is CONNECTION_CLOSED
    error = error_of(b"GET / HTTP/1.1\r\nHost: x\r\n", b"")
    assert error.status is None
    error = error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", b"")
    assert error.status is None


def test_split_target():
    assert split_target(b"/a/b?c=d?e") == (b"/a/b", b"c=d?e")
    assert split_target(b"http://host:80/p?q") == (b"/p", b"q")
    assert split_target(b"HTTPS://host") == (b"/", b"")
    assert split_target(b"*") == (b"*", b"")
    assert split_target(b"//double") == (b"//double", b"")


def test_tolerated_repeated_spaces_in_request_line():
    # RFC 9112 section 3 lets a server split the request line on whitespace; llhttp does.
    _, got = parse(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got[0].target == b"/"


# -- limits ------------------------------------------------------------------------------------------

def test_request_line_limit_streamed_and_whole():
    assert error_of(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n", max_request_line=100).status == 414
    chunks = [b"GET /"] + [b"a" * 50] * 10
    assert error_of(*chunks, max_request_line=100).status == 414


def test_header_limits():
    head = b"GET / HTTP/1.1\r\nHost: x\r\n"
    assert error_of(head + b"X: " + b"v" * 500 + b"\r\n\r\n", max_header_bytes=400).status == 431
    # an endless header value trickled in never completes a callback: still bounded
    chunks = [head, b"X: "] + [b"v" * 1000] * 100
    assert error_of(*chunks, max_header_bytes=4000).status == 431
    many = head + b"".join(b"H%d: v\r\n" % i for i in range(20)) + b"\r\n"
    assert error_of(many, max_headers=10).status == 431


def test_body_limits():
    assert error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
                    max_body=10).status == 413
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert error_of(chunked + b"8\r\n12345678\r\n8\r\n12345678\r\n", max_body=10).status == 413
    reader, got = parse(chunked + b"a\r\n0123456789\r\n0\r\n\r\n", max_body=10)
    assert summary(got[1:]) == [("body", b"0123456789"), END_OF_MESSAGE]


@pytest.mark.parametrize("raw,status", [
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
     400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", None),
])
def test_statuses(raw, status):
    if status is None:
        _, got = parse(raw)
        assert got[-1] is END_OF_MESSAGE
    else:
        assert error_of(raw).status == status


# -- property tests ---------------------------------------------------------------------------

VALID_REQUESTS = [
    b"GET /path?query=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
    b"User-Agent: test\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
    b"Content-Type: text/plain\r\n\r\nhello world",
    b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer-Field: x\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]


@pytest.mark.parametrize("raw", VALID_REQUESTS)
def test_every_split_parses_identically(raw):
    _, expected = parse(raw)
    expected = summary(expected)
    assert expected and expected[-1] is END_OF_MESSAGE
    for i in range(len(raw) + 1):
        _, got = parse(raw[:i], raw[i:])
        assert summary(got) == expected, i


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_REQUESTS), st.lists(st.integers(min_value=0, max_value=400),
                                                 max_size=8))
def test_random_multi_splits_parse_identically(raw, cuts):
    _, expected = parse(raw)
    points = sorted({min(c, len(raw)) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0] + points, points + [len(raw)])]
    _, got = parse(*chunks)
    assert summary(got) == summary(expected)


_FRAGMENTS = st.sampled_from([
    b"GET ", b"POST ", b"/", b"/x?y", b"*", b"http://h/", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0",
    b"\r\n", b"\n", b"\r", b"Host: h", b"Content-Length: ", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip", b"Connection: close", b"Connection: upgrade", b"Upgrade: x",
    b"Expect: 100-continue", b"0", b"5", b"ffffffffffffffffff", b";a=b", b"abcde", b": ", b" ",
    b"\t", b"\x00", b"\x7f", b"\xff", b"\r\n\r\n",
])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=12)), max_size=40),
       st.integers(min_value=1, max_value=64))
def test_fuzz_only_clean_protocol_errors(fragments, chunk_size):
    """Arbitrary bytes, in arbitrary pieces: events or ProtocolError, nothing else ever."""
    data = b"".join(fragments)
    reader = RequestReader(max_request_line=200, max_header_bytes=400, max_body=1000)
    in_message = False
    try:
        for i in range(0, len(data), chunk_size):
            reader.feed(data[i:i + chunk_size])
            while True:
                event = reader.next_event()
                if event is NEED_DATA:
                    break
                # the event grammar: Request, bytes*, END_OF_MESSAGE
                if isinstance(event, Request):
                    assert not in_message
                    assert event.version in ("HTTP/1.0", "HTTP/1.1")
                    assert not (event.chunked and event.content_length is not None)
                    in_message = True
                elif isinstance(event, bytes):
                    assert in_message
                else:
                    assert event is END_OF_MESSAGE and in_message
                    in_message = False
        reader.feed(b"")
        while reader.next_event() not in (NEED_DATA, CONNECTION_CLOSED):
            pass
    except ProtocolError as error:
        assert error.status in (None, 400, 413, 414, 417, 431, 501, 505)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",              # refused in a callback
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n" + b"x" * 5
    + b"GARBAGE\r\n\r\n",                                           # refused by llhttp
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_closed_reader_is_freed_without_the_garbage_collector(data):
    # A refused request is kept (and raised again) by the reader; a traceback on it would
    # hold frames that hold the reader.  After close(), reference counting alone frees it.
    import gc
    import weakref
    gc.disable()
    try:
        reader = RequestReader(max_body=100)
        reader.feed(data)
        with pytest.raises(ProtocolError):
            while reader.next_event() is not NEED_DATA:
                pass
        with pytest.raises(ProtocolError):
            reader.next_event()
        reader.close()
        ref = weakref.ref(reader)
        del reader
        assert ref() is None
    finally:
        gc.enable()


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("start", [b"2\r\nhi\r\n0\r\nX-Trailer: ", b"2\r\nhi\r\n1;ext="])
def test_a_trailer_field_or_chunk_line_that_never_ends_is_refused_not_buffered(start):
    # The parser keeps an unfinished field in memory: without a bound, a client pins as much
    # of the server's memory as it sends.
    reader = RequestReader()
    reader.feed(CHUNKED_HEAD + start)
    events(reader)
    fed = 0
    while reader.error is None and fed < (8 << 20):
        reader.feed(b"a" * 4096)
        fed += 4096
    assert reader.error is not None and reader.error.status == 431, (fed, reader.error)
    assert fed <= reader.max_request_line + reader.max_header_bytes + 8192
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_a_chunked_body_fed_in_small_pieces_is_not_taken_for_a_long_line():
    reader = RequestReader()
    reader.feed(CHUNKED_HEAD)
    events(reader)
    body = []
    for _ in range(20000):             # 100 KB of chunk lines and data, fed a few bytes at a time
        reader.feed(b"3\r\n")
        reader.feed(b"abc\r\n")
        body.extend(event for event in events(reader) if isinstance(event, bytes))
    reader.feed(b"0\r\nX-Long: " + b"t" * 60000 + b"\r\n\r\n")   # a large trailer that ends
    rest = events(reader)
    assert reader.error is None and rest == [END_OF_MESSAGE]
    assert b"".join(body) == b"abc" * 20000
