"""The PROXY protocol header (versions 1 and 2), read without IO.

Design
======

A load balancer that forwards raw TCP (HAProxy, AWS NLB, ...) can put one header in front of
the bytes it relays, saying which client it speaks for: version 1 is a text line
(``PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\\r\\n``), version 2 a binary block behind a 12-byte
signature.  The server reads that header, replaces the peer address with the client's, and
hands the rest of the bytes to its HTTP reader.

Like the HTTP reader beside it (:mod:`loop._protocols.http`), this module turns bytes into a
result and does nothing else: no socket, no clock, no configuration.  The server owns the IO
(how long to wait, which peers may send a header at all) and calls :func:`parse_proxy_header`
with everything it has received so far; the answer is one of

* :data:`NEED_DATA` -- too few bytes to decide: receive more and ask again;
* ``None`` -- the connection does not start with a header (allowed: the header is optional,
  and a direct client simply sends its request);
* a :class:`ProxyHeader`, whose ``length`` says how many bytes it took; what follows belongs
  to the request reader.

A header that is malformed raises :class:`ProxyHeaderError` (answer 400 and close: the
framing of the connection is unknown from there on).  Everything a peer sends is bounded
before it is buffered: a version 1 line is at most 107 bytes (the specification's maximum), so
a line that has not ended by then is refused without waiting for more; a version 2 header
announces its length in a 16-bit field, so it is at most 16 + 65535 bytes.

:func:`proxy_header_version` answers only "which version, if any", from the first bytes: the
server asks it to refuse a header from a peer that may not send one before reading the rest.

Version 2 carries optional TLV fields after the addresses (TLS details, a unique id, ...); they
are skipped.  The ``UNIX`` family and datagram transports are refused: this server speaks TCP.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

__all__ = ["ProxyHeader", "ProxyHeaderError", "NEED_DATA", "parse_proxy_header",
           "proxy_header_version", "V1_MAX_LENGTH", "V2_SIGNATURE"]


class _NeedData:
    __slots__ = ()

    def __repr__(self):
        return "NEED_DATA"


#: Returned while too few bytes have arrived to decide.
NEED_DATA = _NeedData()

#: The longest version 1 line, ``\r\n`` included (the specification's worst case: TCP6 with
#: two full-length addresses and ports).
V1_MAX_LENGTH = 107
_V1_PREFIX = b"PROXY "

#: The 12 bytes every version 2 header starts with; never the start of an HTTP request.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16                  # signature, version/command, family/transport, length

_V2_COMMAND_LOCAL = 0
_V2_COMMAND_PROXY = 1
_V2_TRANSPORT_STREAM = 1
# family -> (address size, socket family, protocol name)
_V2_FAMILIES = {1: (4, socket.AF_INET, "TCP4"), 2: (16, socket.AF_INET6, "TCP6")}

_ACCEPT = ("v1", "v2", "auto")


class ProxyHeaderError(ValueError):
    """A malformed or oversized PROXY header; the connection is answered 400 and closed."""

    status = 400


class ProxyHeader(NamedTuple):
    """A PROXY header read from the start of a connection.

    ``protocol`` is ``"TCP4"`` or ``"TCP6"`` when addresses are given; ``"UNKNOWN"`` (version 1),
    ``"LOCAL"`` (a version 2 health check by the proxy itself) or ``"UNSPEC"`` (version 2)
    when they are not, and the connection's own addresses stand.  ``client`` is the
    ``(host, port)`` the proxy speaks for, ``proxy`` the address the client connected to;
    ``length`` is the number of bytes the header took.
    """
    protocol: str
    client: tuple[str, int] | None
    proxy: tuple[str, int] | None
    length: int


def proxy_header_version(data, accept="auto"):
    """Which header ``data`` starts with: ``"v1"``, ``"v2"``, ``None`` (no PROXY header) or
    :data:`NEED_DATA` (a prefix of one).  ``accept`` is ``"v1"``, ``"v2"`` or ``"auto"``
    (both); a header of a version not accepted counts as no header."""
    if accept not in _ACCEPT:
        raise ValueError(f"accept must be one of {_ACCEPT}, not {accept!r}")
    if not data:
        return NEED_DATA
    data = bytes(data[:len(V2_SIGNATURE)])
    if accept != "v1" and V2_SIGNATURE.startswith(data):
        return "v2" if len(data) == len(V2_SIGNATURE) else NEED_DATA
    if accept != "v2" and _V1_PREFIX.startswith(data[:len(_V1_PREFIX)]):
        return "v1" if len(data) >= len(_V1_PREFIX) else NEED_DATA
    return None


def parse_proxy_header(data, accept="auto"):
    """Read the PROXY header at the start of ``data`` (bytes received so far).

    Returns :data:`NEED_DATA`, ``None`` (no header) or a :class:`ProxyHeader`; raises
    :class:`ProxyHeaderError` for a malformed one.  See the module's documentation."""
    version = proxy_header_version(data, accept)
    if version is None or version is NEED_DATA:
        return version
    if version == "v1":
        return _parse_v1(data)
    return _parse_v2(data)


def _parse_v1(data):
    head = bytes(data[:V1_MAX_LENGTH])
    end = head.find(b"\r\n")
    if end < 0:
        if len(head) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
        return NEED_DATA
    line = head[:end]
    length = end + 2
    if line.split(b" ", 2)[1:2] == [b"UNKNOWN"]:
        # The rest of the line may say anything; the connection's own addresses stand.
        return ProxyHeader("UNKNOWN", None, None, length)
    try:
        parts = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError(f"PROXY v1 line is not ASCII: {line!r}") from None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY v1 line: {line!r}")
    protocol, source, destination = parts[1], parts[2], parts[3]
    family = socket.AF_INET if protocol == "TCP4" else socket.AF_INET6
    for address in (source, destination):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):
            raise ProxyHeaderError(f"bad {protocol} address in PROXY v1 line: {line!r}") \
                from None
    ports = []
    for text in parts[4:]:
        # Plain ASCII digits only (str.isdigit would take other scripts' digits), no sign.
        if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()) or int(text) > 65535:
            raise ProxyHeaderError(f"bad port in PROXY v1 line: {line!r}")
        ports.append(int(text))
    return ProxyHeader(protocol, (source, ports[0]), (destination, ports[1]), length)


def _parse_v2(data):
    if len(data) < _V2_FIXED:
        return NEED_DATA
    length = _V2_FIXED + int.from_bytes(data[14:16], "big")
    if len(data) < length:
        return NEED_DATA
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command not in (_V2_COMMAND_LOCAL, _V2_COMMAND_PROXY):
        raise ProxyHeaderError(f"PROXY v2 header with version {version} command {command}")
    if command == _V2_COMMAND_LOCAL:
        # The proxy's own connection (a health check): whatever follows is ignored.
        return ProxyHeader("LOCAL", None, None, length)
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family == 0:
        return ProxyHeader("UNSPEC", None, None, length)
    if family not in _V2_FAMILIES:
        raise ProxyHeaderError(f"PROXY v2 address family {family} is not supported")
    if transport != _V2_TRANSPORT_STREAM:
        raise ProxyHeaderError("PROXY v2: only TCP (STREAM) is supported")
    size, address_family, protocol = _V2_FAMILIES[family]
    body = bytes(data[_V2_FIXED:length])
    if len(body) < 2 * size + 4:
        raise ProxyHeaderError(f"PROXY v2 {protocol} header with only {len(body)} bytes of "
                               f"addresses")
    source = socket.inet_ntop(address_family, body[:size])
    destination = socket.inet_ntop(address_family, body[size:2 * size])
    ports = body[2 * size:2 * size + 4]
    return ProxyHeader(protocol, (source, int.from_bytes(ports[:2], "big")),
                       (destination, int.from_bytes(ports[2:], "big")), length)
