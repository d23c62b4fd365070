"""Rate limiters: one contract run against ``LocalRateLimiter`` (on a Clock) and ``RedisRateLimiter`` (real Redis),
then what only one of them has: bounded memory, key expiry, a limit shared by two clients, failing open.

Redis times its buckets with its own clock, so the Redis cases let real time pass (short, with rates fast
enough that tens of milliseconds matter); the local cases advance a Clock by the same amounts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Awaitable

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tenantsvc.adapters.redis import RedisUnavailable
from tenantsvc.adapters.redis_rate_limiter import TOKEN_BUCKET_SCRIPT, RedisRateLimiter
from tenantsvc.core.rate_limits import AUTH, PUBLIC, WRITE, RateLimitPolicy, bucket_key
from tenantsvc.core.token_bucket import BucketPolicy, Decision
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.rate_limiting import (
    FAIL_OPEN_ENDED, FAIL_OPEN_STARTED, FallbackRateLimiter, LocalRateLimiter, build_rate_limiters,
)
from tests.support.logs import eliot_messages  # noqa: F401 (a fixture)
from tests.support.redis_clients import RedisClients, redis_clients  # noqa: F401 (a fixture)
from tests.support.waiting import eventually, pause_for

SLOW = RateLimitPolicy(AUTH, BucketPolicy(capacity=5, refill_per_s=1.0))    # a token a second
FAST = RateLimitPolicy(WRITE, BucketPolicy(capacity=2, refill_per_s=10.0))  # a token every 100 ms
KEY = bucket_key("acme", AUTH)
OTHER_KEY = bucket_key("other", AUTH)


class LocalEnv:
    """A ``LocalRateLimiter`` on a Clock; ``advance`` moves the Clock."""

    approximate = False

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.limiter = LocalRateLimiter(self.clock)

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class RedisEnv:
    """A ``RedisRateLimiter`` on the real server; ``advance`` lets real time pass (Redis has its own clock)."""

    approximate = True

    def __init__(self, clients: RedisClients):
        self.redis = clients.new()
        self.limiter = RedisRateLimiter(self.redis)

    async def advance(self, seconds: float) -> None:
        await pause_for(seconds)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest) -> Any:
    if request.param == "local":
        return LocalEnv()
    return RedisEnv(request.getfixturevalue("redis_clients"))


def close_to(actual: float, expected: float, env: Any) -> bool:
    """Exact on a Clock; on Redis real time moves a little between calls (never more than 0.2 s here)."""
    return actual == pytest.approx(expected) if not env.approximate else expected - 0.2 <= actual <= expected


# ---- the contract: both limiters ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_new_key_admits_its_burst_then_limits(env):
    decisions = [await env.limiter.hit(KEY, SLOW) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    refused = decisions[-1]
    assert close_to(refused.retry_after_s, 1.0, env) and close_to(refused.reset_s, 5.0, env)
    assert refused.retry_after_whole_s == 1 and not refused.fail_open


@pytest.mark.parametrize("rounds", [1, 2])
@pytest_twisted.ensureDeferred
async def test_a_spent_bucket_refills_at_its_rate(env, rounds):
    for _ in range(rounds):
        assert [(await env.limiter.hit(KEY, FAST)).allowed for _ in range(3)] == [True, True, False]
        await env.advance(0.15)  # 1.5 tokens
        assert (await env.limiter.hit(KEY, FAST)).allowed
        assert not (await env.limiter.hit(KEY, FAST)).allowed
        await env.advance(0.25)  # full again


@pytest_twisted.ensureDeferred
async def test_keys_are_independent(env):
    for _ in range(5):
        await env.limiter.hit(KEY, SLOW)
    assert not (await env.limiter.hit(KEY, SLOW)).allowed
    other = await env.limiter.hit(OTHER_KEY, SLOW)
    assert other.allowed and other.remaining == 4


@pytest_twisted.ensureDeferred
async def test_a_refused_request_spends_nothing(env):
    assert (await env.limiter.hit(KEY, SLOW, 4)).allowed
    refused = await env.limiter.hit(KEY, SLOW, 2)
    assert not refused.allowed and refused.remaining == 1
    assert close_to(refused.retry_after_s, 1.0, env)  # until the 2 tokens asked for
    assert (await env.limiter.hit(KEY, SLOW)).allowed


@pytest_twisted.ensureDeferred
async def test_an_idle_bucket_is_full_again_after_its_refill_time(env):
    for _ in range(2):
        await env.limiter.hit(KEY, FAST)
    await env.advance(0.25)
    decision = await env.limiter.hit(KEY, FAST)
    assert decision.allowed and decision.remaining == 1


@pytest_twisted.ensureDeferred
async def test_request_sizes_outside_the_bucket_are_refused_before_any_work(env):
    with pytest.raises(ValueError):
        await env.limiter.hit(KEY, SLOW, 6)


# ---- LocalRateLimiter: bounded memory, metrics, synchronous check ---------------------------------


def test_local_buckets_idle_until_full_are_forgotten():
    local = LocalEnv()
    local.limiter.check(KEY, FAST)
    local.clock.advance(0.05)
    local.limiter.check(OTHER_KEY, FAST)
    assert len(local.limiter) == 2
    local.clock.advance(0.08)  # KEY full again (it lacked 0.1 s), OTHER_KEY not yet (until 0.15)
    local.limiter.check(bucket_key("third", AUTH), FAST)
    assert len(local.limiter) == 2


def test_local_memory_is_capped_least_recently_used_first():
    clock = Clock()
    limiter = LocalRateLimiter(clock, max_keys=3)
    for name in ("a", "b", "c"):
        limiter.check(name, SLOW, 5)
    assert not limiter.check("a", SLOW).allowed  # "a" is now the most recently used
    limiter.check("d", SLOW)
    assert len(limiter) == 3
    assert limiter.check("b", SLOW).allowed  # "b" was forgotten: a full bucket again (the cost of the cap)
    assert not limiter.check("a", SLOW).allowed


def test_local_decisions_are_counted_when_given_metrics():
    registry = CollectorRegistry()
    limiter = LocalRateLimiter(Clock(), metrics=Metrics(registry, "web"))
    for _ in range(6):
        limiter.check(bucket_key("acme", PUBLIC), replace(SLOW, endpoint_class=PUBLIC))
    sample = lambda outcome: registry.get_sample_value(  # noqa: E731
        "ratelimit_decisions_total", {"endpoint_class": PUBLIC, "outcome": outcome})
    assert (sample("allowed"), sample("limited")) == (5.0, 1.0)


def test_local_limiter_refuses_a_zero_cap():
    with pytest.raises(ValueError):
        LocalRateLimiter(Clock(), max_keys=0)


# ---- FallbackRateLimiter with a scripted primary -------------------------------------------------


class ScriptedPrimary:
    """A primary limiter whose next answers the test chooses: a Decision, an exception, or a pending Deferred."""

    def __init__(self) -> None:
        self.answers: list[Any] = []

    async def hit(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        answer = self.answers.pop(0)
        if isinstance(answer, Deferred):
            return await answer
        if isinstance(answer, BaseException):
            raise answer
        return answer


def result_of(coroutine: Awaitable[Any]) -> Any:
    """Drive a coroutine that needs no reactor to completion and return its result."""
    results: list[Any] = []
    ensureDeferred(coroutine).addBoth(results.append)
    assert results, "expected an immediate answer"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def test_redis_failures_fail_open_to_a_local_bucket_counted_and_logged_once(eliot_messages):
    registry = CollectorRegistry()
    primary = ScriptedPrimary()
    limiter = FallbackRateLimiter(primary, Clock(), metrics=Metrics(registry, "web"))
    shared = Decision(True, 5, 4, 0.2, 0.0)
    primary.answers = [shared] + [RedisUnavailable("EVALSHA: ConnectionLost")] * 6 + [shared]
    assert result_of(limiter.hit(KEY, SLOW)) == shared
    local = [result_of(limiter.hit(KEY, SLOW)) for _ in range(6)]
    assert [d.allowed for d in local] == [True] * 5 + [False]  # the local bucket still limits
    assert all(d.fail_open for d in local) and limiter.failing_open
    assert result_of(limiter.hit(KEY, SLOW)) == shared and not limiter.failing_open
    sample = lambda outcome: registry.get_sample_value(  # noqa: E731
        "ratelimit_decisions_total", {"endpoint_class": AUTH, "outcome": outcome})
    assert (sample("allowed"), sample("fail_open"), sample("limited")) == (2.0, 6.0, None)
    types = [m.get("message_type") for m in eliot_messages]
    assert types.count(FAIL_OPEN_STARTED.message_type) == 1 and types.count(FAIL_OPEN_ENDED.message_type) == 1
    ended = next(m for m in eliot_messages if m.get("message_type") == FAIL_OPEN_ENDED.message_type)
    assert ended["decisions"] == 6


def test_cancellation_is_not_mistaken_for_redis_failing():
    primary = ScriptedPrimary()
    pending: Deferred = Deferred()
    primary.answers = [pending]
    limiter = FallbackRateLimiter(primary, Clock())
    call = ensureDeferred(limiter.hit(KEY, SLOW))
    call.cancel()
    failures: list[Any] = []
    call.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError) and not limiter.failing_open


def test_without_redis_the_fleet_limiter_is_the_local_one():
    limiters = build_rate_limiters(Clock(), None, None)
    assert limiters.fleet is limiters.local


# ---- RedisRateLimiter: server-side state, expiry, sharing, outages ---------------------------------



@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_redis_buckets_expire_once_they_would_be_full(redis_clients):
    redis = redis_clients.new()
    limiter = RedisRateLimiter(redis)
    await limiter.hit(KEY, RateLimitPolicy(AUTH, BucketPolicy(100, 2.0)))
    ttl_ms = await redis.call("PTTL", KEY)
    assert 0 < ttl_ms <= 500  # one token short of full at 2/s
    await limiter.hit(KEY, FAST)  # capacity 2: the stored 99 tokens are clamped to 2, then one spent
    assert 0 < await redis.call("PTTL", KEY) <= 100
    await eventually(lambda: redis.call("EXISTS", KEY).addCallback(lambda n: n == 0), within_s=2.0,
                     what="the idle bucket expires")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_script_is_sent_again_when_redis_forgot_it(redis_clients):
    redis = redis_clients.new()
    limiter = RedisRateLimiter(redis)
    assert (await limiter.hit(KEY, SLOW)).remaining == 4
    assert await redis.call("SCRIPT", "EXISTS", TOKEN_BUCKET_SCRIPT.sha1) == [1]
    await redis.call("SCRIPT", "FLUSH")
    assert (await limiter.hit(KEY, SLOW)).remaining == 3


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_two_instances_share_one_limit(redis_clients):
    first, second = RedisRateLimiter(redis_clients.new()), RedisRateLimiter(redis_clients.new())
    decisions = [await limiter.hit(KEY, SLOW) for _ in range(4) for limiter in (first, second)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_redis_down_fails_open_counted_then_the_shared_limit_returns(redis_server, redis_clients):
    registry = CollectorRegistry()
    metrics = Metrics(registry, "web")
    from twisted.internet import reactor

    instances = [build_rate_limiters(reactor, metrics, redis_clients.new()).fleet for _ in range(2)]
    one, two = instances

    async def spend(limiter: Any, count: int) -> list[Decision]:
        return [await limiter.hit(KEY, SLOW) for _ in range(count)]

    assert [d.allowed for d in await spend(one, 3) + await spend(two, 3)] == [True] * 5 + [False]
    redis_server.stop()
    try:
        during = await spend(one, 2) + await spend(two, 2)
        assert all(d.fail_open and d.allowed for d in during)  # each instance decides alone: open
        assert registry.get_sample_value("ratelimit_decisions_total",
                                         {"endpoint_class": AUTH, "outcome": "fail_open"}) == 4.0
    finally:
        redis_server.start()

    async def shared_again() -> bool:
        return not any([(await one.hit(OTHER_KEY, SLOW)).fail_open, (await two.hit(OTHER_KEY, SLOW)).fail_open])

    await eventually(shared_again, within_s=10.0, what="both instances reach Redis again")
    third = bucket_key("third", AUTH)
    again = [await limiter.hit(third, SLOW) for _ in range(4) for limiter in (one, two)]
    assert [d.allowed for d in again] == [True] * 5 + [False] * 3 and not any(d.fail_open for d in again)


def test_a_local_bucket_full_again_answers_as_a_new_one_even_after_a_clock_step_back():
    local = LocalEnv()
    for _ in range(5):
        local.limiter.check(KEY, SLOW)
    local.clock.advance(-10)  # the clock steps back: the bucket keeps its own (later) time
    assert not local.limiter.check(KEY, SLOW).allowed  # time going back mints nothing
    local.clock.advance(20)  # past the moment it would be full: as a new bucket, whatever its own time said
    assert local.limiter.check(KEY, SLOW).remaining == 4
    assert len(local.limiter) == 1


def test_local_check_refuses_a_request_size_that_is_not_a_whole_number_of_tokens():
    local = LocalEnv()
    for size in (True, 1.0, 0, 6):
        with pytest.raises(ValueError):
            local.limiter.check(KEY, SLOW, size)
    assert len(local.limiter) == 0  # nothing remembered for a refused size
