"""``PeakWindow``: the maximum over a sliding window, never missing a peak younger than ``covers_s``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.peak_window import PeakWindow

STEPS = st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(0, 100)), max_size=80)


def test_a_brief_peak_between_two_reads_is_seen_by_both_readers():
    window = PeakWindow(60.0)
    window.observe(3, now=100.0)  # 3 connections in use for a moment, back to 0 before anyone reads
    assert window.peak(now=104.0, current=0) == 3  # scraper A
    assert window.peak(now=105.0, current=0) == 3  # scraper B is not robbed of it by A's read
    assert window.peak(now=100.0 + window.covers_s, current=0) == 3


def test_the_peak_expires_after_the_window_and_the_current_value_always_counts():
    window = PeakWindow(60.0)
    window.observe(7, now=0.0)
    assert window.peak(now=61.0, current=2) == 2
    assert window.peak(now=3600.0, current=5) == 5  # high without changing for an hour: still high


@given(STEPS)
def test_the_peak_lies_between_the_maxima_of_the_covered_span_and_of_the_whole_window(steps):
    window = PeakWindow(60.0, slices=12)
    now, seen = 1_000.0, []
    for advance, value in steps:
        now += advance
        window.observe(value, now)
        seen.append((now, value))
        peak = window.peak(now, current=0)
        covered = [v for t, v in seen if now - t <= window.covers_s]
        within = [v for t, v in seen if now - t <= window.window_s]
        assert max(covered, default=0) <= peak <= max(within, default=0)
        assert len(window) <= 12


def test_a_clock_step_backwards_counts_in_the_newest_slice():
    window = PeakWindow(10.0, slices=2)
    window.observe(1, now=100.0)
    window.observe(9, now=50.0)
    assert window.peak(now=100.0, current=0) == 9
    assert len(window) == 1


def test_a_window_must_have_a_length_and_a_slice():
    with pytest.raises(ValueError):
        PeakWindow(0)
    with pytest.raises(ValueError):
        PeakWindow(10, slices=0)
