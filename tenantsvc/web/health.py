"""Operational endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``/health/detailed``.

``/healthz`` is static and dependency-free: importing this module loads neither psycopg2 nor
txredisapi, and the handler touches no pool, Redis or service.

``/metrics`` and ``/health/detailed`` say a lot about the process: with ``OPS_TOKEN`` they need its bearer
token, and with ``OPS_LISTEN`` only the operations listener serves them (``probes_only`` gives the main
listener's set: ``/healthz`` and ``/readyz``, the other two a plain 404).
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tenantsvc.core.clock import iso_utc_seconds
from tenantsvc.core.request_classes import OPERATIONAL
from tenantsvc.obs.exposition import exposition_chunks
from tenantsvc.web.bearer import BearerToken
from tenantsvc.web.errors import ApiError, json_bytes, respond_json
from tenantsvc.web.plain import Handler, finish_later, stream

NO_STORE = "no-store"


class Readiness:
    """Whether this process should receive traffic: started, not draining and not held by reactor lag.

    ``lag`` is the ``obs.reactor_lag.ReactorLagMonitor`` (anything with ``too_late`` and ``describe()``);
    without one, lag never holds readiness.
    """

    def __init__(self, lag: Any = None) -> None:
        self.started = False
        self.draining = False
        self._lag = lag

    def start_draining(self) -> None:
        """From now on ``/readyz`` answers 503."""
        self.draining = True

    @property
    def ready(self) -> bool:
        """True between start-up and the beginning of a drain, except while the reactor lags."""
        return self.state == "ready"

    @property
    def state(self) -> str:
        """starting, ready, lagging or draining."""
        if self.draining:
            return "draining"
        if not self.started:
            return "starting"
        return "lagging" if self._lag is not None and self._lag.too_late else "ready"

    def describe(self) -> dict[str, Any]:
        """The ``/readyz`` body: the state, and while lagging why (lag, threshold, recovery rule)."""
        state = self.state
        if state == "lagging":
            return {"status": state, **self._lag.describe()}
        return {"status": state}


def _only_get(request: Any) -> None:
    if request.method not in (b"GET", b"HEAD"):
        raise ApiError(405, "method_not_allowed", "use GET", headers={"Allow": "GET, HEAD"})


def _no_subpath(segments: list[bytes]) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics`` have no children: ``/metrics/x`` is 404, not the metrics."""
    if len(segments) != 1:
        raise ApiError(404, "not_found", "no such route")


def operational_handlers(
    *,
    clock: Any,
    version: str,
    readiness: Readiness,
    registry: CollectorRegistry,
    detailed_check: Callable[[], Any],
    ops_token: BearerToken | None = None,
) -> dict[bytes, Handler]:
    """The handlers for the first path segments healthz, readyz, metrics and health.

    With ``ops_token``, ``/metrics`` and ``/health/detailed`` answer 401 unless the request presents it.
    """
    authorize = ops_token.check if ops_token is not None else (lambda request: None)

    def healthz(request: Any, segments: list[bytes]) -> bytes:
        request.endpoint_label = "/healthz"
        request.request_class = OPERATIONAL
        _only_get(request)
        _no_subpath(segments)
        return respond_json(request, 200, {"ok": True, "status": "ok", "version": version,
                                           "timestamp": iso_utc_seconds(clock.seconds())}, {"Cache-Control": NO_STORE})

    def readyz(request: Any, segments: list[bytes]) -> bytes:
        request.endpoint_label = "/readyz"
        request.request_class = OPERATIONAL
        _only_get(request)
        _no_subpath(segments)
        body = readiness.describe()
        return respond_json(request, 200 if body["status"] == "ready" else 503, body, {"Cache-Control": NO_STORE})

    def metrics(request: Any, segments: list[bytes]) -> Any:
        request.endpoint_label = "/metrics"
        request.request_class = OPERATIONAL
        _only_get(request)
        _no_subpath(segments)
        authorize(request)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", NO_STORE.encode("ascii"))
        return stream(request, exposition_chunks(registry))

    def health(request: Any, segments: list[bytes]) -> Any:
        if segments[1:] != [b"detailed"]:
            raise ApiError(404, "not_found", "no such route")
        request.endpoint_label = "/health/detailed"
        request.request_class = OPERATIONAL
        _only_get(request)
        authorize(request)

        def render(report: dict[str, Any]) -> bytes:
            request.setResponseCode(503 if report["status"] == "fail" else 200)
            request.setHeader(b"Content-Type", b"application/health+json")
            request.setHeader(b"Cache-Control", NO_STORE.encode("ascii"))
            return json_bytes(report)

        return finish_later(request, detailed_check(), render)

    return {b"healthz": healthz, b"readyz": readyz, b"metrics": metrics, b"health": health}


def probes_only(handlers: dict[bytes, Handler]) -> dict[bytes, Handler]:
    """The main listener's share when an operations listener exists: ``/healthz`` and ``/readyz``.

    ``/metrics`` and ``/health/detailed`` answer a JSON 404 that does not say where they are served.
    """

    def not_here(request: Any, segments: list[bytes]) -> bytes:
        request.request_class = OPERATIONAL
        raise ApiError(404, "not_found", "no such route")

    return {b"healthz": handlers[b"healthz"], b"readyz": handlers[b"readyz"], b"metrics": not_here,
            b"health": not_here}
