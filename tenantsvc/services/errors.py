"""Errors that services raise for the web layer to render."""

from __future__ import annotations

from typing import Any, Mapping

from tenantsvc.core.storage_errors import DatabaseUnavailable, StatementTimeout, TransactionConflict


class NotFoundError(LookupError):
    """The named tenant, user or object does not exist."""


class Conflict(Exception):
    """The request conflicts with current state (duplicate slug, insufficient funds…)."""

    def __init__(self, code: str, message: str, extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.extra = dict(extra or {})


class Unprocessable(Exception):
    """The request is well-formed but can never succeed as asked (stake above the limit, a reused key…): 422."""

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
    """No DB connection came within the bounded wait; the interaction was withdrawn and will never run."""

    def __init__(self, retry_after_s: int, waited_s: float):
        super().__init__(f"no database connection within {waited_s:g}s; nothing was applied, "
                         f"retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s
        self.waited_s = waited_s


class DatabaseTimeout(ServiceUnavailable):
    """The DB did not answer within the overall deadline; the caller stopped waiting.

    Unlike ``PoolTimeout`` the interaction had begun, so it may still complete (a write may commit)
    after the caller was answered: retry with the same idempotency key.
    """

    def __init__(self, retry_after_s: int, deadline_s: float):
        super().__init__(f"the database did not answer within {deadline_s:g}s; "
                         f"retry in {retry_after_s}s (with the same Idempotency-Key for writes)")
        self.retry_after_s = retry_after_s
        self.deadline_s = deadline_s


class SessionStoreUnavailable(ServiceUnavailable):
    """The session store (Redis) could not be reached in time: login and authenticated routes answer 503.

    Never replaced by a per-instance fallback, which would log people in and out at random.
    """

    def __init__(self, retry_after_s: int = 2):
        super().__init__(f"the session store is unavailable; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class Overloaded(ServiceUnavailable):
    """This instance is at a self-imposed limit (e.g. password hashing queue); retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidCredentials(Exception):
    """No active account has this username and password (the same answer for both cases): 401."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


# What background work gets when the database refuses or fails it (breaker open, no connection in time, past
# the deadline, connection lost, a conflict): an expected degradation, counted and retried, never a traceback.
DB_REFUSALS: tuple[type[Exception], ...] = (ServiceUnavailable, DatabaseUnavailable, StatementTimeout,
                                            TransactionConflict)
