"""The fleet-wide rate limiter: a stack of token buckets in Redis, checked and spent by one atomic Lua script.

A request names one bucket per level (narrowest first: the client's within its tenant, then the tenant's
ceiling). The script reads the server's ``TIME`` (never the caller's clock: instances' clocks disagree,
Redis is the one clock they share), refills every bucket exactly as ``core.token_bucket.take_levels`` does,
and spends from all of them only if every one holds the tokens asked for: a request the client's bucket
refuses costs the tenant's ceiling nothing. One round trip, and no other client's request can interleave.
Each bucket is a hash ``{tokens, ms}`` with ``PEXPIRE`` set to the time it takes to fill up again, so an idle
bucket disappears just when forgetting it changes nothing. Failures arrive as ``RedisUnavailable``; wrap
this in ``services.rate_limiting.FallbackRateLimiter`` to fail open.

The keys of one request are all of one tenant; on a Redis Cluster they would need a common hash tag.
"""

from __future__ import annotations

from typing import Any, Sequence

from tenantsvc.adapters.redis import RedisClient, RedisScript, RedisUnavailable
from tenantsvc.core.rate_limits import RateLimitPolicy
from tenantsvc.core.token_bucket import Decision, check_request_size, levels_decision

# KEYS: the buckets, narrowest first. ARGV: tokens wanted, then capacity and refill per second of each bucket.
# Returns {index (1-based) of the first bucket lacking the tokens, 0 when all were spent; tokens left in each}.
TOKEN_BUCKETS_SCRIPT = RedisScript("""
if redis.replicate_commands then redis.replicate_commands() end
local wanted = tonumber(ARGV[1])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tokens, updated, refused = {}, {}, 0
for i = 1, #KEYS do
  local capacity = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ms')
  local held = tonumber(state[1])
  local updated_ms = tonumber(state[2])
  if held == nil or updated_ms == nil then
    held = capacity
    updated_ms = now_ms
  elseif now_ms > updated_ms then
    held = held + (now_ms - updated_ms) * rate / 1000
    updated_ms = now_ms
  end
  held = math.max(0, math.min(capacity, held))
  if held < wanted and refused == 0 then
    refused = i
  end
  tokens[i] = held
  updated[i] = updated_ms
end
local reply = {refused}
for i = 1, #KEYS do
  if refused == 0 then
    local capacity = tonumber(ARGV[2 * i])
    local rate = tonumber(ARGV[2 * i + 1])
    tokens[i] = tokens[i] - wanted
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens[i]), 'ms', string.format('%.0f', updated[i]))
    redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil((capacity - tokens[i]) * 1000 / rate)))
  end
  reply[i + 1] = string.format('%.17g', tokens[i])
end
return reply
""")


def _parse_reply(reply: Any, count: int) -> tuple[int | None, list[float]]:
    """``(index of the refusing bucket or None, tokens per bucket)``; ``RedisUnavailable`` for anything else."""
    try:
        refused, *tokens = reply
        refused = int(refused)
        if len(tokens) != count or not 0 <= refused <= count:
            raise ValueError
        return (refused - 1 if refused else None), [float(left) for left in tokens]
    except (TypeError, ValueError):
        raise RedisUnavailable(f"token buckets script: unexpected reply {type(reply).__name__}") from None


class RedisRateLimiter:
    """Token buckets kept in Redis, so every instance spends from the same buckets."""

    def __init__(self, redis: RedisClient):
        self._redis = redis

    async def hit(self, keys: Sequence[str], policy: RateLimitPolicy, n: int = 1) -> Decision:
        """Spend ``n`` tokens from every bucket ``keys`` names if every one holds them, else from none;
        raises ``RedisUnavailable`` on failure."""
        buckets = policy.buckets
        if len(keys) != len(buckets):
            raise ValueError(f"{policy.endpoint_class}: {len(buckets)} bucket keys expected, got {len(keys)}")
        args: list[Any] = [n]
        for bucket in buckets:
            check_request_size(bucket, n)
            args += [bucket.capacity, repr(float(bucket.refill_per_s))]
        reply = await self._redis.run_script(TOKEN_BUCKETS_SCRIPT, list(keys), args)
        refused, tokens = _parse_reply(reply, len(buckets))
        return levels_decision(buckets, tokens, refused, n)
