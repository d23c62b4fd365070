"""Rate limiters behind one interface: ``await limiter.hit(key, policy)`` → ``Decision``.

- ``LocalRateLimiter``: buckets in this process, timed by the reactor clock; no I/O, so the public hot
  path can also call its synchronous ``check``. Memory is bounded: a bucket idle long enough to be full
  again is forgotten (that changes no answer), and at most ``max_keys`` buckets are kept (least recently
  used first out).
- ``adapters.redis_rate_limiter.RedisRateLimiter``: one bucket per key in Redis, shared by the fleet.
- ``FallbackRateLimiter``: the Redis limiter, failing open to a private local limiter while Redis is
  unreachable (each such decision is marked ``fail_open`` and counted as such).

``build_rate_limiters`` wires them as the service needs: ``local`` for public routes, ``fleet`` for
authenticated and write routes (the local limiter itself when there is no Redis).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from eliot import MessageType, fields

from tenantsvc.adapters.redis import RedisClient, RedisUnavailable
from tenantsvc.adapters.redis_rate_limiter import RedisRateLimiter
from tenantsvc.core.rate_limits import ENDPOINT_CLASSES, PUBLIC, RateLimitPolicy
from tenantsvc.core.token_bucket import Decision, check_request_size, decision_for, spend
from tenantsvc.obs.metrics import Metrics, zero

ALLOWED, LIMITED, FAIL_OPEN = "allowed", "limited", "fail_open"
DEFAULT_MAX_KEYS = 100_000

FAIL_OPEN_STARTED = MessageType(
    "tenantsvc:ratelimit:fail_open_started", fields(error=str),
    "Redis is unreachable: fleet-wide limits are decided by each instance's own buckets until it is back.")
FAIL_OPEN_ENDED = MessageType(
    "tenantsvc:ratelimit:fail_open_ended", fields(decisions=int),
    "Redis answers again: fleet-wide limits are shared again; ``decisions`` were made locally meanwhile.")


class RateLimiter(Protocol):
    """Spends tokens from the bucket named ``key`` under ``policy``."""

    async def hit(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Admit or refuse a request for ``n`` tokens."""


def outcome_of(decision: Decision) -> str:
    """The ``outcome`` label of ``ratelimit_decisions_total`` for ``decision``."""
    if decision.fail_open:
        return FAIL_OPEN
    return ALLOWED if decision.allowed else LIMITED


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

    def __len__(self) -> int:
        """Buckets currently remembered."""
        return len(self._buckets)

    def check(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Spend ``n`` tokens from bucket ``key`` if it holds them (synchronous: for the public hot path).

        One bucket object per key, updated in place: no allocation per request but the ``Decision``.
        """
        bucket_policy = policy.bucket
        if n.__class__ is not int or n != 1:  # 1 always fits (capacity >= 1): skip the check on hot paths
            check_request_size(bucket_policy, n)
        now = self._clock.seconds()
        buckets = self._buckets
        bucket = buckets.pop(key, None)  # out of the way of the forgetting: it is about to be used
        if buckets and next(iter(buckets.values())).full_at <= now:
            self._forget_idle(now)
        if bucket is None:
            bucket = _Bucket(float(bucket_policy.capacity), now)
        elif bucket.full_at <= now:  # full again: as if forgotten and made anew, without the allocation
            bucket.tokens, bucket.updated_at = float(bucket_policy.capacity), now
        buckets[key] = bucket  # now the most recently used
        if len(buckets) > self._max_keys:  # one bucket added at most, so one out at most
            buckets.popitem(last=False)
        allowed, bucket.tokens, bucket.updated_at = spend(bucket_policy, bucket.tokens, bucket.updated_at, now, n)
        decision = decision_for(bucket_policy, bucket.tokens, allowed, n)
        bucket.full_at = now + decision.reset_s
        if self._metrics is not None:
            self._metrics.record_rate_limit(policy.endpoint_class, ALLOWED if allowed else LIMITED)
        return decision

    async def hit(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        """``check`` as a coroutine, for callers that hold any ``RateLimiter``."""
        return self.check(key, policy, n)

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

    async def hit(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Ask ``primary``; on ``RedisUnavailable`` decide locally (fail open). Cancellation propagates."""
        try:
            decision = await self._primary.hit(key, policy, n)
        except RedisUnavailable as error:
            if not self.failing_open:
                FAIL_OPEN_STARTED.log(error=str(error))
            self.fail_open_decisions += 1
            decision = self._fallback.check(key, policy, n)._replace(fail_open=True)
        else:
            if self.failing_open:
                FAIL_OPEN_ENDED.log(decisions=self.fail_open_decisions)
                self.fail_open_decisions = 0
        if self._metrics is not None:
            self._metrics.record_rate_limit(policy.endpoint_class, outcome_of(decision))
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
        outcomes = {endpoint_class: (ALLOWED, LIMITED) if redis is None or endpoint_class == PUBLIC
                    else (ALLOWED, LIMITED, FAIL_OPEN) for endpoint_class in ENDPOINT_CLASSES}
        zero(metrics.ratelimit_decisions, [(endpoint_class, outcome) for endpoint_class, each in outcomes.items()
                                           for outcome in each])
    if redis is None:
        return RateLimiters(local=local, fleet=local)
    return RateLimiters(local=local, fleet=FallbackRateLimiter(RedisRateLimiter(redis), clock, metrics=metrics,
                                                               max_keys=max_keys))
