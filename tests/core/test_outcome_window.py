"""OutcomeWindow: a sliding window of successes and failures with bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.outcome_window import OutcomeWindow


def test_counts_calls_and_failures_within_the_window():
    window = OutcomeWindow(10.0)
    for now, failed in ((0.0, True), (1.0, False), (2.5, True)):
        window.add(now, failed)
    assert window.totals(3.0) == (3, 2)


def test_outcomes_older_than_the_window_drop_out():
    window = OutcomeWindow(10.0, slices=10)
    window.add(0.5, True)
    window.add(5.5, False)
    assert window.totals(9.9) == (2, 1)
    assert window.totals(10.5) == (1, 0)  # the slice [0, 1) has left the window
    assert window.totals(16.0) == (0, 0)


def test_clear_forgets_everything():
    window = OutcomeWindow(10.0)
    window.add(1.0, True)
    window.clear()
    assert window.totals(1.0) == (0, 0)


def test_a_clock_step_backwards_lands_in_the_newest_slice():
    window = OutcomeWindow(10.0, slices=10)
    window.add(5.0, False)
    window.add(2.0, True)
    assert len(window) == 1 and window.totals(5.0) == (2, 1)


@pytest.mark.parametrize(("window_s", "slices"), [(0.0, 10), (10.0, 0)])
def test_empty_windows_are_refused(window_s, slices):
    with pytest.raises(ValueError):
        OutcomeWindow(window_s, slices)


@given(events=st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.booleans()), max_size=300))
def test_memory_stays_bounded_and_totals_never_exceed_what_was_added(events):
    window = OutcomeWindow(10.0, slices=5)
    now = 0.0
    for dt, failed in events:
        now += dt
        window.add(now, failed)
        assert len(window) <= 5
    calls, failures = window.totals(now)
    assert 0 <= failures <= calls <= len(events)
    assert failures <= sum(failed for _, failed in events)
