"""Header lines from the process's table (``web/header_lines``): the channel stores what Twisted would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from tenantsvc.web import channel as channel_module
from tenantsvc.web.channel import EdgeLimits
from tenantsvc.web.connections import ConnectionTracker
from tenantsvc.web.header_lines import HeaderLines, plain_header
from tenantsvc.web.server import EdgeSite

PEER = IPv4Address("TCP", "10.0.0.1", 40000)


class HeadersSeen(Resource):
    """Records each request's headers as ``twisted.web`` exposes them, and answers ``ok``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list] = []

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        self.seen.append(list(request.requestHeaders.getAllRawHeaders()))
        return b"ok"


def send(site, head: bytes):
    """(status code or None, headers the resource saw or None) for one request on a new connection."""
    resource = site.resource
    before = len(resource.seen)
    protocol = site.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(head)
    written = transport.value()
    status = int(written.split(b" ", 2)[1]) if written.startswith(b"HTTP/1.") else None
    seen = resource.seen[before] if len(resource.seen) > before else None
    protocol.connectionLost(None)
    return status, seen


def edge_site() -> EdgeSite:
    clock = Clock()
    return EdgeSite(HeadersSeen(), reactor=clock, limits=EdgeLimits(), tracker=ConnectionTracker(clock))


NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"If-None-Match", b"accept", b"X-Request-ID", b"etag", b"te",
                         b"dnt", b"Content-Length", b"transfer-encoding", b"Cookie", b"authorization", b"Bad Name",
                         b"", b"x\x00y", b"X-A ", b" X-A", b"x(y)", b"\xe9t\xe9"])
VALUES = st.binary(max_size=12).map(lambda value: value.replace(b"\r\n", b""))
LINES = st.one_of(
    st.tuples(NAMES, st.sampled_from([b":", b": ", b":\t", b"  "]), VALUES).map(b"".join),
    st.binary(min_size=1, max_size=30).map(lambda line: line.replace(b"\r\n", b"")),  # anything at all
).filter(bool)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINES, max_size=6))
def test_a_request_s_headers_from_the_table_or_not_are_what_twisted_stores(lines):
    head = b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    theirs = send(Site(HeadersSeen()), head)
    site = edge_site()
    first, again = send(site, head), send(site, head)  # the second from the table where it may
    assert first[1] == theirs[1] and again[1] == theirs[1]
    assert (first[0] == 400) == (theirs[0] == 400) and again[0] == first[0]


def test_a_line_seen_before_is_taken_from_the_table():
    table = HeaderLines()
    parsed = table.parse(b"if-none-match: \"e1\" ")
    assert parsed == (b"If-None-Match", b'"e1"') and len(table) == 1
    assert table.parse(b"if-none-match: \"e1\" ") is parsed


@pytest.mark.parametrize("line", [b"Content-Length: 5", b"transfer-encoding: chunked", b"Cookie: session=s3cret",
                                  b"Authorization: Bearer t", b"Proxy-Authorization: Basic x", b"Host a",
                                  b"Bad Name: 1", b"X-A: a\x00b"])
def test_framing_credentials_and_malformed_lines_are_left_to_twisted_and_never_kept(line):
    table = HeaderLines()
    assert table.parse(line) is None and plain_header(line) is None
    assert len(table) == 0


def test_the_table_is_bounded_in_lines_and_entries_whatever_clients_send():
    table = HeaderLines(max_entries=3, max_line_bytes=40)
    assert table.parse(b"X-Long: " + b"a" * 40) is None  # left to Twisted, not kept
    assert len(table) == 0 and table.parse(b"X-Short: a") == (b"X-Short", b"a")
    for i in range(7):
        table.parse(b"X-Id: %d" % i)
        assert 1 <= len(table) <= 3
    with pytest.raises(ValueError):
        HeaderLines(max_entries=0)


def test_over_max_headers_from_the_table_is_refused_as_twisted_refuses_it(monkeypatch):
    monkeypatch.setattr(channel_module, "HEADER_LINES", HeaderLines())
    head = b"GET / HTTP/1.1\r\n" + b"X-Same: 1\r\n" * 501 + b"\r\n"
    site = edge_site()
    assert send(site, head) == (431, None)
    assert send(Site(HeadersSeen()), head)[0] == 400  # Twisted's own answer to the same head
