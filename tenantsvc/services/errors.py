"""Errors that services raise for the web layer to render."""

from __future__ import annotations

from typing import Any, Mapping


class NotFoundError(LookupError):
    """The named tenant, user or object does not exist."""


class Conflict(Exception):
    """The request conflicts with current state (duplicate slug, insufficient funds…)."""

    def __init__(self, code: str, message: str, extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.extra = dict(extra or {})


class ServiceUnavailable(Exception):
    """A dependency the operation needs is down."""


class BreakerOpen(ServiceUnavailable):
    """The DB circuit breaker refused the call; ``retry_after_s`` (whole seconds) says when to retry."""

    def __init__(self, retry_after_s: int, reason: str | None = None):
        why = f" ({reason})" if reason else ""
        super().__init__(f"the database circuit breaker is open{why}; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s
        self.reason = reason


class PoolTimeout(ServiceUnavailable):
    """No DB connection came within the bounded wait; the write was withdrawn and will never run."""

    def __init__(self, retry_after_s: int, waited_s: float):
        super().__init__(f"no database connection within {waited_s:g}s; the write was not applied, "
                         f"retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s
        self.waited_s = waited_s
