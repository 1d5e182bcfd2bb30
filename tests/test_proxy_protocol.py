"""The sans-IO PROXY protocol reader (loop._protocols.proxy), fed bytes without sockets: both
versions, every split, malformed, truncated and oversized headers, arbitrary input.  The
worker's end-to-end use of it is in tests/test_worker.py (test_proxy_protocol)."""
import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop._protocols.proxy import (NEED_DATA, V1_MAX_LENGTH, V2_SIGNATURE, ProxyHeader,
                                   ProxyHeaderError, parse_proxy_header, proxy_header_version)

pytestmark = pytest.mark.timeout(120)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command=1, family=1, transport=1, addresses=b"", version=2, length=None):
    body = addresses
    size = len(body) if length is None else length
    return (V2_SIGNATURE + bytes([version << 4 | command, family << 4 | transport])
            + size.to_bytes(2, "big") + body)


def v2_tcp4(source, destination, sport, dport, tlvs=b""):
    return v2(addresses=socket.inet_aton(source) + socket.inet_aton(destination)
              + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs)


def v2_tcp6(source, destination, sport, dport):
    return v2(family=2, addresses=socket.inet_pton(socket.AF_INET6, source)
              + socket.inet_pton(socket.AF_INET6, destination)
              + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))


VALID = [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n",
     ("TCP4", ("1.2.3.4", 1111), ("5.6.7.8", 80))),
    (b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n",
     ("TCP6", ("2001:db8::1", 65535), ("::1", 0))),
    (b"PROXY UNKNOWN\r\n", ("UNKNOWN", None, None)),
    (b"PROXY UNKNOWN anything \xff at all\r\n", ("UNKNOWN", None, None)),
    (v2_tcp4("9.8.7.6", "5.4.3.2", 2222, 443), ("TCP4", ("9.8.7.6", 2222), ("5.4.3.2", 443))),
    (v2_tcp4("9.8.7.6", "5.4.3.2", 1, 2, tlvs=b"\x04\x00\x03abc"),    # a TLV, skipped
     ("TCP4", ("9.8.7.6", 1), ("5.4.3.2", 2))),
    (v2_tcp6("2001:db8::7", "fe80::1", 40000, 8443),
     ("TCP6", ("2001:db8::7", 40000), ("fe80::1", 8443))),
    (v2(command=0, family=0, transport=0), ("LOCAL", None, None)),
    (v2(command=0, family=1, addresses=b"ignored"), ("LOCAL", None, None)),
    (v2(family=0, transport=0, addresses=b"\x00" * 12), ("UNSPEC", None, None)),
]


@pytest.mark.parametrize("header, expected", VALID)
def test_a_valid_header_and_what_follows_it(header, expected):
    result = parse_proxy_header(header + REQUEST)
    assert isinstance(result, ProxyHeader)
    assert (result.protocol, result.client, result.proxy) == expected
    assert result.length == len(header)
    # every proper prefix asks for more; bytes after the header are never looked at
    for end in range(len(header)):
        assert parse_proxy_header(header[:end]) is NEED_DATA, end
    assert parse_proxy_header(header) == result
    assert parse_proxy_header(bytearray(header + b"\xff\x00junk")) == result
    assert parse_proxy_header(memoryview(header + REQUEST)) == result


@pytest.mark.parametrize("data", [REQUEST, b"G", b"POST / HTTP/1.1\r\n", b"\x16\x03\x01",
                                  b"PROXZ", b"proxy TCP4", b"\r\n\r\n\x00\r\nQUIX\n"])
def test_no_header(data):
    assert parse_proxy_header(data) is None
    assert proxy_header_version(data) is None


def test_versions_accepted():
    line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    binary = v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2)
    assert proxy_header_version(line, "v1") == "v1"
    assert proxy_header_version(binary, "v2") == "v2"
    # a header of the version not accepted is not a header: the HTTP reader refuses it
    assert parse_proxy_header(line, "v2") is None
    assert parse_proxy_header(binary, "v1") is None
    assert parse_proxy_header(line, "v1").client == ("1.2.3.4", 1)
    assert parse_proxy_header(binary, "v2").client == ("1.2.3.4", 1)
    assert proxy_header_version(b"", "auto") is NEED_DATA
    assert proxy_header_version(b"PROX") is NEED_DATA
    assert proxy_header_version(b"\r\n\r\n") is NEED_DATA
    with pytest.raises(ValueError, match="accept"):
        parse_proxy_header(line, "off")


MALFORMED_V1 = [
    b"PROXY TCP4 1.2.3.4 nonsense 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 ::1 1 2\r\n",                 # IPv6 addresses under TCP4
    b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa1\r\n",   # a non-ASCII digit
    b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4\r\n",
    b"PROXY \r\n",
    b"PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n",
]


@pytest.mark.parametrize("line", MALFORMED_V1)
def test_malformed_v1_line(line):
    with pytest.raises(ProxyHeaderError) as info:
        parse_proxy_header(line + REQUEST)
    assert info.value.status == 400
    assert isinstance(info.value, ValueError)


def test_oversized_v1_line():
    longest = b"PROXY TCP6 " + b"f" * (V1_MAX_LENGTH - len(b"PROXY TCP6 ") - 2) + b"\r\n"
    assert len(longest) == V1_MAX_LENGTH
    with pytest.raises(ProxyHeaderError, match="PROXY v1"):    # long enough, but not valid
        parse_proxy_header(longest)
    # one byte short of the limit without an end: may still end, so more is read
    assert parse_proxy_header(b"PROXY TCP4 " + b"1" * (V1_MAX_LENGTH - 12)) is NEED_DATA
    # at the limit without CRLF: refused without waiting for the rest
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse_proxy_header(b"PROXY TCP4 " + b"1" * (V1_MAX_LENGTH - 11))
    # a CRLF that comes too late does not make it acceptable
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n")
    # a bare LF is not the end of the line: the line runs on into the request
    with pytest.raises(ProxyHeaderError, match="malformed PROXY v1 line"):
        parse_proxy_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + REQUEST)
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse_proxy_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + b"x" * 100)


MALFORMED_V2 = [
    pytest.param(v2(version=1, addresses=b"\x00" * 12), id="version-1"),
    pytest.param(v2(version=3, addresses=b"\x00" * 12), id="version-3"),
    pytest.param(v2(command=2, addresses=b"\x00" * 12), id="command-2"),
    pytest.param(v2(command=15, addresses=b"\x00" * 12), id="command-15"),
    pytest.param(v2(transport=2, addresses=b"\x00" * 12), id="datagram"),
    pytest.param(v2(transport=0, addresses=b"\x00" * 12), id="transport-unspec"),
    pytest.param(v2(family=3, addresses=b"\x00" * 216), id="unix"),
    pytest.param(v2(family=4, addresses=b"\x00" * 12), id="family-4"),
    pytest.param(v2(addresses=b"\x00" * 11), id="tcp4-short"),
    pytest.param(v2(family=2, addresses=b"\x00" * 35), id="tcp6-short"),
    pytest.param(v2(family=2, addresses=b"\x00" * 12), id="tcp6-with-tcp4-size"),
    pytest.param(v2(), id="tcp4-empty"),
]


@pytest.mark.parametrize("header", MALFORMED_V2)
def test_malformed_v2_header(header):
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(header + REQUEST)


def test_truncated_v2_header_waits_for_its_announced_length():
    header = v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2)
    # The length field says 12 bytes; 11 of them is not yet a header, however long the wait.
    assert parse_proxy_header(header[:-1]) is NEED_DATA
    # The largest length the field can announce: still just more to read, bounded by 64 KiB.
    announced = v2(length=65535, addresses=b"\x00" * 100)
    assert parse_proxy_header(announced) is NEED_DATA
    full = v2(addresses=socket.inet_aton("1.2.3.4") * 2 + b"\x00\x01\x00\x02"
              + b"\x00" * (65535 - 12))
    result = parse_proxy_header(full + REQUEST)
    assert (result.client, result.length) == (("1.2.3.4", 1), 16 + 65535)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=120).map(lambda b: b"PROXY " + b),
                 st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b)),
       st.sampled_from(["v1", "v2", "auto"]))
def test_arbitrary_bytes_give_an_answer_or_a_proxy_header_error(data, accept):
    try:
        result = parse_proxy_header(data, accept)
    except ProxyHeaderError:
        return
    if isinstance(result, ProxyHeader):
        assert 0 < result.length <= len(data)
        # what the header took is a header on its own, with the same reading
        assert parse_proxy_header(data[:result.length], accept) == result
    else:
        assert result is None or result is NEED_DATA
        if result is NEED_DATA:
            assert len(data) < 16 + 65535


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([header for header, _ in VALID]), st.data())
def test_a_valid_header_in_any_two_pieces(header, data):
    split = data.draw(st.integers(0, len(header)))
    first = parse_proxy_header(header[:split])
    assert first is NEED_DATA if split < len(header) else isinstance(first, ProxyHeader)
    assert parse_proxy_header(header[:split] + header[split:] + REQUEST).length == len(header)


def test_importable_without_the_c_extension():
    code = ("import sys; sys.modules['loop._switch'] = None; "
            "from loop._protocols.proxy import parse_proxy_header; "
            "h = parse_proxy_header(b'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\\r\\n'); "
            "assert h.client == ('1.2.3.4', 1), h; "
            "assert 'asyncio' not in sys.modules and 'loop._core.hub' not in sys.modules; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
