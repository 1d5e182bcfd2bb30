"""The C request-head scanner (src/protocols/http_head.c) against llhttp.

The scanner may only take requests that llhttp and RequestReader's checks read the same way:
for any input, a reader using it must produce exactly the events, and raise exactly the errors,
of a reader that sends everything to llhttp.  The generated requests mix what the scanner takes
(plain heads) with what it must leave alone (bodies, framing fields, odd bytes, odd targets).
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop._protocols import http
from loop._protocols.http import NEED_DATA, ProtocolError, Request, RequestReader

scan = pytest.importorskip("loop._protocols._http_head").scan

pytestmark = pytest.mark.timeout(120)

LIMITS = (8190, 65536, 100, None)


def outcome(chunks, use_scanner, **limits):
    """Every event the reader gives for ``chunks`` (as plain data), ending with the error's
    status if one is raised."""
    saved = http._scan_head
    http._scan_head = scan if use_scanner else None
    try:
        reader = RequestReader(**limits)
        for chunk in chunks:
            reader.feed(chunk)
        out = []
        try:
            while True:
                event = reader.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Request):
                    event = ("request", event.method, event.target, event.version,
                             tuple(event.headers), event.content_length, event.chunked,
                             event.keep_alive, event.expect_continue, event.upgrade)
                out.append(event)
        except ProtocolError as error:
            out.append(("error", error.status))
        return out, reader.in_message, reader.upgraded_data
    finally:
        http._scan_head = saved


def test_a_plain_request_is_read_by_the_scanner():
    data = (b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nAccept:  */* \t\r\n"
            b"Connection: keep-alive\r\n\r\nrest")
    end, method, target, version, headers, keep_alive, length, cgi = scan(data, 0, *LIMITS)
    assert data[end:] == b"rest"
    assert (method, target, version, keep_alive, length) == (
        "GET", b"/a/b?x=1&y=%20", "HTTP/1.1", True, None)
    assert headers == [(b"Host", b"example.com"), (b"Accept", b"*/*"),
                       (b"Connection", b"keep-alive")]
    assert scan(data, end - 2, *LIMITS) is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: a\r\n",                                   # incomplete
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",      # odd framing
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",                                          # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",                    # two
    b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",                           # not in the list
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",                       # absolute form
    b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\r\n\r\n",                                 # bare LF
    b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",                            # bare CR
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                              # space before colon
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",                    # obs-fold
    b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",                     # obs-text
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",           # ends the connection
    b"GET / HTTP/1.0\r\n\r\n",
])
def test_the_scanner_leaves_anything_else_to_llhttp(data):
    assert scan(data, 0, *LIMITS) is None


def test_a_content_length_body_is_counted_off_by_the_reader():
    head = b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"
    assert scan(head, 0, *LIMITS)[6] == 7
    assert scan(head, 0, 8190, 65536, 100, 6) is None          # over max_body: the reader's
    data = head + b"abcdefg" + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut in range(1, len(data) + 1):
        pieces = [piece for piece in (data[:cut], data[cut:]) if piece]   # b"" would be EOF
        with_scanner = outcome(pieces, True)
        assert with_scanner == outcome(pieces, False)
        assert [e for e in with_scanner[0] if type(e) is tuple][-1][1] == "GET"
    assert outcome([head + b"abc", b""], True) == outcome([head + b"abc", b""], False)
    assert outcome([head], True, max_body=6) == outcome([head], False, max_body=6)


def test_limits_are_left_to_the_reader():
    data = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 100 + b"\r\n\r\n"
    assert scan(data, 0, *LIMITS) is not None
    assert scan(data, 0, 50, 65536, 100, None) is None          # request line
    assert scan(data, 0, 8190, 100, 100, None) is None          # header bytes
    assert scan(data, 0, 8190, 65536, 1, None) is None          # field count
    assert outcome([data], True, max_request_line=50) == outcome([data], False,
                                                                 max_request_line=50)


def test_misuse_raises():
    with pytest.raises(TypeError):
        scan("GET / HTTP/1.1\r\n\r\n", 0, *LIMITS)
    with pytest.raises(ValueError):
        scan(b"GET", 4, *LIMITS)
    with pytest.raises(TypeError):
        scan(b"GET")


_METHODS = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
                            b"get", b"PROPFIND", b"CONNECT", b"G T", b""])
_TARGET_BYTES = st.sampled_from(list(b"/aZ09-._~!$&'()*+,;=:@?%") +
                                [ord(c) for c in '#"<>[]\\^`{|} \t'] + [0, 0x7f, 0xe9])
_TARGETS = st.one_of(
    st.lists(_TARGET_BYTES, max_size=30).map(lambda b: b"/" + bytes(b)),
    st.sampled_from([b"*", b"http://a/b", b"//x", b"/", b"a/b", b""]))
_VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1",
                             b"HTTP/1.1 "])
_NAMES = st.one_of(
    st.sampled_from([b"Host", b"host", b"HOST", b"Connection", b"connection", b"Content-Length",
                     b"Transfer-Encoding", b"Expect", b"Upgrade", b"Proxy-Connection",
                     b"Cookie", b"X-A", b"Accept", b"Keep-Alive"]),
    st.binary(min_size=0, max_size=8))
_VALUES = st.one_of(
    st.sampled_from([b"a", b"", b" a ", b"\ta\t", b"close", b"keep-alive", b"Keep-Alive, x",
                     b"x, close", b"upgrade", b"0", b"5", b"chunked", b"100-continue",
                     b"a\x80b", b"a\x00b", b"a\rb", b"a\nb", b"a\x7fb", b" , ,close,"]),
    st.binary(max_size=10))
_EOLS = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b" \r\n"])


@st.composite
def requests(draw):
    head = draw(_METHODS) + b" " + draw(_TARGETS) + b" " + draw(_VERSIONS) + draw(_EOLS)
    for _ in range(draw(st.integers(0, 5))):
        head += draw(_NAMES) + draw(st.sampled_from([b":", b": ", b" :", b""])) + \
            draw(_VALUES) + draw(_EOLS)
    if draw(st.integers(0, 9)):
        head += b"Host: h\r\n" if draw(st.integers(0, 5)) else b""
    return head + draw(_EOLS) + draw(st.sampled_from([b"", b"", b"abc", b"0\r\n\r\n"]))


def same_reading(with_scanner, without):
    """Equal outcomes, but for one known difference: when llhttp calls a method invalid, the
    reader answers 501 if the fed buffer starts with a method-like token and 400 otherwise.
    Without the scanner that buffer may start with an earlier, pipelined request, whose
    method is then the one judged; with it, the buffer starts at the refused request."""
    if with_scanner == without:
        return True
    events, others = with_scanner[0], without[0]
    return (with_scanner[1:] == without[1:] and events[:-1] == others[:-1]
            and {events[-1], others[-1]} == {("error", 400), ("error", 501)})


_TCHARS = st.sampled_from(list(b"!#$%&'*+-.^_`|~09azAZ"))
_VCHARS = st.one_of(st.integers(0x21, 0x7e), st.sampled_from([0x20, 0x09]))


@st.composite
def plain_requests(draw):
    """Mostly heads the scanner takes, with the odd byte in the wrong place."""
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS",
                                   b"PATCH", b"GET", b"GET", b"TRACE"]))
    target = b"/" + bytes(draw(st.lists(st.one_of(
        st.sampled_from(list(b"aZ09-._~!$&'()*+,;=:@/?%")), _TARGET_BYTES), max_size=20)))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0"]))
    fields = [(b"Host", b"h")] if draw(st.integers(0, 9)) else []
    for _ in range(draw(st.integers(0, 4))):
        name = bytes(draw(st.lists(_TCHARS, min_size=1, max_size=6)))
        value = bytes(draw(st.lists(_VCHARS, max_size=8)))
        fields.insert(draw(st.integers(0, len(fields))), (name, value))
    if draw(st.integers(0, 3)) == 0:
        fields.append((b"Connection", draw(_VALUES)))
    if version == b"HTTP/1.0" and draw(st.booleans()):
        fields.append((b"Connection", b"keep-alive"))
    body = b""
    if draw(st.integers(0, 2)) == 0:
        body = draw(st.binary(max_size=12))
        length = str(len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))).encode()
        fields.append((b"Content-Length", draw(st.sampled_from([length, length, b"0" + length]))))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(name + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + value + b"\r\n"
                     for name, value in fields)
    return head + b"\r\n" + body


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(requests(), plain_requests(), plain_requests()), min_size=1,
                max_size=4), st.integers(0, 200))
def test_a_reader_with_the_scanner_reads_exactly_what_llhttp_reads(pipelined, cut):
    data = b"".join(pipelined)
    assert same_reading(outcome([data], True), outcome([data], False))
    split = [piece for piece in (data[:cut], data[cut:]) if piece]
    assert same_reading(outcome(split, True), outcome(split, False))


def test_the_method_of_a_refused_pipelined_request_is_judged_where_it_starts():
    data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nabc / HTTP/1.1\r\n\r\n"
    assert outcome([data], True)[0][-1] == ("error", 400)
    data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nFOO / HTTP/1.1\r\n\r\n"
    assert outcome([data], True)[0][-1] == ("error", 501)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_plain_request_read_the_same(tail):
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + tail
    assert same_reading(outcome([data], True), outcome([data], False))
