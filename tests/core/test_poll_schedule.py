"""The odds poller's schedule arithmetic: staggered starts, jittered periods, backoff honouring Retry-After."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.backoff import backoff_delay
from tenantsvc.core.odds import SPORTS
from tenantsvc.core.poll_schedule import (
    RETRY_AFTER_CAP_S, honoured_retry_after, jittered, retry_delay, stagger_offsets,
)

ALMOST_ONE = 0.999
periods = st.floats(min_value=0.001, max_value=1e6)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def test_sports_start_evenly_spread_over_one_period_in_the_given_order():
    assert stagger_offsets(["soccer", "tennis", "golf", "darts"], 60.0) == {
        "soccer": 0.0, "tennis": 15.0, "golf": 30.0, "darts": 45.0}


def test_no_sports_means_no_offsets():
    assert stagger_offsets([], 60.0) == {}


def test_a_sport_named_twice_is_refused():
    with pytest.raises(ValueError, match="one loop"):
        stagger_offsets(["soccer", "tennis", "soccer"], 60.0)


@pytest.mark.parametrize("period", [0.0, -5.0, math.nan])
def test_a_period_that_is_not_positive_is_refused(period):
    with pytest.raises(ValueError, match="positive"):
        stagger_offsets(["soccer"], period)


@given(count=st.integers(min_value=1, max_value=len(SPORTS)), period=periods)
def test_offsets_are_distinct_and_within_one_period(count, period):
    offsets = stagger_offsets(SPORTS[:count], period)
    assert list(offsets) == list(SPORTS[:count])
    assert len(set(offsets.values())) == count
    assert all(0.0 <= offset < period for offset in offsets.values())
    assert offsets[SPORTS[0]] == 0.0


def test_jitter_spans_half_to_one_and_a_half_of_the_period():
    assert jittered(60.0, lambda: 0.0) == pytest.approx(30.0)
    assert jittered(60.0, lambda: 0.5) == pytest.approx(60.0)
    assert jittered(60.0, lambda: ALMOST_ONE) == pytest.approx(89.94)


@given(period=periods, jitter=jitters)
def test_jittered_period_is_always_within_50_to_150_percent(period, jitter):
    delay = jittered(period, lambda: jitter)
    assert 0.5 * period * (1 - 1e-9) <= delay < 1.5 * period * (1 + 1e-9)


def test_without_retry_after_the_delay_is_the_plain_backoff():
    assert retry_delay(0, None, base_s=30, cap_s=900, random=lambda: 0.5) == pytest.approx(30.0)
    assert retry_delay(3, None, base_s=30, cap_s=900, random=lambda: 0.5) == pytest.approx(240.0)
    assert retry_delay(10, None, base_s=30, cap_s=900, random=lambda: 0.5) == pytest.approx(900.0)


def test_a_retry_after_longer_than_the_backoff_wins():
    assert retry_delay(0, 120.0, base_s=30, cap_s=900, random=lambda: 0.5) == 120.0


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it():
    assert retry_delay(3, 5.0, base_s=30, cap_s=900, random=lambda: 0.5) == pytest.approx(240.0)


def test_a_retry_after_may_exceed_the_backoff_cap_but_not_the_retry_after_cap():
    assert retry_delay(0, 2000.0, base_s=30, cap_s=900, random=lambda: 0.5) == 2000.0
    assert retry_delay(0, 10 ** 9, base_s=30, cap_s=900, random=lambda: 0.5) == RETRY_AFTER_CAP_S
    assert retry_delay(0, math.inf, base_s=30, cap_s=900, random=lambda: 0.5) == RETRY_AFTER_CAP_S
    assert retry_delay(0, 10 ** 9, base_s=30, cap_s=900, random=lambda: 0.5, retry_after_cap_s=60) == 60


@pytest.mark.parametrize("retry_after", [None, 0.0, -10.0, math.nan])
def test_absent_or_nonsense_retry_after_is_ignored(retry_after):
    assert honoured_retry_after(retry_after) == 0.0
    assert retry_delay(1, retry_after, base_s=30, cap_s=900, random=lambda: 0.5) == pytest.approx(60.0)


@given(
    attempt=st.integers(min_value=0, max_value=200),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    jitter=jitters,
)
def test_retry_delay_is_the_backoff_or_the_capped_retry_after_whichever_is_longer(attempt, retry_after, jitter):
    backoff = backoff_delay(attempt, 30, 900, lambda: jitter)
    delay = retry_delay(attempt, retry_after, base_s=30, cap_s=900, random=lambda: jitter)
    assert delay >= backoff
    assert delay <= max(backoff, RETRY_AFTER_CAP_S)
    if retry_after is not None and 0 < retry_after <= RETRY_AFTER_CAP_S:
        assert delay >= retry_after


@given(attempt=st.integers(min_value=0, max_value=50), jitter=jitters)
def test_backoff_never_shrinks_as_failures_accumulate(attempt, jitter):
    def delay(n: int) -> float:
        return retry_delay(n, None, base_s=30, cap_s=900, random=lambda: jitter)

    assert delay(attempt + 1) >= delay(attempt)
