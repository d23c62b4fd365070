"""The HTTP listener as a Service: listens on a Twisted endpoint string and drains on stop.

The drain, as Kubernetes and Fly expect it: readiness is already 503 (``before_stop``); every connection
answers ``Connection: close`` from now on; the listener stays open for ``prestop_delay_s`` so the load
balancer sees the 503 and stops routing new connections here; then it closes without resetting anyone
(``web.listener``: new handshakes refused, the accept queue drained at the close), idle keep-alive connections
are closed, and the others close after their current response, within ``drain_timeout_s`` (after which
what is left is aborted).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from eliot import log_message
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.web.server import Site

from tenantsvc.web.channel import EdgeChannel, EdgeLimits, PipelineScheduler
from tenantsvc.web.connections import ConnectionTracker, RefuseOverCap
from tenantsvc.web.health import Readiness
from tenantsvc.web.listener import HANDSHAKE_GRACE_S, accept_pending_when_closing, refuse_new_handshakes
from tenantsvc.web.root import RootResource

DRAIN_POLL_S = 0.05
WARM_UP_GRACE_S = 10.0


class QuietSite(Site):
    """A Site without Twisted's per-request access log line: the root resource logs requests with eliot."""

    def log(self, request: Any) -> None:
        """Access logging happens in ``RootResource`` (one eliot task per request)."""


class EdgeSite(QuietSite):
    """Our Site: every connection is an ``EdgeChannel`` (bounded work, header deadline, drain) counted by
    ``tracker``, which also refuses connections over its per-client cap."""

    def __init__(self, resource: Any, *, reactor: Any, limits: EdgeLimits, tracker: ConnectionTracker):
        super().__init__(resource, reactor=reactor)
        self.limits = limits
        self.tracker = tracker
        self.scheduler = PipelineScheduler(reactor)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        """An ``EdgeChannel`` for a client within the cap, else a protocol that answers 429 and closes."""
        peer = getattr(addr, "host", None)
        if not self.tracker.admit(peer):
            refusal = RefuseOverCap()
            refusal.factory = self
            return refusal
        channel = EdgeChannel(self.limits, self.reactor, self.tracker, peer, self.scheduler)
        channel.factory = self
        channel.callLater = self.reactor.callLater  # type: ignore[method-assign,assignment]  # as Site.buildProtocol
        channel.timeOut = self.timeOut  # type: ignore[assignment]
        channel.requestFactory = self.requestFactory
        channel.site = self  # type: ignore[attr-defined]
        return channel


class WebService(Service):
    """Starts listening, marks the process ready; on stop goes not-ready, stops accepting, waits for in-flight.

    With ``warmed`` (a Deferred that fires when start-up work such as the first theme warm is done,
    successfully or not) the process becomes ready only once it has fired, or after ``warm_up_grace_s``
    at most, so a load balancer never routes to an instance that would answer every tenant with the
    default theme, while a database that is down at start-up still cannot keep it unready.

    The operations listener (``OPS_LISTEN``) is a second ``WebService`` (``name="ops"``) that drains the same
    way but does not mark the process ready (``marks_ready=False``): readiness follows the main listener.
    ``what`` names the listener in the start-up error when it cannot bind.
    """

    name = "web"  # type: ignore[assignment]  # Twisted declares Service.name = None

    def __init__(self, *, reactor: Any, listen: str, site: EdgeSite, root: RootResource, readiness: Readiness,
                 drain_timeout_s: float = 10.0, warmed: Deferred | None = None,
                 warm_up_grace_s: float = WARM_UP_GRACE_S, prestop_delay_s: float = 0.0, name: str = "web",
                 marks_ready: bool = True, what: str = "the main listener (--listen/PORT)"):
        self.name = name
        self._marks_ready = marks_ready
        self._what = what
        self._reactor = reactor
        self._listen = listen
        self._site = site
        self._root = root
        self._readiness = readiness
        self._drain_timeout_s = drain_timeout_s
        self._prestop_delay_s = prestop_delay_s
        self._warmed = warmed
        self._warm_up_grace_s = warm_up_grace_s
        self._grace: Any = None
        self.port: Any = None

    def startService(self) -> None:
        """Listen; a failure to bind stops the process with one clear line."""
        super().startService()
        endpoint = serverFromString(self._reactor, self._listen)
        endpoint.listen(self._site).addCallbacks(self._listening, self._cannot_listen)

    def _listening(self, port: Any) -> None:
        self.port = port
        address = port.getHost()
        log_message("tenantsvc:web:listening", address=str(getattr(address, "host", address)),
                    port=getattr(address, "port", 0), listener=self.name)
        if not self._marks_ready:
            return
        if self._warmed is None:
            self._ready("listening")
            return
        self._grace = self._reactor.callLater(self._warm_up_grace_s, self._ready, "warm_up_grace_expired")

        def warmed(_: object) -> None:
            if self._grace.active():
                self._grace.cancel()
                self._ready("warmed")

        self._warmed.addBoth(warmed)

    def _ready(self, reason: str) -> None:
        self._readiness.started = True
        log_message("tenantsvc:web:ready", reason=reason)

    def _cannot_listen(self, failure: Any) -> None:
        """Say which listener could not bind, on the real stderr and in the log, and stop with exit status 1."""
        error = failure.getErrorMessage()
        # twistd has replaced sys.stderr with a log file by now: the operator's terminal is sys.__stderr__.
        (sys.__stderr__ or sys.stderr).write(f"tenantsvc: cannot listen on {self._listen} for {self._what}: {error}\n")
        log_message("tenantsvc:web:cannot_listen", listener=self.name, endpoint=self._listen, error=error)
        stop_with_exit_status(self._reactor, 1)

    def stopService(self) -> Deferred:
        """Drain: readiness 503, ``Connection: close`` everywhere, the pre-stop delay, close the listener,
        then wait (bounded) for in-flight requests and open connections."""
        super().stopService()
        self._readiness.start_draining()
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._site.tracker.start_draining()
        return ensureDeferred(self._drain(self._site.tracker))

    async def _drain(self, tracker: ConnectionTracker) -> None:
        if self.port is not None and self._prestop_delay_s > 0:
            log_message("tenantsvc:web:prestop", delay_s=self._prestop_delay_s)
            await _sleep(self._reactor, self._prestop_delay_s)
        if self.port is not None:
            if refuse_new_handshakes(self.port):
                await _sleep(self._reactor, HANDSHAKE_GRACE_S)
            accept_pending_when_closing(self.port)
            await maybeDeferred(self.port.stopListening)  # IListeningPort may return None
        tracker.close_idle()

        def busy() -> bool:
            return self._root.in_flight > 0 or tracker.open_count > 0

        waited = 0.0
        while busy() and waited < self._drain_timeout_s:
            await _sleep(self._reactor, DRAIN_POLL_S)
            waited += DRAIN_POLL_S
        aborted = tracker.abort_all()
        log_message("tenantsvc:web:drained", in_flight=self._root.in_flight, waited_s=round(waited, 3),
                    aborted_connections=aborted, listener=self.name)


def stop_with_exit_status(reactor: Any, status: int) -> None:
    """Stop the reactor (now, or as soon as it runs: a TCP bind fails before it does) and exit with ``status``.

    twistd has no exit status of its own, so a start-up failure would end with 0 and look like a clean stop.
    The exit happens after the shutdown: every service has stopped (the log flushed) by then.
    """

    def exit_now() -> None:
        sys.stdout.flush()
        (sys.__stderr__ or sys.stderr).flush()
        os._exit(status)

    reactor.addSystemEventTrigger("after", "shutdown", exit_now)
    if reactor.running:
        reactor.stop()
    else:
        reactor.callWhenRunning(reactor.stop)


def _sleep(clock: Any, seconds: float) -> Deferred:
    from twisted.internet.task import deferLater

    return deferLater(clock, seconds, lambda: None)
