"""Correlation and request ids: which inbound values are kept, and how new ones look."""

from __future__ import annotations

import re
from typing import Callable

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def is_valid_id(value: str | None) -> bool:
    """True for an inbound id we may echo: 1–64 of [A-Za-z0-9._-] (so never CRLF or markup)."""
    return value is not None and bool(_REQUEST_ID.fullmatch(value))


def trace_id_from_traceparent(header: str | None) -> str | None:
    """The trace-id of a valid W3C ``traceparent`` header, else None."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip())
    if not match:
        return None
    version, trace_id, parent_id = match.group(1), match.group(2), match.group(3)
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def choose_ids(
    inbound_correlation: str | None,
    inbound_request: str | None,
    traceparent: str | None,
    new_id: Callable[[], str],
) -> tuple[str, str]:
    """Pick ``(correlation_id, request_id)``: keep valid inbound values, else derive or mint new ones."""
    if is_valid_id(inbound_correlation):
        correlation = inbound_correlation
    else:
        correlation = trace_id_from_traceparent(traceparent) or new_id()
    request_id = inbound_request if is_valid_id(inbound_request) else new_id()
    assert correlation is not None and request_id is not None
    return correlation, request_id
