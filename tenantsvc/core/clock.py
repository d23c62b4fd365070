"""Time as the service shows it: clock seconds as UTC datetimes, datetimes as ISO 8601 text.

Pure, like the rest of core: callers pass the seconds (a clock's ``seconds()``, Unix time); nothing here
reads a clock. Every timestamp the service writes in JSON goes through ``iso_utc``, so they all read alike:
``2026-01-02T03:04:05.250000+00:00`` is written ``2026-01-02T03:04:05.250000Z``.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_datetime(seconds: float) -> datetime:
    """Unix time ``seconds`` as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def iso_utc(moment: datetime) -> str:
    """``moment`` in UTC as ISO 8601 with a ``Z`` suffix; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def iso_utc_seconds(seconds: float) -> str:
    """Unix time ``seconds`` as ISO 8601 UTC with a ``Z`` suffix."""
    return iso_utc(utc_datetime(seconds))
