"""One way to render every error: JSON ``{"error": code, "message": text}`` with the right status.

Service and database exceptions are mapped to HTTP here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from tenantsvc.core.storage_errors import (
    DatabaseUnavailable,
    InteractionAbandoned,
    StatementTimeout,
    TransactionConflict,
)
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.services.errors import Conflict, InvalidCredentials, NotFoundError, ServiceUnavailable, Unprocessable

JSON_TYPE = b"application/json"
# Reason phrases Twisted does not know (it would send "Unknown Status").
REASON_PHRASES = {422: b"Unprocessable Content", 429: b"Too Many Requests"}


class ApiError(Exception):
    """An HTTP error answer: status, machine-readable code, human message and optional extras."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON payload."""
        return {"error": self.code, "message": self.message, **self.extra}


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def respond_json(request: Any, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> bytes:
    """Set status and JSON content type (plus ``headers``) on ``request`` and return the body bytes."""
    request.setResponseCode(status, REASON_PHRASES.get(status))
    request.setHeader(b"Content-Type", JSON_TYPE)
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))
    return json_bytes(payload)


def render_api_error(request: Any, error: ApiError) -> bytes:
    """Write ``error`` as the response (status, headers, JSON body) and return the body."""
    return respond_json(request, error.status, error.body(), error.headers)


def unavailable(message: str, retry_after_s: int = 5) -> ApiError:
    """A 503 with ``Retry-After`` for a dependency that is down or overloaded."""
    return ApiError(503, "unavailable", message, headers={"Retry-After": str(retry_after_s)},
                    extra={"retry_after": retry_after_s})


def to_api_error(error: BaseException) -> ApiError | None:
    """Map a known service/database exception to its HTTP answer; None for unexpected exceptions."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ValidationFailed):
        return ApiError(422, "validation_failed", "some fields are invalid", extra={"fields": error.errors})
    if isinstance(error, InvalidCredentials):
        return ApiError(401, "invalid_credentials", str(error))
    if isinstance(error, NotFoundError):
        return ApiError(404, "not_found", str(error))
    if isinstance(error, Conflict):
        return ApiError(409, error.code, str(error), extra=error.extra)
    if isinstance(error, Unprocessable):
        return ApiError(422, error.code, str(error), extra=error.extra)
    if isinstance(error, StatementTimeout):
        return unavailable("the database took too long to answer", 2)
    if isinstance(error, TransactionConflict):
        return unavailable("the database aborted a conflicting transaction; nothing was applied, retry", 1)
    if isinstance(error, ServiceUnavailable):
        return unavailable(str(error), getattr(error, "retry_after_s", 5))
    if isinstance(error, (DatabaseUnavailable, InteractionAbandoned)):
        return unavailable("the database is unavailable; try again shortly")
    return None


def internal_error(correlation_id: str) -> ApiError:
    """The 500 answer: names the correlation id so support can find the logged traceback."""
    return ApiError(500, "internal_error", "unexpected server error", extra={"correlation_id": correlation_id})
