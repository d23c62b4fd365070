"""The HTTP/1.1 channel of our Site: bounded work per connection, a header deadline, JSON refusals, drain.

``twisted.web.http.HTTPChannel`` answers pipelined requests strictly one at a time, keeping the bytes of
the ones behind the head as raw input (at most ~16 KiB plus one socket read before it stops reading). What
it does not bound is the answering: every request already received is parsed and answered back to back
in one reactor turn, whether or not the peer reads the answers, and the transport pausing the channel
(its write buffer above ``bufferSize``) only stops the socket reads, not the parsing of bytes already
buffered. A peer that pipelines hundreds of ``GET /metrics`` and never reads therefore had every answer
queued in memory, and blocked the reactor while they were rendered. ``EdgeChannel`` adds:

- at most ``max_pipelined`` requests answered back to back from bytes already received: then the
  connection "parks" (stops reading and parsing) and queues for a ``PipelineScheduler``, which resumes
  parked connections round robin within a small time budget per reactor turn, so pipelined work on many
  connections cannot hold the reactor: sockets are polled (and ``/healthz`` answered) between two slices;
- parking while the transport's write buffer is above ``write_buffer_bytes`` (the transport's own pause
  signal, with its ``bufferSize`` set to that limit): nothing more is parsed or read until the peer has
  taken the answers; if it has not within ``write_timeout_s`` the connection is aborted (``peer_not_reading``);
- an absolute deadline for a request's headers, ``header_timeout_s`` from their first byte (Twisted's idle
  timeout restarts with every line, which is what slowloris relies on): 408 JSON, then close;
- JSON answers instead of Twisted's bare ``400 Bad Request`` or silent close: 414 for a request line over
  ``MAX_LENGTH``, 431 for a header line over ``MAX_LENGTH``, a header section over ``totalHeadersSize``
  or more than ``maxHeaders`` headers, 400 for anything else malformed; each then closes;
- header lines seen before taken from a process-wide table (``header_lines``) instead of parsed again;
- drain: once ``start_draining`` is called every response carries ``Connection: close`` and the
  connection closes after it; ``close_when_idle`` closes it as soon as no request is in progress.

Every close for one of these reasons is reported to the ``ConnectionTracker`` (metrics and eliot).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.web.http import HTTPChannel

from tenantsvc.obs.metrics import CONNECTION_CLOSE_REASONS
from tenantsvc.web.errors import json_bytes
from tenantsvc.web.header_lines import HEADER_LINES
from tenantsvc.web.request import add_request_header

# Reasons a connection is closed by us (label values of http_connections_closed_total).
(HEADER_DEADLINE, CONNECTION_CAP, PEER_NOT_READING, HEADER_TOO_LARGE, BAD_REQUEST, DRAIN_IDLE,
 DRAIN_TIMEOUT) = CONNECTION_CLOSE_REASONS

# Once the listener is closed, a connection accepted just before that has this long to send its first request.
FIRST_REQUEST_GRACE_S = 1.0
_REASON_PHRASES = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long",
                   429: b"Too Many Requests", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class EdgeLimits:
    """Per-connection limits of the HTTP edge (``HTTP_*`` settings)."""

    max_pipelined: int = 1
    write_buffer_bytes: int = 64 * 1024
    write_timeout_s: float = 30.0
    header_timeout_s: float = 10.0


def error_response(status: int, code: str, message: str, extra_headers: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response with the service's JSON error body and ``Connection: close``."""
    body = json_bytes({"error": code, "message": message})
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n%s\r\n" % (
                status, _REASON_PHRASES.get(status, b"Error"), len(body), extra_headers)) + body


def _cancel(call: Any) -> None:
    """Cancel the delayed ``call`` (None or one already run or cancelled is fine)."""
    if call is not None and call.active():
        call.cancel()


class PipelineScheduler:
    """Resumes parked connections round robin, at most ``budget_s`` of work per reactor turn.

    A connection that answered its burst of pipelined requests (or whose peer finally read) queues here
    instead of carrying on at once; one timed call per turn resumes queued connections until the budget
    is spent (at least one each turn), then yields to the reactor so it polls every socket again.
    """

    def __init__(self, clock: Any, budget_s: float = 0.005):
        self._clock = clock
        self._budget_s = budget_s
        self._queue: deque[Any] = deque()
        self._call: Any = None

    def __len__(self) -> int:
        return len(self._queue)

    def defer(self, resume: Callable[[], None]) -> None:
        """Run ``resume()`` in a later turn, after the connections queued before it."""
        self._queue.append(resume)
        if self._call is None:
            self._call = self._clock.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        started = time.monotonic()
        queue = self._queue
        for _ in range(len(queue)):  # connections re-queued by this run wait for the next turn
            queue.popleft()()
            if time.monotonic() - started >= self._budget_s:
                break
        if queue and self._call is None:
            self._call = self._clock.callLater(0, self._run)


class EdgeChannel(HTTPChannel):
    """``HTTPChannel`` with bounded pipelining, write backpressure, a header deadline, JSON refusals and drain.

    ``clock`` provides ``seconds`` and ``callLater``; ``tracker`` (a ``ConnectionTracker``) is told when the
    connection closes and why; ``peer`` is the client address the tracker counts it under; ``scheduler``
    (shared by the site's connections) resumes parked connections.
    """

    transport: Any  # a TCP transport (bufferSize, abortConnection): set by makeConnection before any callback

    def __init__(self, limits: EdgeLimits, clock: Any, tracker: Any, peer: str | None = None,
                 scheduler: PipelineScheduler | None = None):
        super().__init__()
        self._limits = limits
        self._clock = clock
        self._tracker = tracker
        self._scheduler = scheduler if scheduler is not None else PipelineScheduler(clock)
        self.peer = peer
        self.close_reason: str | None = None
        self._answered_in_burst = 0
        self._parked = False  # a request is done but the next is not parsed yet (see _park)
        self._resume_queued = False
        self._write_deadline: Any = None
        self._header_deadline: Any = None
        self._awaiting_headers = True  # between requests, or while a request's head is arriving
        self._draining = False
        self._close_when_idle = False
        self._refused = False
        self._lost = False
        self._served = 0  # requests answered on this connection
        self._addresses: tuple[Any, Any] | None = None  # (local, peer), asked of the transport once

    # --- connection ---------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Start as Twisted does, with the transport's write-buffer limit set to ``write_buffer_bytes``."""
        super().connectionMade()
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = self._limits.write_buffer_bytes
        self._tracker.opened(self)

    def connectionLost(self, reason: Any = None) -> None:
        """Cancel our timers, then let Twisted fail the requests still in progress; tell the tracker."""
        self._lost = True
        self._cancel_write_deadline()
        self._cancel_header_deadline()
        super().connectionLost(reason)
        self._tracker.closed(self)

    def getHost(self) -> Any:  # noqa: N802 - Twisted's name
        """The connection's local address. It is fixed for the connection's life, so the socket is asked once
        (Twisted asks on every request: a ``getsockname`` system call each, ~7 % of a cache hit's CPU)."""
        return self._fixed_addresses()[0]

    def getPeer(self) -> Any:  # noqa: N802 - Twisted's name
        """The peer's address (fixed too: one address object per connection instead of one per request)."""
        return self._fixed_addresses()[1]

    def _fixed_addresses(self) -> tuple[Any, Any]:
        addresses = self._addresses
        if addresses is None:
            addresses = self._addresses = (self.transport.getHost(), self.transport.getPeer())
        return addresses

    def _close(self, reason: str, *, abort: bool = False) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        if abort:
            self.transport.abortConnection()
        else:
            self.loseConnection()

    @property
    def _going(self) -> bool:
        """True once the connection is lost or closing: nothing more is to be done with it."""
        return self._lost or self.transport.disconnecting

    @property
    def idle(self) -> bool:
        """True when no request is in progress and no byte of a next one has arrived."""
        return not self.requests and not self._parked and not self._head_pending()

    # --- reading and parsing ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the peer: parse, then arm the header deadline if a request's head is now incomplete.

        The deadline counts from the read that brought the head's first byte: a read that holds whole
        requests (the usual case) arms nothing.
        """
        self._answered_in_burst = 0
        super().dataReceived(data)
        if self._header_deadline is None and self._awaiting_headers and (self._buffer or self.requests):
            self._arm_header_deadline()

    def headerReceived(self, line: bytes) -> bool:  # noqa: N802 - Twisted's name
        """Store one header line of the request being read, as Twisted would: from the process's table of
        lines seen before (``header_lines``), else by Twisted's own parser (malformed lines, the body's
        framing, credentials, long lines). False once the request is refused."""
        parsed = HEADER_LINES.parse(line)
        if parsed is None:
            return bool(super().headerReceived(line))
        add_request_header(self.requests[-1], *parsed)
        self._receivedHeaderCount += 1
        if self._receivedHeaderCount > self.maxHeaders:
            self._respondToBadRequestAndDisconnect()
            return False
        return True

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line over ``MAX_LENGTH``: 414 for the request line, 431 for a header line (Twisted just closed)."""
        if not self.requests:  # no request line parsed yet: this is it
            self._refuse(414, HEADER_TOO_LARGE, "uri_too_long", f"the request line exceeds {self.MAX_LENGTH} bytes")
        else:
            self._refuse(431, HEADER_TOO_LARGE, "header_too_large",
                         f"a header line exceeds {self.MAX_LENGTH} bytes")

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 - Twisted's name
        """Twisted's answer to a malformed request: 431 JSON when the head grew over its limits (Twisted
        counts them as it parses), else the service's JSON 400."""
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._refuse(431, HEADER_TOO_LARGE, "header_too_large",
                         f"the request head exceeds {self.totalHeadersSize} bytes")
        elif self._receivedHeaderCount > self.maxHeaders:
            self._refuse(431, HEADER_TOO_LARGE, "header_too_large", f"more than {self.maxHeaders} header fields")
        else:
            self._refuse(400, BAD_REQUEST, "bad_request", "malformed HTTP request")

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        if self._refused:
            return
        self._refused = True
        self.persistent = False
        self._cancel_header_deadline()
        self.transport.write(error_response(status, code, message))
        self._close(reason)

    def allHeadersReceived(self) -> None:
        """The head is complete: the header deadline no longer applies to this request."""
        self._awaiting_headers = False
        self._cancel_header_deadline()
        super().allHeadersReceived()

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """Twisted's rule, except that while draining every response closes the connection."""
        persistent = super().checkPersistence(request, version)
        if persistent and self._draining:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return persistent

    # --- the header deadline ------------------------------------------------------------------------

    def _head_pending(self) -> bool:
        return self._awaiting_headers and not self._handlingRequest and bool(self.requests or self._buffer)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None or self._refused or not self._head_pending():
            return
        self._header_deadline = self._clock.callLater(self._limits.header_timeout_s, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        _cancel(self._header_deadline)
        self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self._head_pending():
            self._refuse(408, HEADER_DEADLINE, "header_timeout",
                         f"the request head did not arrive within {self._limits.header_timeout_s:g} s")

    # --- answering: bounded bursts and write backpressure ---------------------------------------------

    def requestDone(self, request: Any) -> None:
        """The head request is answered: go on with the next one, or park (write buffer full, or the burst
        bound reached with another request already received). A keep-alive connection with nothing pipelined
        takes Twisted's path unchanged."""
        self._answered_in_burst += 1
        self._served += 1
        self._awaiting_headers = True
        # Park when the write buffer is full, or when the burst is over and a next request is already here.
        if self.persistent and (self._waitingForTransport or (
                self._answered_in_burst >= self._limits.max_pipelined and (self._buffer or self._dataBuffer))) \
                and request is self.requests[0]:
            self._park()
            return
        super().requestDone(request)
        if self.persistent and self._close_when_idle:
            self._after_request()

    def _park(self) -> None:
        """Finish the head request's bookkeeping but leave the channel "handling": bytes that arrive are kept
        raw (and reading stops), nothing is parsed until ``_unpark``."""
        del self.requests[0]
        self._parked = True
        self._networkProducer.pauseProducing()
        if not self._waitingForTransport:  # only the burst bound: give the other connections a turn
            self._queue_resume()

    def _queue_resume(self) -> None:
        if not self._resume_queued:
            self._resume_queued = True
            self._scheduler.defer(self._unpark)

    def _unpark(self) -> None:
        self._resume_queued = False
        if not self._parked or self._waitingForTransport or self._going:
            return
        self._parked = False
        self._answered_in_burst = 0
        self._handlingRequest = False
        self._networkProducer.resumeProducing()
        if self._savedTimeOut:
            self.setTimeout(self._savedTimeOut)
        data, self._dataBuffer = b"".join(self._dataBuffer), []
        self.setLineMode(data)
        self._after_request()

    def _after_request(self) -> None:
        # (A next request's head, if any, is parsed by dataReceived, which arms its deadline.)
        if self._close_when_idle and not self._going and self.idle:
            self._close(DRAIN_IDLE)

    def pauseProducing(self) -> None:
        """The transport's write buffer is over the limit: stop, and give the peer ``write_timeout_s`` to read."""
        super().pauseProducing()
        if self._write_deadline is None:
            self._write_deadline = self._clock.callLater(self._limits.write_timeout_s, self._peer_not_reading)

    def resumeProducing(self) -> None:
        """The peer took everything written: carry on (and parse what a park held back)."""
        self._cancel_write_deadline()
        super().resumeProducing()
        if self._parked:
            self._queue_resume()

    def _cancel_write_deadline(self) -> None:
        _cancel(self._write_deadline)
        self._write_deadline = None

    def _peer_not_reading(self) -> None:
        self._write_deadline = None
        self._close(PEER_NOT_READING, abort=True)

    # --- drain --------------------------------------------------------------------------------------

    def start_draining(self) -> None:
        """From now on every response says ``Connection: close`` and the connection closes after it.

        A request in progress whose response has not started yet gets the header too; one whose headers
        already went out keeps the connection open, so the client's next request is answered (with
        ``Connection: close``) rather than cut.
        """
        self._draining = True
        if self.requests and self._handlingRequest:
            head = self.requests[0]
            if not head.startedWriting:
                head.responseHeaders.setRawHeaders(b"Connection", [b"close"])
                self.persistent = False

    def close_when_idle(self) -> None:
        """Close now if idle, else as soon as the connection becomes idle (the listener is closed).

        A connection that has not sent its first request yet was just accepted: its client is about to
        send it, and closing now would cut that request. It gets ``FIRST_REQUEST_GRACE_S`` to send it (it is
        then answered with ``Connection: close``); still silent after that, it is closed.
        """
        self._close_when_idle = True
        if not self.idle or self._going:
            return
        if self._served:
            self._close(DRAIN_IDLE)
        else:
            self._clock.callLater(FIRST_REQUEST_GRACE_S, self._close_if_still_silent)

    def _close_if_still_silent(self) -> None:
        if self.idle and not self._served and not self._going:
            self._close(DRAIN_IDLE)

    def abort_for_drain(self) -> None:
        """The drain timeout passed with this connection still open: abort it."""
        self._close(DRAIN_TIMEOUT, abort=True)
