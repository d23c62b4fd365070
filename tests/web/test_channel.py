"""``EdgeChannel`` and ``ConnectionTracker`` on in-memory transports and a Clock (issue 11, items 1-3).

Each test drives one or more channels built by the real ``EdgeSite`` over ``StringTransport``s; the
transport's write-buffer signal is what a real transport sends (``pauseProducing``/``resumeProducing`` on
its producer, the channel). No sockets, no sleeps.
"""

from __future__ import annotations

import json
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tenantsvc.web.channel import EdgeLimits
from tenantsvc.web.connections import ConnectionTracker
from tenantsvc.web.server import EdgeSite

LIMITS = EdgeLimits(max_pipelined=1, write_buffer_bytes=64 * 1024, write_timeout_s=30.0, header_timeout_s=10.0)


class Answers(Resource):
    """``/slow`` waits for the test to finish it; anything else answers ``ok`` at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list = []
        self.answered = 0

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        if request.path == b"/slow":
            self.waiting.append(request)
            return NOT_DONE_YET
        self.answered += 1
        return b"ok"


class Edge:
    """A site with its clock, tracker and the close reasons it reported."""

    def __init__(self, limits: EdgeLimits = LIMITS, max_per_client: int = 0):
        self.clock = Clock()
        self.closed: list[str] = []
        self.tracker = ConnectionTracker(self.clock, max_per_client=max_per_client, on_closed=self.closed.append)
        self.resource = Answers()
        self.site = EdgeSite(self.resource, reactor=self.clock, limits=limits, tracker=self.tracker)

    def connect(self, host: str = "10.0.0.1"):
        """A connected protocol (an ``EdgeChannel``, or the refusal over the cap) and its transport."""
        protocol = self.site.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        protocol.makeConnection(transport)
        return protocol, transport


def get(path: str = "/", *extra: str) -> bytes:
    return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, "".join(h + "\r\n" for h in extra))).encode()


def responses(transport: StringTransport) -> list[bytes]:
    """The status lines written so far."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", transport.value())


def turn(clock: Clock) -> None:
    """One reactor turn's timed calls: those due now, not the ones they schedule (``advance(0)`` runs those too)."""
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def json_body(transport: StringTransport) -> dict:
    return json.loads(transport.value().rsplit(b"\r\n\r\n", 1)[1])


def lose(channel, transport: StringTransport) -> None:
    """What the reactor does once a closing transport is gone."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    assert transport.disconnecting or getattr(transport, "aborted", False)
    channel.connectionLost(Failure(ConnectionDone()))


# --- item 1: bounded work per connection ---------------------------------------------------------------


def test_pipelined_requests_are_answered_one_per_reactor_turn_and_reading_stops_meanwhile():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get() * 5)
    assert len(responses(transport)) == 1
    assert transport.producerState == "paused"  # not reading while the rest waits its turn
    for expected in (2, 3, 4, 5):
        turn(edge.clock)
        assert len(responses(transport)) == expected
    turn(edge.clock)
    assert transport.producerState == "producing"


def test_parked_connections_take_turns_so_one_cannot_monopolise_the_reactor():
    edge = Edge()
    (first, first_transport), (second, second_transport) = edge.connect(), edge.connect("10.0.0.2")
    first.dataReceived(get() * 3)
    second.dataReceived(get() * 3)
    turn(edge.clock)
    assert (len(responses(first_transport)), len(responses(second_transport))) == (2, 2)


def test_a_full_write_buffer_stops_parsing_until_the_peer_has_read():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get() * 3)
    channel.pauseProducing()  # the transport: write buffer above the limit
    edge.clock.advance(1)
    assert len(responses(transport)) == 1 and edge.resource.answered == 1
    channel.resumeProducing()  # the peer read everything
    turn(edge.clock)
    assert len(responses(transport)) == 2


def test_a_request_answered_while_the_write_buffer_is_full_parks_the_next_one():
    edge = Edge(EdgeLimits(max_pipelined=100, write_timeout_s=30.0))
    channel, transport = edge.connect()
    channel.dataReceived(get("/slow") + get() * 3)
    channel.pauseProducing()
    edge.resource.waiting.pop().finish()  # the head request finishes into a full buffer
    edge.clock.advance(1)
    assert len(responses(transport)) == 1
    channel.resumeProducing()
    turn(edge.clock)
    assert len(responses(transport)) == 4  # max_pipelined 100: the rest in one go


def test_a_peer_that_does_not_read_within_the_write_timeout_is_aborted_and_counted():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get() * 2)
    channel.pauseProducing()
    edge.clock.advance(29.9)
    assert not transport.disconnected
    edge.clock.advance(0.2)
    assert transport.disconnected
    lose(channel, transport)
    assert edge.closed == ["peer_not_reading"]
    assert edge.tracker.open_count == 0


def test_a_peer_that_reads_in_time_is_not_aborted():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get())
    channel.pauseProducing()
    edge.clock.advance(20)
    channel.resumeProducing()
    edge.clock.advance(40)
    assert not transport.disconnected and edge.closed == []


def test_the_transport_write_buffer_limit_is_the_configured_one():
    edge = Edge(EdgeLimits(write_buffer_bytes=12345))
    channel = edge.site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
    transport = StringTransport()
    transport.bufferSize = 65536
    channel.makeConnection(transport)
    assert transport.bufferSize == 12345


# --- item 2: header deadline, 414/431/400 JSON, connection cap --------------------------------------------


def test_a_request_head_dripped_line_by_line_is_closed_at_the_absolute_header_deadline():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for second in range(1, 10):
        edge.clock.advance(1)
        channel.dataReceived(b"X-Drip-%d: a\r\n" % second)  # each line would reset Twisted's idle timeout
        assert not transport.disconnecting
    edge.clock.advance(1)
    assert transport.disconnecting
    assert responses(transport) == [b"HTTP/1.1 408 Request Timeout"]
    assert json_body(transport)["error"] == "header_timeout"
    lose(channel, transport)
    assert edge.closed == ["header_deadline"]


def test_a_request_line_dripped_byte_by_byte_is_closed_at_the_header_deadline():
    edge = Edge()
    channel, transport = edge.connect()
    for byte in b"GET /abcdefghij":
        channel.dataReceived(bytes([byte]))
        edge.clock.advance(0.7)
    assert transport.disconnecting and b"408" in responses(transport)[0]


def test_the_header_deadline_does_not_close_idle_keep_alive_connections_or_later_requests():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get())
    edge.clock.advance(30)  # idle between requests: Twisted's idle timeout (60 s) governs that
    channel.dataReceived(get())
    edge.clock.advance(30)
    assert not transport.disconnecting and len(responses(transport)) == 2


def test_a_head_completed_in_time_is_answered_even_if_the_request_is_slow():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(b"GET /slow HTTP/1.1\r\n")
    edge.clock.advance(9)
    channel.dataReceived(b"Host: t\r\n\r\n")
    edge.clock.advance(30)
    edge.resource.waiting.pop().finish()
    assert not transport.disconnecting and responses(transport) == [b"HTTP/1.1 200 OK"]


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "header_too_large"),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000, 431, "header_too_large"),  # no line end yet
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%03d: %s\r\n" % (i, b"b" * 90) for i in range(170)) + b"\r\n",
     431, "header_too_large"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: b\r\n" % i for i in range(501)) + b"\r\n", 431, "header_too_large"),
    (b"GET /" + b"q" * 17000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
    (b"NONSENSE\r\n\r\n", 400, "bad_request"),
    (b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n", 400, "bad_request"),
])
def test_an_oversized_or_malformed_head_gets_a_json_error_and_the_connection_closes(request_bytes, status, code):
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(request_bytes)
    assert responses(transport)[0].startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Type: application/json" in transport.value() and b"Connection: close" in transport.value()
    assert json_body(transport)["error"] == code
    assert transport.disconnecting and edge.resource.answered == 0
    lose(channel, transport)
    assert edge.closed == ["bad_request" if status == 400 else "header_too_large"]


def test_connections_over_the_per_client_cap_get_429_and_a_freed_slot_is_reused():
    edge = Edge(max_per_client=2)
    (first, first_transport), _ = edge.connect(), edge.connect()
    refused, refused_transport = edge.connect()
    assert responses(refused_transport) == [b"HTTP/1.1 429 Too Many Requests"]
    assert json_body(refused_transport)["error"] == "too_many_connections"
    assert refused_transport.disconnecting
    _, other_client = edge.connect("10.0.0.9")  # the cap is per address
    assert not other_client.disconnecting
    assert edge.closed == ["connection_cap"]
    first.loseConnection()
    lose(first, first_transport)
    _, again = edge.connect()
    assert not again.disconnecting and responses(again) == []


# --- item 3: drain ------------------------------------------------------------------------------------------


def test_while_draining_the_next_response_says_connection_close_and_the_connection_closes_after_it():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get())
    edge.tracker.start_draining()
    assert not transport.disconnecting  # between requests: the client may be sending its next one
    transport.clear()
    channel.dataReceived(get())
    assert b"Connection: close" in transport.value() and responses(transport) == [b"HTTP/1.1 200 OK"]
    assert transport.disconnecting


def test_an_in_flight_request_whose_response_has_not_started_gets_connection_close():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get("/slow"))
    edge.tracker.start_draining()
    request = edge.resource.waiting.pop()
    request.write(b"done")
    request.finish()
    assert b"Connection: close" in transport.value() and transport.disconnecting


def test_a_response_already_started_keeps_the_connection_so_the_next_request_is_answered_not_cut():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get("/slow"))
    request = edge.resource.waiting.pop()
    request.write(b"partial")
    edge.tracker.start_draining()
    request.finish()
    assert not transport.disconnecting
    channel.dataReceived(get())
    assert transport.value().count(b"Connection: close") == 1 and transport.disconnecting


def test_once_the_listener_is_closed_idle_connections_close_and_busy_ones_close_when_idle():
    edge = Edge()
    (idle, idle_transport), (busy, busy_transport) = edge.connect(), edge.connect("10.0.0.2")
    idle.dataReceived(get())
    busy.dataReceived(get("/slow"))
    edge.tracker.start_draining()
    edge.tracker.close_idle()
    assert idle_transport.disconnecting and not busy_transport.disconnecting
    edge.resource.waiting.pop().finish()
    assert busy_transport.disconnecting
    lose(idle, idle_transport)
    assert edge.closed == ["drain_idle"]


def test_a_connection_accepted_just_before_the_listener_closed_may_still_send_its_first_request():
    edge = Edge()
    (early, early_transport), (silent, silent_transport) = edge.connect(), edge.connect("10.0.0.2")
    edge.tracker.start_draining()
    edge.tracker.close_idle()
    assert not early_transport.disconnecting and not silent_transport.disconnecting
    early.dataReceived(get())  # its request was on the way: answered, with Connection: close
    assert responses(early_transport) == [b"HTTP/1.1 200 OK"] and b"Connection: close" in early_transport.value()
    edge.clock.advance(1.0)
    assert silent_transport.disconnecting and responses(silent_transport) == []


def test_connections_still_open_at_the_drain_timeout_are_aborted_and_counted():
    edge = Edge()
    channel, transport = edge.connect()
    channel.dataReceived(get("/slow"))
    assert edge.tracker.abort_all() == 1
    assert transport.disconnected
    lose(channel, transport)
    assert edge.closed == ["drain_timeout"]


def test_the_connection_addresses_are_asked_of_the_transport_once_and_every_request_sees_them():
    edge = Edge()
    seen = []

    class Recording(Answers):
        def render_GET(self, request):  # noqa: N802 - twisted.web's name
            seen.append((request.getHost(), request.getClientAddress()))
            return b"ok"

    edge.site.resource = Recording()
    channel, transport = edge.connect("10.0.0.7")
    asked = []
    real_get_host = transport.getHost
    transport.getHost = lambda: asked.append("host") or real_get_host()
    for _ in range(3):
        channel.dataReceived(get("/"))
        turn(edge.clock)
    assert len(responses(transport)) == 3
    assert asked == ["host"]  # Twisted would ask (a getsockname system call) once per request
    assert {(host, peer) for host, peer in seen} == {(real_get_host(), IPv4Address("TCP", "10.0.0.7", 40000))}
