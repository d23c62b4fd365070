"""The HTTP surface of a worker process or of the operations listener: only the operational endpoints.

Worker roles (``worker_odds``, ``worker_settlement``) listen so that Prometheus can scrape their metrics
(odds age, last success, feed errors) and an orchestrator can probe them; every other path answers a
JSON 404 that says what this process serves. The operations listener (``OPS_LISTEN``) answers the same
way, with its own message.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import IResource
from zope.interface import implementer

from tenantsvc.web.errors import ApiError, render_api_error

NOT_SERVED = ApiError(404, "not_found",
                      "this is a worker process: it serves only /healthz, /readyz, /health/detailed and /metrics")
OPS_NOT_SERVED = ApiError(404, "not_found", "this is the operations listener: it serves only /healthz, /readyz, "
                                            "/health/detailed and /metrics")


@implementer(IResource)
class NotServedHere:
    """A leaf resource answering every request with one 404 (the worker's by default)."""

    isLeaf = True

    def __init__(self, error: ApiError = NOT_SERVED) -> None:
        self._error = error

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        """Never called for a leaf; present for the interface."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Children are not supported."""
        raise NotImplementedError("NotServedHere has no children")

    def render(self, request: Any) -> bytes:
        """The JSON 404."""
        return render_api_error(request, self._error)


def not_served(request: Any, segments: list[bytes]) -> bytes:
    """The same 404 as a fast-path handler (for the public theme paths)."""
    return render_api_error(request, NOT_SERVED)


def not_served_on_ops(request: Any, segments: list[bytes]) -> bytes:
    """The operations listener's 404 as a fast-path handler."""
    return render_api_error(request, OPS_NOT_SERVED)
