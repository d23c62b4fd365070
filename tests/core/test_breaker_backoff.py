"""The breaker's optional open-period backoff (``open_backoff_factor``, ``open_duration_max_s``): each
reopening by a failed probe lengthens the next open period up to the cap; closing resets it; the defaults
keep every period at ``open_duration_s`` (the DB breaker's behaviour)."""

from __future__ import annotations

import pytest

from tenantsvc.core.breaker import (
    CLOSED,
    CONNECTION_ERROR,
    FAILURES,
    HALF_OPEN,
    OPEN,
    PROBE_FAILED,
    TIMEOUT,
    BreakerConfig,
    CircuitBreaker,
)

BACKOFF = BreakerConfig(consecutive_failures=1, open_duration_s=1.0, open_backoff_factor=2.0,
                        open_duration_max_s=5.0, half_open_max_probes=1, half_open_successes_to_close=1)


def reopen_by_probe(breaker: CircuitBreaker, now: float) -> None:
    """Advance to ``now`` (half-open by then) and fail one probe there."""
    probe = breaker.try_acquire_probe(now)
    assert probe is not None and breaker.state == HALF_OPEN, (now, breaker.state)
    breaker.probe_failed(now, probe, TIMEOUT)
    assert breaker.state == OPEN


def open_periods(breaker: CircuitBreaker, reopenings: int) -> list[float]:
    """Open on a failure at 0, then reopen ``reopenings`` times, each at the earliest moment; the periods."""
    breaker.record_failure(0.0, TIMEOUT)
    periods, now = [breaker.open_duration_s], 0.0
    for _ in range(reopenings):
        now += breaker.open_duration_s
        reopen_by_probe(breaker, now)
        periods.append(breaker.open_duration_s)
    return periods


def test_each_failed_probe_doubles_the_open_period_up_to_the_cap():
    assert open_periods(CircuitBreaker(BACKOFF), 5) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_the_breaker_stays_open_for_exactly_the_backed_off_period():
    breaker = CircuitBreaker(BACKOFF)
    open_periods(breaker, 2)  # opened at 0 (1 s), reopened at 1 (2 s), reopened at 3 (4 s)
    breaker.advance(6.999)
    assert breaker.state == OPEN
    assert breaker.retry_after_s(5.5) == pytest.approx(1.5)  # the rest of the 4 s period
    breaker.advance(7.0)
    assert breaker.state == HALF_OPEN


def test_closing_resets_the_backoff():
    breaker = CircuitBreaker(BACKOFF)
    open_periods(breaker, 3)  # now open for 5 s from 7
    probe = breaker.try_acquire_probe(12.0)
    breaker.probe_succeeded(12.0, probe)
    assert breaker.state == CLOSED
    breaker.record_failure(20.0, CONNECTION_ERROR)
    assert (breaker.state, breaker.transitions[-1].reason, breaker.open_duration_s) == (OPEN, FAILURES, 1.0)
    reopen_by_probe(breaker, 21.0)
    assert (breaker.transitions[-1].reason, breaker.open_duration_s) == (PROBE_FAILED, 2.0)


def test_without_backoff_every_open_period_is_the_configured_one():
    plain = BreakerConfig(consecutive_failures=1, open_duration_s=3.0, half_open_max_probes=1)
    assert open_periods(CircuitBreaker(plain), 4) == [3.0] * 5
    capped_but_flat = BreakerConfig(consecutive_failures=1, open_duration_s=3.0, open_duration_max_s=30.0,
                                    half_open_max_probes=1)
    assert open_periods(CircuitBreaker(capped_but_flat), 4) == [3.0] * 5


@pytest.mark.parametrize("overrides", [{"open_backoff_factor": 0.5},
                                       {"open_duration_s": 2.0, "open_duration_max_s": 1.0}])
def test_a_shrinking_or_inverted_backoff_is_refused(overrides):
    with pytest.raises(ValueError, match="invalid BreakerConfig"):
        BreakerConfig(**overrides)
