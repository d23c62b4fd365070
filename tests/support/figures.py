"""Small summaries behind the figures tests and bench print: a nearest-rank quantile and wrk's socket errors."""

from __future__ import annotations

import re

_WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def quantile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank quantile, or None for no values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))] if ordered else None


def wrk_socket_errors(text: str) -> dict[str, int]:
    """wrk's socket errors by kind (connect, read, write, timeout) from its output; {} when it reported none."""
    found = _WRK_SOCKET_ERRORS.search(text)
    return dict(zip(("connect", "read", "write", "timeout"), map(int, found.groups()))) if found else {}
