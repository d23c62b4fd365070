"""Sessions in Redis, shared by the fleet: one atomic Lua script per write, every call bounded by the client timeout.

Keys:
- ``session:<sha256(id)>``: the JSON record, with the session's TTL (``PX``);
- ``user_sessions:<tenant>:<user_id>``: a set of the user's session hashes, for "log out everywhere"; its
  TTL is kept at least as long as its longest-lived member's, and members whose session has expired are
  pruned whenever the user logs in again;
- ``session_expiries``: a sorted set of hash → expiry time (Redis ``TIME``, ms). Counting prunes what has
  expired (``ZREMRANGEBYSCORE``) and takes ``ZCARD``: an exact count of live sessions with no ``KEYS``/``SCAN``
  and no counter to drift when keys expire silently.

The scripts touch session keys derived from set members, which is fine on one Redis (not on a cluster).
Failures arrive as ``RedisUnavailable``; ``SessionService`` turns them into ``SessionStoreUnavailable``.
"""

from __future__ import annotations

from tenantsvc.adapters.redis import RedisClient, RedisScript, RedisUnavailable

SESSION_PREFIX = "session:"
OWNER_PREFIX = "user_sessions:"
EXPIRIES_KEY = "session_expiries"

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep_at_least(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""

# KEYS session, owner set, expiries; ARGV hash, payload, ttl_ms, session key prefix.
PUT_SCRIPT = RedisScript(_PRELUDE + """
local ttl = tonumber(ARGV[3])
local now = now_ms()
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. member) == 0 then redis.call('SREM', KEYS[2], member) end
end
redis.call('SADD', KEYS[2], ARGV[1])
keep_at_least(KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
return 1
""")

# KEYS session, owner set, expiries; ARGV hash, ttl_ms. Returns 1 when renewed, 0 when the session is gone.
RENEW_SCRIPT = RedisScript(_PRELUDE + """
local ttl = tonumber(ARGV[2])
if redis.call('PEXPIRE', KEYS[1], ttl) == 0 then return 0 end
keep_at_least(KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now_ms() + ttl, ARGV[1])
return 1
""")

# KEYS session, expiries[, owner set]; ARGV hash.
DELETE_SCRIPT = RedisScript("""
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
""")

# KEYS owner set, expiries; ARGV session key prefix. Returns how many sessions were live.
DELETE_OWNER_SCRIPT = RedisScript("""
local ended = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  ended = ended + redis.call('DEL', ARGV[1] .. member)
  redis.call('ZREM', KEYS[2], member)
end
redis.call('DEL', KEYS[1])
return ended
""")

# KEYS expiries. Returns the number of live sessions.
COUNT_SCRIPT = RedisScript(_PRELUDE + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms())
return redis.call('ZCARD', KEYS[1])
""")


def session_key(session_hash: str) -> str:
    """``session:<hash>``."""
    return SESSION_PREFIX + session_hash


def owner_key(owner: str) -> str:
    """``user_sessions:<tenant>:<user_id>``."""
    return OWNER_PREFIX + owner


class RedisSessionStore:
    """The ``SessionStore`` for a fleet: every instance sees every session."""

    def __init__(self, redis: RedisClient):
        self._redis = redis

    async def put(self, session_hash: str, owner: str, payload: str, ttl_ms: int) -> None:
        """SET the record with its TTL, index it under ``owner`` and in the expiry set (atomically)."""
        await self._redis.run_script(PUT_SCRIPT, [session_key(session_hash), owner_key(owner), EXPIRIES_KEY],
                                     [session_hash, payload, int(ttl_ms), SESSION_PREFIX])

    async def get(self, session_hash: str) -> str | None:
        """GET the record."""
        value = await self._redis.call("GET", session_key(session_hash))
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return None if value is None else str(value)

    async def renew(self, session_hash: str, owner: str, ttl_ms: int) -> bool:
        """PEXPIRE the record (only if it still exists) and keep its indexes in step."""
        renewed = await self._redis.run_script(
            RENEW_SCRIPT, [session_key(session_hash), owner_key(owner), EXPIRIES_KEY], [session_hash, int(ttl_ms)])
        return renewed == 1

    async def delete(self, session_hash: str, owner: str | None) -> None:
        """DEL the record and drop it from the indexes."""
        keys = [session_key(session_hash), EXPIRIES_KEY] + ([owner_key(owner)] if owner is not None else [])
        await self._redis.run_script(DELETE_SCRIPT, keys, [session_hash])

    async def delete_owner(self, owner: str) -> int:
        """DEL every session indexed under ``owner`` (SMEMBERS, never KEYS)."""
        ended = await self._redis.run_script(DELETE_OWNER_SCRIPT, [owner_key(owner), EXPIRIES_KEY], [SESSION_PREFIX])
        return int(ended)

    async def count(self) -> int:
        """Prune expired entries from ``session_expiries`` and count the rest."""
        return int(await self._redis.run_script(COUNT_SCRIPT, [EXPIRIES_KEY], []))

    def unavailable(self) -> RedisUnavailable | None:
        """The error calls fail with at once while Redis's circuit breaker is open, else None."""
        return self._redis.unavailable()
