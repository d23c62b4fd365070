"""The open HTTP connections of a process: counted per client address (the cap), closed on drain, reported.

The client of a connection is its socket peer. A proxy header (``TRUSTED_PROXY_HEADER``) names a client
per *request*, after the connection has been accepted, so it cannot decide whether to accept one: behind a
proxy every connection's peer is the proxy, and the per-client cap is off by default there (see
``config``). A connection over the cap is answered ``429`` (JSON, ``Connection: close``) and closed at once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from eliot import log_message
from twisted.internet.protocol import Protocol

from tenantsvc.web.channel import CONNECTION_CAP, error_response

# Refusals at the cap are logged at most this often (with how many there were): a connect flood must
# not become a log flood.
CAP_LOG_INTERVAL_S = 10.0


class ConnectionTracker:
    """Open ``EdgeChannel``s, per-peer counts, the per-peer cap, and what to do when one closes.

    ``on_closed(reason)`` is called for every connection we closed for a reason (``channel.CLOSE_REASONS``);
    ``max_per_client`` 0 means no cap.
    """

    def __init__(self, clock: Any, *, max_per_client: int = 0, on_closed: Callable[[str], None] = lambda r: None):
        self._clock = clock
        self._max_per_client = max_per_client
        self._on_closed = on_closed
        self._per_peer: Counter[str] = Counter()
        self.channels: set[Any] = set()
        self._draining = False
        self._closing_idle = False
        self._cap_refused_unlogged = 0
        self._cap_logged_at: float | None = None

    @property
    def open_count(self) -> int:
        """Connections open now (the ``http_connections_open`` gauge)."""
        return len(self.channels)

    def admit(self, peer: str | None) -> bool:
        """Whether a new connection from ``peer`` is within the cap; if so it is counted from now on."""
        if peer is not None and self._max_per_client and self._per_peer[peer] >= self._max_per_client:
            self._cap_refused(peer)
            return False
        if peer is not None:
            self._per_peer[peer] += 1
        return True

    def _cap_refused(self, peer: str) -> None:
        self._on_closed(CONNECTION_CAP)
        self._cap_refused_unlogged += 1
        now = self._clock.seconds()
        if self._cap_logged_at is None or now - self._cap_logged_at >= CAP_LOG_INTERVAL_S:
            log_message("tenantsvc:http:connection_refused", reason=CONNECTION_CAP, peer=peer,
                        refused=self._cap_refused_unlogged, cap=self._max_per_client)
            self._cap_logged_at, self._cap_refused_unlogged = now, 0

    def opened(self, channel: Any) -> None:
        """``channel`` is connected: track it (and drain it at once if a drain is under way)."""
        self.channels.add(channel)
        if self._draining:
            channel.start_draining()
        if self._closing_idle:
            channel.close_when_idle()

    def closed(self, channel: Any) -> None:
        """``channel`` is gone: uncount it and report why we closed it, if we did."""
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        if channel.peer is not None:
            self._per_peer[channel.peer] -= 1
            if self._per_peer[channel.peer] <= 0:
                del self._per_peer[channel.peer]
        reason = channel.close_reason
        if reason is not None:
            self._on_closed(reason)
            log_message("tenantsvc:http:connection_closed", reason=reason, peer=channel.peer or "")

    def start_draining(self) -> None:
        """Every open and future connection answers ``Connection: close`` from now on."""
        self._draining = True
        for channel in list(self.channels):
            channel.start_draining()

    def close_idle(self) -> None:
        """The listener is closed: close idle connections now and the others once they become idle."""
        self._closing_idle = True
        for channel in list(self.channels):
            channel.close_when_idle()

    def abort_all(self) -> int:
        """Abort every connection still open (the drain timeout passed); returns how many there were."""
        remaining = list(self.channels)
        for channel in remaining:
            channel.abort_for_drain()
        return len(remaining)


class RefuseOverCap(Protocol):
    """What a connection over the per-client cap gets: a 429 JSON answer, then the connection closes."""

    transport: Any  # set by makeConnection before connectionMade

    def connectionMade(self) -> None:
        """Answer and close (after the answer is written)."""
        self.transport.write(error_response(
            429, "too_many_connections", "too many connections from this address", b"Retry-After: 1\r\n"))
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Whatever the client sent is ignored."""
