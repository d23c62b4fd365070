"""Rate limiters behind one interface: ``await limiter.hit(keys, policy)`` → ``Decision``.

``keys`` names one bucket per level of ``policy`` (narrowest first: the client's, then the tenant's; see
``core.rate_limits``); a request is admitted only when every one of them holds the tokens, and a refused
request spends from none, whichever limiter decides:

- ``LocalRateLimiter``: buckets in this process, timed by the reactor clock; no I/O, so the public hot
  path can also call its synchronous ``check``. Memory is bounded: a bucket idle long enough to be full
  again is forgotten (that changes no answer), and at most ``max_keys`` buckets are kept (least recently
  used first out).
- ``adapters.redis_rate_limiter.RedisRateLimiter``: the buckets in Redis, shared by the fleet, every
  level checked and spent by one Lua script (one round trip, atomic).
- ``FallbackRateLimiter``: the Redis limiter, failing open to a private local limiter while Redis is
  unreachable (each such decision is marked ``fail_open`` and counted as such).

Every decision is counted once in ``ratelimit_decisions_total{endpoint_class, outcome, scope}``: ``scope``
is the level that refused (``client`` or ``tenant``), ``none`` for an admission. Bounded: never a client.

``build_rate_limiters`` wires them as the service needs: ``local`` for public routes, ``fleet`` for
authenticated and write routes (the local limiter itself when there is no Redis).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from eliot import MessageType, fields

from tenantsvc.adapters.redis import RedisClient, RedisUnavailable
from tenantsvc.adapters.redis_rate_limiter import RedisRateLimiter
from tenantsvc.core.rate_limits import ENDPOINT_CLASSES, PUBLIC, SCOPES, TENANT, RateLimitPolicy
from tenantsvc.core.token_bucket import BucketState, Decision, check_request_size, decision_for, spend, take_levels
from tenantsvc.obs.metrics import Metrics, zero

ALLOWED, LIMITED, FAIL_OPEN = "allowed", "limited", "fail_open"
NO_SCOPE = "none"  # the scope label of an admission: no level refused
DEFAULT_MAX_KEYS = 100_000

FAIL_OPEN_STARTED = MessageType(
    "tenantsvc:ratelimit:fail_open_started", fields(error=str),
    "Redis is unreachable: fleet-wide limits are decided by each instance's own buckets until it is back.")
FAIL_OPEN_ENDED = MessageType(
    "tenantsvc:ratelimit:fail_open_ended", fields(decisions=int),
    "Redis answers again: fleet-wide limits are shared again; ``decisions`` were made locally meanwhile.")


class RateLimiter(Protocol):
    """Spends tokens from the buckets named ``keys`` (one per level of ``policy``, narrowest first)."""

    async def hit(self, keys: Sequence[str], policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Admit (spending ``n`` tokens from every bucket) or refuse (spending none)."""


def outcome_of(decision: Decision) -> str:
    """The ``outcome`` label of ``ratelimit_decisions_total`` for ``decision``."""
    if decision.fail_open:
        return FAIL_OPEN
    return ALLOWED if decision.allowed else LIMITED


def scope_of(decision: Decision, policy: RateLimitPolicy) -> str:
    """The ``scope`` label: the level that refused (``client``/``tenant``), ``none`` for an admission."""
    return NO_SCOPE if decision.allowed else policy.levels[decision.level].scope


def _check_keys(keys: Sequence[str], policy: RateLimitPolicy) -> None:
    """Refuse a key list that does not name one bucket per level (a bare string is a programming error)."""
    if isinstance(keys, str):
        raise TypeError("keys must be a sequence of bucket keys, not one string")
    if len(keys) != len(policy.levels):
        raise ValueError(f"{policy.endpoint_class}: {len(policy.levels)} bucket keys expected, got {len(keys)}")


class _Bucket:
    """One bucket's state, updated in place (one per key: no allocation per request)."""

    __slots__ = ("tokens", "updated_at", "full_at")

    def __init__(self, tokens: float, updated_at: float):
        self.tokens = tokens
        self.updated_at = updated_at
        self.full_at = updated_at  # from then on the bucket is full: forgetting it changes nothing


class LocalRateLimiter:
    """Token buckets in this process, timed by ``clock`` (an ``IReactorTime``)."""

    def __init__(self, clock: Any, *, max_keys: int = DEFAULT_MAX_KEYS, metrics: Metrics | None = None):
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._metrics = metrics
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first
        self._admitted: dict[str, Any] = {}  # the allowed-decisions counter series of each endpoint class

    def __len__(self) -> int:
        """Buckets currently remembered."""
        return len(self._buckets)

    def check(self, keys: Sequence[str], policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Spend ``n`` tokens from every bucket ``keys`` names if every one holds them (synchronous: for the
        public hot path, whose policy has one level).

        One bucket object per key, updated in place; a single bucket allocates nothing but the ``Decision``.
        """
        levels = policy.levels
        if len(levels) == 1 and len(keys) == 1:
            decision = self._check_one(keys[0], levels[0].bucket, n)
        else:
            decision = self._check_stack(keys, policy, n)
        if self._metrics is not None:
            if decision.allowed:  # the usual case: one series per endpoint class, found without building labels
                admitted = self._admitted.get(policy.endpoint_class)
                if admitted is None:
                    admitted = self._admitted[policy.endpoint_class] = self._metrics.rate_limit_counter(
                        policy.endpoint_class, ALLOWED, NO_SCOPE)
                admitted.value += 1
            else:
                self._metrics.record_rate_limit(policy.endpoint_class, LIMITED, scope_of(decision, policy))
        return decision

    def _take_out(self, key: str, capacity: int, now: float) -> _Bucket:
        """The bucket ``key``, taken out of the LRU order (made anew when unknown or full again)."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            return _Bucket(float(capacity), now)
        if bucket.full_at <= now:  # full again: as if forgotten and made anew, without the allocation
            bucket.tokens, bucket.updated_at = float(capacity), now
        return bucket

    def _put_back(self, key: str, bucket: _Bucket, now: float) -> None:
        """Forget what is idle, then remember ``bucket`` as the most recently used (within ``max_keys``)."""
        buckets = self._buckets
        if buckets and next(iter(buckets.values())).full_at <= now:
            self._forget_idle(now)
        buckets[key] = bucket
        if len(buckets) > self._max_keys:  # one bucket added at most, so one out at most
            buckets.popitem(last=False)

    def _check_one(self, key: str, bucket_policy: Any, n: int) -> Decision:
        if n.__class__ is not int or n != 1:  # 1 always fits (capacity >= 1): skip the check on hot paths
            check_request_size(bucket_policy, n)
        now = self._clock.seconds()
        bucket = self._take_out(key, bucket_policy.capacity, now)  # out of the way of the forgetting
        allowed, bucket.tokens, bucket.updated_at = spend(bucket_policy, bucket.tokens, bucket.updated_at, now, n)
        decision = decision_for(bucket_policy, bucket.tokens, allowed, n)
        bucket.full_at = now + decision.reset_s
        self._put_back(key, bucket, now)
        return decision

    def _check_stack(self, keys: Sequence[str], policy: RateLimitPolicy, n: int) -> Decision:
        _check_keys(keys, policy)
        bucket_policies = policy.buckets
        for bucket_policy in bucket_policies:
            check_request_size(bucket_policy, n)
        now = self._clock.seconds()
        buckets = [self._take_out(key, bucket_policy.capacity, now)
                   for key, bucket_policy in zip(keys, bucket_policies)]
        decision, states = take_levels(bucket_policies, [BucketState(b.tokens, b.updated_at) for b in buckets], now, n)
        for bucket, state, bucket_policy in zip(buckets, states, bucket_policies):
            bucket.tokens, bucket.updated_at = state
            bucket.full_at = now + (bucket_policy.capacity - state.tokens) / bucket_policy.refill_per_s
        for key, bucket in zip(keys, buckets):  # all taken out first: forgetting may not drop one of them
            self._put_back(key, bucket, now)
        return decision

    async def hit(self, keys: Sequence[str], policy: RateLimitPolicy, n: int = 1) -> Decision:
        """``check`` as a coroutine, for callers that hold any ``RateLimiter``."""
        return self.check(keys, policy, n)

    def _forget_idle(self, now: float) -> None:
        """Drop least recently used buckets that are full again (stops at the first one that is not)."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if oldest.full_at > now:
                return
            self._buckets.popitem(last=False)


class FallbackRateLimiter:
    """``primary`` (the Redis limiter) while it answers; a private ``LocalRateLimiter`` while it does not.

    Decisions made locally are marked ``fail_open``. Every decision is counted in
    ``ratelimit_decisions_total``; the start and end of each outage are logged once.
    """

    def __init__(self, primary: RateLimiter, clock: Any, *, metrics: Metrics | None = None,
                 max_keys: int = DEFAULT_MAX_KEYS):
        self._primary = primary
        self._fallback = LocalRateLimiter(clock, max_keys=max_keys)  # uncounted: counted here, once
        self._metrics = metrics
        self.fail_open_decisions = 0  # in the current outage; 0 while Redis answers

    @property
    def failing_open(self) -> bool:
        """True while decisions are being made locally."""
        return self.fail_open_decisions > 0

    async def hit(self, keys: Sequence[str], policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Ask ``primary``; on ``RedisUnavailable`` decide locally (fail open). Cancellation propagates."""
        try:
            decision = await self._primary.hit(keys, policy, n)
        except RedisUnavailable as error:
            if not self.failing_open:
                FAIL_OPEN_STARTED.log(error=str(error))
            self.fail_open_decisions += 1
            decision = self._fallback.check(keys, policy, n)._replace(fail_open=True)
        else:
            if self.failing_open:
                FAIL_OPEN_ENDED.log(decisions=self.fail_open_decisions)
                self.fail_open_decisions = 0
        if self._metrics is not None:
            self._metrics.record_rate_limit(policy.endpoint_class, outcome_of(decision), scope_of(decision, policy))
        return decision


@dataclass(frozen=True)
class RateLimiters:
    """The two limiters routes use: ``local`` (public, in-process) and ``fleet`` (auth/read/write)."""

    local: LocalRateLimiter
    fleet: RateLimiter


def build_rate_limiters(clock: Any, metrics: Metrics | None, redis: RedisClient | None, *,
                        max_keys: int = DEFAULT_MAX_KEYS) -> RateLimiters:
    """The limiters for this process: fleet-wide through Redis when configured, else in-process only."""
    local = LocalRateLimiter(clock, max_keys=max_keys, metrics=metrics)
    if metrics is not None:  # every decision this process can make, at 0 from start-up
        zero(metrics.ratelimit_decisions, decision_series(redis is not None))
    if redis is None:
        return RateLimiters(local=local, fleet=local)
    return RateLimiters(local=local, fleet=FallbackRateLimiter(RedisRateLimiter(redis), clock, metrics=metrics,
                                                               max_keys=max_keys))


def decision_series(with_redis: bool) -> list[tuple[str, str, str]]:
    """Every ``(endpoint_class, outcome, scope)`` this process can count: public has only its tenant
    level and is never decided by Redis; the other classes fail open only with Redis."""
    series: list[tuple[str, str, str]] = []
    for endpoint_class in ENDPOINT_CLASSES:
        scopes = (TENANT,) if endpoint_class == PUBLIC else SCOPES
        outcomes = (ALLOWED, LIMITED) + ((FAIL_OPEN,) if with_redis and endpoint_class != PUBLIC else ())
        for outcome in outcomes:
            series.extend((endpoint_class, outcome, scope) for scope in
                          ((NO_SCOPE,) if outcome == ALLOWED else (NO_SCOPE, *scopes) if outcome == FAIL_OPEN
                           else scopes))
    return series
