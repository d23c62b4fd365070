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
