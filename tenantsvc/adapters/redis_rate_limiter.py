"""The fleet-wide rate limiter: one atomic Lua token bucket per key in Redis, timed by Redis itself.

The script reads the server's ``TIME`` (never the caller's clock: instances' clocks disagree, Redis is the
one clock they share), refills and spends exactly as ``core.token_bucket.take`` does, stores the bucket as
a hash ``{tokens, ms}`` and sets ``PEXPIRE`` to the time it takes to fill up again, so an idle bucket
disappears just when forgetting it changes nothing. Failures arrive as ``RedisUnavailable``; wrap this in
``services.rate_limiting.FallbackRateLimiter`` to fail open.
"""

from __future__ import annotations

from typing import Any

from tenantsvc.adapters.redis import RedisClient, RedisScript, RedisUnavailable
from tenantsvc.core.rate_limits import RateLimitPolicy
from tenantsvc.core.token_bucket import Decision, check_request_size, decision_for

# KEYS[1] the bucket; ARGV capacity, refill per second, tokens wanted. Returns {allowed (0/1), tokens left}.
TOKEN_BUCKET_SCRIPT = RedisScript("""
if redis.replicate_commands then redis.replicate_commands() end
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1])
local updated_ms = tonumber(state[2])
if tokens == nil or updated_ms == nil then
  tokens = capacity
  updated_ms = now_ms
elseif now_ms > updated_ms then
  tokens = tokens + (now_ms - updated_ms) * rate / 1000
  updated_ms = now_ms
end
tokens = math.max(0, math.min(capacity, tokens))
local allowed = 0
if tokens >= wanted then
  tokens = tokens - wanted
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ms', string.format('%.0f', updated_ms))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens) * 1000 / rate)))
return {allowed, left}
""")


def _parse_reply(reply: Any) -> tuple[bool, float]:
    """``(allowed, tokens)`` from the script's reply; ``RedisUnavailable`` for anything else."""
    try:
        allowed, tokens = reply
        return int(allowed) == 1, float(tokens)
    except (TypeError, ValueError):
        raise RedisUnavailable(f"token bucket script: unexpected reply {type(reply).__name__}") from None


class RedisRateLimiter:
    """Token buckets kept in Redis, so every instance spends from the same bucket."""

    def __init__(self, redis: RedisClient):
        self._redis = redis

    async def hit(self, key: str, policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Spend ``n`` tokens from bucket ``key`` if it holds them; raises ``RedisUnavailable`` on failure."""
        bucket = policy.bucket
        check_request_size(bucket, n)
        reply = await self._redis.run_script(TOKEN_BUCKET_SCRIPT, [key], [bucket.capacity, repr(float(bucket.refill_per_s)), n])
        allowed, tokens = _parse_reply(reply)
        return decision_for(bucket, tokens, allowed, n)
