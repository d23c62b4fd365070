"""Exponential backoff with 50–150 % jitter and a cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.backoff import backoff_delay


@pytest.mark.parametrize(("attempt", "nominal"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0)])
def test_nominal_delay_doubles_per_attempt(attempt, nominal):
    assert backoff_delay(attempt, 1.0, 60.0, lambda: 0.5) == pytest.approx(nominal)


def test_jitter_spans_half_to_one_and_a_half_of_nominal():
    assert backoff_delay(2, 1.0, 60.0, lambda: 0.0) == pytest.approx(2.0)
    assert backoff_delay(2, 1.0, 60.0, lambda: 0.999999) == pytest.approx(6.0, rel=1e-5)


def test_cap_limits_the_nominal_delay():
    assert backoff_delay(10, 1.0, 30.0, lambda: 0.5) == pytest.approx(30.0)


def test_huge_attempt_numbers_do_not_overflow():
    assert backoff_delay(10_000, 0.5, 30.0, lambda: 0.5) == pytest.approx(30.0)


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.001, max_value=10.0),
    cap=st.floats(min_value=0.001, max_value=600.0),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_always_within_50_to_150_percent_of_the_capped_nominal(attempt, base, cap, jitter):
    nominal = min(cap, base * 2 ** attempt)
    delay = backoff_delay(attempt, base, cap, lambda: jitter)
    assert 0.5 * nominal * (1 - 1e-9) <= delay <= 1.5 * nominal * (1 + 1e-9)
