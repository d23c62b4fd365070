"""``TenantRequest.finish_prepared`` (the public theme's one-piece writer) and ``TenantRequest.process`` send
exactly the bytes ``twisted.web``'s own ``setHeader``/``write``/``finish`` and ``Request.process`` would.

Each case runs the same request through two leaf resources on a real ``HTTPChannel`` over an in-memory
transport: one answers with ``finish_prepared``, the other with the public API; the wire bytes must match.
"""

from __future__ import annotations

import re
import time

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tenantsvc.web import request as request_module
from tenantsvc.web.request import HttpDate, TenantRequest, header_line

BODY = b'{"primaryColor":"#F59E0B"}'
HEAD_LINES = [header_line(b"Cache-Control", b"public, max-age=300"), header_line(b"ETag", b'"abc"'),
              header_line(b"Content-Type", b"application/json")]


class Prepared(Resource):
    """Answers with ``finish_prepared``."""

    isLeaf = True

    def __init__(self, code: int, body: bytes | None):
        super().__init__()
        self.code, self.body = code, body

    def render(self, request):
        request.setHeader(b"X-Request-Id", b"r1")
        request.finish_prepared(self.code, HEAD_LINES, self.body)
        return NOT_DONE_YET


class Generic(Prepared):
    """Answers the same through ``setResponseCode``, ``setHeader``, ``write`` and ``finish``."""

    def render(self, request):
        request.setHeader(b"X-Request-Id", b"r1")
        request.setResponseCode(self.code)
        for line in HEAD_LINES:
            name, _, value = line.rstrip(b"\r\n").partition(b": ")
            request.setHeader(name, value)
        if self.body is not None:
            request.setHeader(b"Content-Length", b"%d" % len(self.body))
        request.write(self.body or b"")
        request.finish()
        return NOT_DONE_YET


def wire(resource: Resource, raw: bytes) -> bytes:
    """What ``resource`` sends on one connection that received ``raw``."""
    site = Site(resource)
    site.requestFactory = TenantRequest
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return transport.value()


@pytest.fixture(autouse=True)
def one_second(monkeypatch):
    monkeypatch.setattr(request_module, "http_date", HttpDate(now=lambda: 1_700_000_000.5))


GET = b"GET /demo/api/public/load-theme HTTP/1.1\r\nHost: x\r\n\r\n"
CASES = {
    "200": (200, BODY, GET),
    "HEAD": (200, BODY, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"),
    "304": (304, None, GET),
    "empty 200": (200, b"", GET),
    "HTTP/1.0": (200, BODY, b"GET /x HTTP/1.0\r\n\r\n"),
    "HTTP/1.0 keep-alive": (200, BODY, b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    "Connection: close": (200, BODY, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    "pipelined": (200, BODY, GET + b"HEAD /y HTTP/1.1\r\nHost: x\r\n\r\n" + GET),
}


@pytest.mark.parametrize("case", CASES)
def test_a_prepared_response_is_byte_for_byte_what_write_and_finish_send(case):
    code, body, raw = CASES[case]
    ours, theirs = wire(Prepared(code, body), raw), wire(Generic(code, body), raw)
    assert ours == theirs
    assert ours.count(b"HTTP/1.") == raw.count(b"HTTP/1.")  # one answer per request
    assert b"Transfer-Encoding" not in ours  # a body always has its Content-Length


def test_a_prepared_response_carries_content_length_and_no_body_for_head():
    answer = wire(Prepared(200, BODY), b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Content-Length: %d\r\n" % len(BODY) in answer
    assert answer.endswith(b"\r\n\r\n")


def test_a_request_already_written_to_falls_back_to_write_and_finish():
    class Started(Resource):
        isLeaf = True

        def render(self, request):
            request.setHeader(b"Content-Length", b"%d" % (3 + len(BODY)))
            request.write(b"abc")  # headers gone: the prepared lines can no longer be headers
            request.finish_prepared(200, [], BODY)
            return NOT_DONE_YET

    answer = wire(Started(), GET)
    assert answer.endswith(b"abc" + BODY)


def test_process_sets_server_and_date_as_twisted_does(monkeypatch):
    ours = wire(Prepared(200, BODY), GET)
    monkeypatch.setattr(request_module, "DIRECT_HEADERS", False)  # twisted.web's own Request.process
    theirs = wire(Prepared(200, BODY), GET)
    server = re.compile(rb"\r\nServer: (.+?)\r\n")
    assert server.search(ours).group(1) == server.search(theirs).group(1)
    assert b"\r\nDate: " + datetimeToString(1_700_000_000) + b"\r\n" in ours
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n", theirs)


def test_the_date_is_formatted_once_a_second():
    now = [100.2]
    date = HttpDate(now=lambda: now[0])
    first = date()
    now[0] = 100.9
    assert date() is first
    now[0] = 101.0
    assert date() == datetimeToString(101) != first
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", HttpDate(now=time.time)())
