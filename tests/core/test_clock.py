"""core.clock: one way to turn clock seconds into UTC datetimes and ISO 8601 text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tenantsvc.core.clock import iso_utc, iso_utc_seconds, utc_datetime


def test_seconds_become_an_aware_utc_datetime():
    moment = utc_datetime(1_767_323_045.25)
    assert moment == datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)
    assert moment.utcoffset() == timedelta(0)


def test_iso_text_ends_in_z_and_keeps_fractions():
    assert iso_utc_seconds(1_767_323_045.25) == "2026-01-02T03:04:05.250000Z"
    assert iso_utc_seconds(1_767_323_045) == "2026-01-02T03:04:05Z"


def test_an_aware_datetime_in_another_zone_is_converted_to_utc():
    plus_two = timezone(timedelta(hours=2))
    assert iso_utc(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"


def test_a_naive_datetime_is_taken_as_utc():
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
