"""Typed errors of the odds/results feed, shared by the parsers, the HTTP client and the workers.

Each error has a short ``kind`` (a bounded metric label: ``feed_errors_total{kind}``) and, where the
feed said when to come back, ``retry_after_s``. Messages never contain the API key or the feed URL.
"""

from __future__ import annotations


class FeedError(Exception):
    """Something about a feed fetch or document that means: do not save, try again later."""

    kind = "error"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FeedRejected(FeedError):
    """The document arrived but says it holds no usable data (status not 200, ``ts`` 0, no categories, an error message)."""

    kind = "rejected"


class FeedMalformed(FeedError):
    """The document is not the shape we know (not JSON, wrong types where the shape is fixed)."""

    kind = "malformed"


class FeedHttpError(FeedError):
    """The feed answered with a non-200 status; ``status`` is kept, 429 and 5xx are retried with backoff."""

    def __init__(self, status: int, message: str = "", *, retry_after_s: float | None = None):
        super().__init__(message or f"feed answered HTTP {status}", retry_after_s=retry_after_s)
        self.status = status

    @property
    def kind(self) -> str:  # type: ignore[override]
        """``rate_limited`` for 429, ``server_error`` for 5xx, ``http_error`` otherwise."""
        if self.status == 429:
            return "rate_limited"
        if 500 <= self.status <= 599:
            return "server_error"
        return "http_error"


class FeedTimeout(FeedError):
    """The feed did not answer (connect or whole response) within the configured timeout."""

    kind = "timeout"


class FeedUnreachable(FeedError):
    """The connection failed or broke (refused, reset, DNS)."""

    kind = "unreachable"


FEED_ERROR_KINDS: tuple[str, ...] = (
    "rejected", "malformed", "rate_limited", "server_error", "http_error", "timeout", "unreachable", "error",
)
