"""Rate limiters: one contract run against ``LocalRateLimiter`` (on a Clock) and ``RedisRateLimiter`` (real Redis),
single buckets and stacked ones (a client's bucket under its tenant's ceiling, login's three levels, all
checked atomically), then what only one of them has: bounded memory, key expiry, a limit shared by two clients, failing open.

Redis times its buckets with its own clock, so the Redis cases let real time pass (short, with rates fast
enough that tens of milliseconds matter); the local cases advance a Clock by the same amounts.
"""

from __future__ import annotations

from typing import Any, Awaitable

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tenantsvc.adapters.redis import RedisUnavailable
from tenantsvc.adapters.redis_rate_limiter import TOKEN_BUCKETS_SCRIPT, RedisRateLimiter
from tenantsvc.core.rate_limits import (
    AUTH, CLIENT, PUBLIC, READ, READ_CLIENT, TENANT, WRITE, Level, RateLimitPolicies, RateLimitPolicy, bucket_key,
    bucket_keys, tenant_policy,
)
from tenantsvc.core.token_bucket import BucketPolicy, Decision
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.rate_limiting import (
    FAIL_OPEN_ENDED, FAIL_OPEN_STARTED, FallbackRateLimiter, LocalRateLimiter, build_rate_limiters,
)
from tests.support.logs import eliot_messages  # noqa: F401 (a fixture)
from tests.support.redis_clients import RedisClients, redis_clients  # noqa: F401 (a fixture)
from tests.support.waiting import eventually, pause_for

SLOW = tenant_policy(AUTH, BucketPolicy(capacity=5, refill_per_s=1.0))    # a token a second
FAST = tenant_policy(WRITE, BucketPolicy(capacity=2, refill_per_s=10.0))  # a token every 100 ms
KEY = (bucket_key("acme", AUTH),)
OTHER_KEY = (bucket_key("other", AUTH),)


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


# ---- the contract, stacked buckets: a client's bucket under its tenant's ceiling --------------------

STACK = RateLimitPolicy(READ, (Level(READ_CLIENT, CLIENT, BucketPolicy(3, 1.0)),
                               Level(READ, TENANT, BucketPolicy(5, 1.0))))
FAST_STACK = RateLimitPolicy(READ, (Level(READ_CLIENT, CLIENT, BucketPolicy(2, 10.0)),
                                    Level(READ, TENANT, BucketPolicy(3, 10.0))))
LOGIN = RateLimitPolicies.from_text({"login_user": "2/1", "auth_client": "4/1", "auth": "6/1"}).login


def stack_keys(client: str, policy: RateLimitPolicy = STACK, username: str | None = None) -> tuple[str, ...]:
    return bucket_keys("acme", policy, client, username)


@pytest_twisted.ensureDeferred
async def test_a_client_refused_by_its_own_bucket_costs_the_tenant_nothing(env):
    flood = [await env.limiter.hit(stack_keys("10.0.0.1"), STACK) for _ in range(8)]
    assert [d.allowed for d in flood] == [True] * 3 + [False] * 5
    assert all(d.level == 0 for d in flood[3:]) and flood[-1].limit == 3  # refused by the client level
    assert close_to(flood[-1].retry_after_s, 1.0, env)
    others = [await env.limiter.hit(stack_keys("10.0.0.2"), STACK) for _ in range(2)]
    assert [d.allowed for d in others] == [True, True]  # the ceiling still held 5 - 3 = 2
    assert others[-1].level == 1 and others[-1].remaining == 0  # the ceiling is now the tightest level


@pytest_twisted.ensureDeferred
async def test_the_tenant_ceiling_refuses_every_client_once_they_reach_it_together(env):
    for client in ("10.0.0.1", "10.0.0.2"):
        for _ in range(2):
            assert (await env.limiter.hit(stack_keys(client), STACK)).allowed
    assert (await env.limiter.hit(stack_keys("10.0.0.3"), STACK)).allowed
    refused = await env.limiter.hit(stack_keys("10.0.0.3"), STACK)
    assert not refused.allowed and refused.level == 1 and refused.limit == 5
    # the ceiling's refusal spent nothing from 10.0.0.3's bucket: it still holds 2 once the tenant refills
    await env.advance(0.5)
    assert not (await env.limiter.hit(stack_keys("10.0.0.3"), STACK)).allowed
    await env.advance(0.6)
    admitted = await env.limiter.hit(stack_keys("10.0.0.3"), STACK)
    assert admitted.allowed


@pytest_twisted.ensureDeferred
async def test_stacked_buckets_refill_at_their_rates(env):
    keys = stack_keys("10.0.0.1", FAST_STACK)
    assert [(await env.limiter.hit(keys, FAST_STACK)).allowed for _ in range(3)] == [True, True, False]
    await env.advance(0.15)  # 1.5 tokens back in each bucket
    assert (await env.limiter.hit(keys, FAST_STACK)).allowed
    assert not (await env.limiter.hit(keys, FAST_STACK)).allowed


@pytest_twisted.ensureDeferred
async def test_a_refusal_waits_for_the_slowest_level_that_lacks_tokens(env):
    policy = RateLimitPolicy(READ, (Level(READ_CLIENT, CLIENT, BucketPolicy(1, 2.0)),
                                    Level(READ, TENANT, BucketPolicy(1, 0.5))))
    assert (await env.limiter.hit(stack_keys("10.0.0.1", policy), policy)).allowed
    refused = await env.limiter.hit(stack_keys("10.0.0.1", policy), policy)
    assert not refused.allowed and refused.level == 0  # the client's bucket is the first to lack a token
    assert close_to(refused.retry_after_s, 2.0, env)  # but the ceiling needs 2 s, the client only 0.5 s


@pytest_twisted.ensureDeferred
async def test_guessing_one_account_from_one_client_leaves_that_client_its_other_logins(env):
    guesses = [await env.limiter.hit(stack_keys("10.0.0.1", LOGIN, "alice"), LOGIN) for _ in range(4)]
    assert [d.allowed for d in guesses] == [True, True, False, False] and guesses[-1].level == 0
    other_account = [await env.limiter.hit(stack_keys("10.0.0.1", LOGIN, "bob"), LOGIN) for _ in range(2)]
    assert [d.allowed for d in other_account] == [True, True]  # the refused guesses cost the client nothing
    third = await env.limiter.hit(stack_keys("10.0.0.1", LOGIN, "carol"), LOGIN)
    assert not third.allowed and third.level == 1  # now the client's own auth bucket (4) is spent
    real_player = await env.limiter.hit(stack_keys("10.0.0.9", LOGIN, "Alice"), LOGIN)
    assert real_player.allowed  # from another address: nothing the attacker did is in the way


@pytest_twisted.ensureDeferred
async def test_simultaneous_requests_of_many_clients_never_overspend_the_ceiling(env):
    policy = RateLimitPolicy(READ, (Level(READ_CLIENT, CLIENT, BucketPolicy(3, 0.01)),
                                    Level(READ, TENANT, BucketPolicy(10, 0.01))))
    from twisted.internet.defer import gatherResults

    calls = [ensureDeferred(env.limiter.hit(stack_keys(f"10.0.0.{i % 6}", policy), policy)) for i in range(30)]
    decisions = await gatherResults(calls)
    per_client: dict[int, int] = {}
    for i, decision in enumerate(decisions):
        per_client[i % 6] = per_client.get(i % 6, 0) + decision.allowed
    assert sum(per_client.values()) == 10 and max(per_client.values()) <= 3


@pytest_twisted.ensureDeferred
async def test_every_level_must_fit_the_request_size_and_have_a_key(env):
    with pytest.raises(ValueError):
        await env.limiter.hit(stack_keys("10.0.0.1"), STACK, 4)  # more than the client bucket holds
    with pytest.raises(ValueError):
        await env.limiter.hit(stack_keys("10.0.0.1")[:1], STACK)


# ---- LocalRateLimiter: bounded memory, metrics, synchronous check ---------------------------------


def test_local_buckets_idle_until_full_are_forgotten():
    local = LocalEnv()
    local.limiter.check(KEY, FAST)
    local.clock.advance(0.05)
    local.limiter.check(OTHER_KEY, FAST)
    assert len(local.limiter) == 2
    local.clock.advance(0.08)  # KEY full again (it lacked 0.1 s), OTHER_KEY not yet (until 0.15)
    local.limiter.check((bucket_key("third", AUTH),), FAST)
    assert len(local.limiter) == 2


def test_local_memory_is_capped_least_recently_used_first():
    clock = Clock()
    limiter = LocalRateLimiter(clock, max_keys=3)
    for name in ("a", "b", "c"):
        limiter.check(name, SLOW, 5)
    assert not limiter.check(("a",), SLOW).allowed  # "a" is now the most recently used
    limiter.check(("d",), SLOW)
    assert len(limiter) == 3
    assert limiter.check(("b",), SLOW).allowed  # "b" was forgotten: a full bucket again (the cost of the cap)
    assert not limiter.check(("a",), SLOW).allowed


def test_local_decisions_are_counted_when_given_metrics():
    registry = CollectorRegistry()
    limiter = LocalRateLimiter(Clock(), metrics=Metrics(registry, "web"))
    for _ in range(6):
        limiter.check((bucket_key("acme", PUBLIC),), tenant_policy(PUBLIC, SLOW.ceiling))
    sample = lambda outcome: registry.get_sample_value(  # noqa: E731
        "ratelimit_decisions_total", {"endpoint_class": PUBLIC, "outcome": outcome,
                                      "scope": "none" if outcome == "allowed" else "tenant"})
    assert (sample("allowed"), sample("limited")) == (5.0, 1.0)


def test_local_limiter_refuses_a_zero_cap():
    with pytest.raises(ValueError):
        LocalRateLimiter(Clock(), max_keys=0)


# ---- FallbackRateLimiter with a scripted primary -------------------------------------------------


class ScriptedPrimary:
    """A primary limiter whose next answers the test chooses: a Decision, an exception, or a pending Deferred."""

    def __init__(self) -> None:
        self.answers: list[Any] = []

    async def hit(self, keys: Any, policy: RateLimitPolicy, n: int = 1) -> Decision:
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
    sample = lambda outcome, scope="none": registry.get_sample_value(  # noqa: E731
        "ratelimit_decisions_total", {"endpoint_class": AUTH, "outcome": outcome, "scope": scope})
    assert (sample("allowed"), sample("fail_open"), sample("fail_open", "tenant"), sample("limited", "tenant")) == (
        2.0, 5.0, 1.0, None)
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
    await limiter.hit(KEY, tenant_policy(AUTH, BucketPolicy(100, 2.0)))
    ttl_ms = await redis.call("PTTL", KEY[0])
    assert 0 < ttl_ms <= 500  # one token short of full at 2/s
    await limiter.hit(KEY, FAST)  # capacity 2: the stored 99 tokens are clamped to 2, then one spent
    assert 0 < await redis.call("PTTL", KEY[0]) <= 100
    await eventually(lambda: redis.call("EXISTS", KEY[0]).addCallback(lambda n: n == 0), within_s=2.0,
                     what="the idle bucket expires")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_the_script_is_sent_again_when_redis_forgot_it(redis_clients):
    redis = redis_clients.new()
    limiter = RedisRateLimiter(redis)
    assert (await limiter.hit(KEY, SLOW)).remaining == 4
    assert await redis.call("SCRIPT", "EXISTS", TOKEN_BUCKETS_SCRIPT.sha1) == [1]
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
                                         {"endpoint_class": AUTH, "outcome": "fail_open", "scope": "none"}) == 4.0
    finally:
        redis_server.start()

    async def shared_again() -> bool:
        return not any([(await one.hit(OTHER_KEY, SLOW)).fail_open, (await two.hit(OTHER_KEY, SLOW)).fail_open])

    await eventually(shared_again, within_s=10.0, what="both instances reach Redis again")
    third = (bucket_key("third", AUTH),)
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
