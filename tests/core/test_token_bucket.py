"""The pure token bucket: worked examples, and hypothesis properties over arbitrary request times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.token_bucket import (
    BucketPolicy, BucketState, Decision, TokenBucket, decision_for, full_bucket, refill, spend, take,
)

EPSILON = 1e-6

policies = st.builds(BucketPolicy, capacity=st.integers(1, 50),
                     refill_per_s=st.floats(0.01, 100.0, allow_nan=False, allow_infinity=False))


@st.composite
def policy_and_requests(draw: st.DrawFn, *, monotonic: bool) -> tuple[BucketPolicy, list[tuple[float, int]]]:
    """A policy and a list of (time, tokens wanted); times only increase when ``monotonic``."""
    policy = draw(policies)
    sizes = st.integers(1, policy.capacity)
    if monotonic:
        gaps = draw(st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=1, max_size=60))
        times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    else:
        times = draw(st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=60))
    return policy, [(t, draw(sizes)) for t in times]


def run(policy: BucketPolicy, requests: list[tuple[float, int]]) -> list[tuple[Decision, BucketState]]:
    state = None
    results = []
    for now, n in requests:
        decision, state = take(policy, state, now, n)
        results.append((decision, state))
    return results


def test_a_new_bucket_is_full_and_spends_what_it_admits():
    policy = BucketPolicy(capacity=100, refill_per_s=2.0)
    decision, state = take(policy, None, now=1000.0)
    assert decision == Decision(allowed=True, limit=100, remaining=99, reset_s=0.5, retry_after_s=0.0)
    assert state == BucketState(99.0, 1000.0)


def test_an_empty_bucket_refuses_and_says_when_one_token_is_back():
    policy = BucketPolicy(capacity=3, refill_per_s=2.0)
    bucket = TokenBucket(policy)
    assert [bucket.take(1, 10.0).allowed for _ in range(4)] == [True, True, True, False]
    refused = bucket.take(1, 10.0)
    assert (refused.allowed, refused.remaining, refused.retry_after_s, refused.reset_s) == (False, 0, 0.5, 1.5)
    assert (refused.retry_after_whole_s, refused.reset_whole_s) == (1, 2)
    assert bucket.take(1, 10.25).allowed is False  # half a token
    assert bucket.take(1, 10.5).allowed is True
    assert bucket.tokens(10.5) == 0.0


def test_a_refused_request_spends_nothing():
    policy = BucketPolicy(capacity=5, refill_per_s=1.0)
    _, state = take(policy, None, 0.0, 4)
    decision, after = take(policy, state, 0.0, 2)
    assert not decision.allowed and after == state and decision.remaining == 1
    assert decision.retry_after_s == pytest.approx(1.0)  # until the 2 tokens asked for


def test_refill_stops_at_capacity():
    policy = BucketPolicy(capacity=10, refill_per_s=2.0)
    assert refill(policy, BucketState(0.0, 0.0), 1_000.0) == BucketState(10.0, 1_000.0)
    assert policy.full_refill_s == 5.0


def test_time_going_backwards_changes_nothing():
    policy = BucketPolicy(capacity=10, refill_per_s=2.0)
    state = BucketState(3.0, 100.0)
    assert refill(policy, state, 40.0) is state
    decision, after = take(policy, state, 40.0)
    assert after == BucketState(2.0, 100.0)  # spent at the bucket's own time, which did not move back


@pytest.mark.parametrize("n", [0, -1, 11, 1.5, True])
def test_a_request_must_take_between_one_and_capacity_tokens(n):
    with pytest.raises(ValueError):
        take(BucketPolicy(10, 1.0), None, 0.0, n)


@pytest.mark.parametrize("capacity, rate", [(0, 1.0), (1.5, 1.0), (True, 1.0), (1, 0.0), (1, -2.0),
                                            (1, math.inf), (1, math.nan)])
def test_policy_refuses_nonsense(capacity, rate):
    with pytest.raises(ValueError):
        BucketPolicy(capacity, rate)


def test_decision_for_clamps_to_the_bucket():
    policy = BucketPolicy(capacity=4, refill_per_s=1.0)
    assert decision_for(policy, 7.5, True).remaining == 4
    assert decision_for(policy, -1.0, False).retry_after_s == 1.0


@given(policy_and_requests(monotonic=True))
def test_no_interval_admits_more_than_burst_plus_rate_times_its_length(case):
    policy, requests = case
    results = run(policy, requests)
    admitted = [n if decision.allowed else 0 for (decision, _), (_, n) in zip(results, requests)]
    for i in range(len(requests)):
        total = 0
        for j in range(i, len(requests)):
            total += admitted[j]
            span = requests[j][0] - requests[i][0]
            assert total <= policy.capacity + policy.refill_per_s * span + EPSILON


@given(policy_and_requests(monotonic=False))
def test_clock_steps_backwards_never_let_more_through(case):
    """With times in any order the bucket lives on the latest time it has seen; the bound holds on that time."""
    policy, requests = case
    results = run(policy, requests)
    seen = [max(t for t, _ in requests[: k + 1]) for k in range(len(requests))]
    for i in range(len(requests)):
        total = 0
        for j in range(i, len(requests)):
            total += requests[j][1] if results[j][0].allowed else 0
            assert total <= policy.capacity + policy.refill_per_s * (seen[j] - seen[i]) + EPSILON


@given(policy_and_requests(monotonic=False))
def test_tokens_stay_between_zero_and_capacity(case):
    policy, requests = case
    for decision, state in run(policy, requests):
        assert 0.0 <= state.tokens <= policy.capacity
        assert 0 <= decision.remaining <= policy.capacity
        assert decision.remaining == math.floor(state.tokens)
        assert decision.reset_s == pytest.approx((policy.capacity - state.tokens) / policy.refill_per_s)
        assert decision.limit == policy.capacity


@given(policies, st.floats(0.0, 50.0), st.floats(0.0, 1_000.0), st.floats(0.0, 1_000.0))
def test_going_back_in_time_mints_no_tokens(policy, tokens, updated_at, now):
    state = BucketState(min(tokens, float(policy.capacity)), updated_at)
    later = refill(policy, state, now)
    if now <= updated_at:
        assert later == state
    else:
        assert later.tokens >= state.tokens and later.updated_at == now


def test_full_bucket_is_what_a_new_key_starts_with():
    policy = BucketPolicy(capacity=7, refill_per_s=1.0)
    assert take(policy, None, 5.0) == take(policy, full_bucket(policy, 5.0), 5.0)


def test_decisions_and_states_are_immutable_values():
    decision, state = take(BucketPolicy(capacity=5, refill_per_s=1.0), None, 0.0)
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        state.tokens = 5.0  # type: ignore[misc]
    assert decision._replace(fail_open=True) == Decision(True, 5, 4, 1.0, 0.0, fail_open=True)


@given(policy_and_requests(monotonic=False))
def test_spend_on_plain_numbers_is_take(case):
    # LocalRateLimiter keeps its buckets as mutable numbers and calls spend(); the Redis Lua script and
    # everything else use take(). Both must decide identically.
    policy, requests = case
    tokens, updated_at = float(policy.capacity), requests[0][0]
    for (decision, state), (now, n) in zip(run(policy, requests), requests):
        allowed, tokens, updated_at = spend(policy, tokens, updated_at, now, n)
        assert (allowed, tokens, updated_at) == (decision.allowed, state.tokens, state.updated_at)
        assert decision_for(policy, tokens, allowed, n) == decision
