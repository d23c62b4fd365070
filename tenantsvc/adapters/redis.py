"""Redis over txredisapi, every call bounded by a timeout so a dead or paused Redis never hangs a caller.

txredisapi imports the global reactor, so it is imported only when a client is built (after twistd
or pytest-twisted has chosen the reactor).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from eliot import log_message
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from tenantsvc.adapters.deferreds import with_timeout
from tenantsvc.config import RedisTarget

DEFAULT_TIMEOUT_S = 0.5
MAX_RECONNECT_DELAY_S = 2.0  # come back quickly once Redis is reachable again
# Delete the key only if it still holds our token: a lock that expired and was taken by another
# instance is never released by us.
COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# Store a cache entry only if what Redis holds is not newer: entries carry the time their data was read
# ("fetched_at", ARGV[2]), so a slow refresh can never overwrite a theme saved after it read the DB.
SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded['fetched_at']) and
     tonumber(decoded['fetched_at']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


class RedisUnavailable(Exception):
    """A Redis call failed or timed out; callers degrade instead of failing the request."""


def _unavailable(failure: Failure, command: str) -> None:
    raise RedisUnavailable(f"{command}: {failure.type.__name__}")


@dataclass(frozen=True)
class RedisScript:
    """A Lua script and its SHA1, run with ``RedisClient.run_script`` (EVALSHA, EVAL only when not cached)."""

    source: str

    @property
    def sha1(self) -> str:
        """The digest Redis knows the script by."""
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


class KeyValueStore(Protocol):
    """The Redis operations services use; implemented by ``RedisClient`` and the in-memory fake."""

    def get(self, key: str) -> Deferred:
        """The value (bytes or str) or None."""

    def set(self, key: str, value: str, *, px: int | None = None, nx: bool = False) -> Deferred:
        """Store ``value``; with ``nx`` only if absent. Fires True when stored."""

    def compare_and_delete(self, key: str, token: str) -> Deferred:
        """Delete ``key`` only while it holds ``token``; fires True when deleted."""

    def set_if_newer(self, key: str, value: str, fetched_at: float, *, px: int) -> Deferred:
        """Store a JSON entry unless the stored one has a later ``fetched_at``; fires True when stored."""

    def publish(self, channel: str, message: str) -> Deferred:
        """Publish ``message``; fires with the number of receivers."""


_SET_IF_NEWER = RedisScript(SET_IF_NEWER)


def _redis_target_kwargs(target: RedisTarget) -> dict[str, Any]:
    return {"host": target.host, "port": target.port, "dbid": target.db, "password": target.password,
            "ssl_context_factory": target.tls}


def _keep_trying() -> Deferred:
    """Stands in for ``RedisFactory.stopTrying`` (called only by a failed handshake, QUIT and SHUTDOWN)."""
    return succeed(None)


class RedisClient(Service):
    """A lazily connecting, self-reconnecting pool; a Service so it disconnects on shutdown.

    Every call fails with ``RedisUnavailable`` after ``timeout_s`` rather than waiting for a
    connection that may never come.
    """

    name = "redis"

    def __init__(self, target: RedisTarget, clock: Any, timeout_s: float = DEFAULT_TIMEOUT_S, poolsize: int = 4):
        import txredisapi

        self._clock = clock
        self.timeout_s = timeout_s
        self.target = target
        self._pool = txredisapi.lazyConnectionPool(
            poolsize=poolsize, reconnect=True, connectTimeout=max(timeout_s, 1.0), replyTimeout=timeout_s,
            **_redis_target_kwargs(target),
        )
        self._pool._factory.maxDelay = MAX_RECONNECT_DELAY_S
        # txredisapi stops reconnecting for good when a new connection's SELECT/AUTH fails, and on a paused
        # Redis that handshake times out: the pool would stay empty until the process restarts. Keep trying.
        self._pool._factory.stopTrying = _keep_trying

    def _execute(self, command: str, *args: Any, timeout_s: float | None = None) -> Deferred:
        return with_timeout(self._clock, self._pool.execute_command(command, *args),
                            self.timeout_s if timeout_s is None else timeout_s)

    def call(self, command: str, *args: Any, timeout_s: float | None = None) -> Deferred:
        """Run one Redis command with a timeout; failures arrive as ``RedisUnavailable``."""
        return self._execute(command, *args, timeout_s=timeout_s).addErrback(_unavailable, command)

    def run_script(self, script: "RedisScript", keys: Sequence[str], args: Sequence[Any]) -> Deferred:
        """Run a Lua script by its SHA1 (EVALSHA); when Redis has not cached it yet (NOSCRIPT), send it (EVAL).

        Each command is bounded by the client timeout; failures arrive as ``RedisUnavailable``.
        """
        def load_if_unknown(failure: Failure) -> Deferred:
            if "NOSCRIPT" not in str(failure.value):
                _unavailable(failure, "EVALSHA")
            return self.call("EVAL", script.source, len(keys), *keys, *args)

        return self._execute("EVALSHA", script.sha1, len(keys), *keys, *args).addErrback(load_if_unknown)

    def get(self, key: str, *, timeout_s: float | None = None) -> Deferred:
        """GET ``key``."""
        return self.call("GET", key, timeout_s=timeout_s)

    def set(self, key: str, value: str, *, px: int | None = None, nx: bool = False) -> Deferred:
        """SET ``key`` (``PX`` expiry, ``NX``); fires True when stored."""
        args: list[Any] = [key, value]
        if px is not None:
            args += ["PX", int(px)]
        if nx:
            args.append("NX")
        return self.call("SET", *args).addCallback(lambda reply: reply in ("OK", b"OK", True))

    def compare_and_delete(self, key: str, token: str) -> Deferred:
        """Atomically delete ``key`` if it still holds ``token`` (Lua)."""
        return self.call("EVAL", COMPARE_AND_DELETE, 1, key, token).addCallback(lambda n: n == 1)

    def set_if_newer(self, key: str, value: str, fetched_at: float, *, px: int) -> Deferred:
        """Atomically store a JSON entry unless the stored one was fetched later (Lua, cjson)."""
        return self.run_script(_SET_IF_NEWER, [key], [value, repr(float(fetched_at)), int(px)]).addCallback(
            lambda n: n == 1)

    def publish(self, channel: str, message: str) -> Deferred:
        """PUBLISH ``message`` on ``channel``."""
        return self.call("PUBLISH", channel, message)

    async def ping(self) -> float:
        """Round-trip a PING; returns the seconds it took."""
        started = self._clock.seconds()
        await self.call("PING")
        return self._clock.seconds() - started

    def stopService(self) -> Any:
        """Disconnect every pooled connection."""
        super().stopService()
        return self._pool.disconnect()


class RedisSubscriber(Service):
    """Subscribes to one channel and keeps the subscription alive across reconnects.

    ``on_message(payload)`` is called for every message; ``on_subscribed(first)`` after each
    (re)subscription, so the owner can resynchronise whatever it may have missed while disconnected.
    """

    def __init__(self, target: RedisTarget, channel: str, on_message: Callable[[str], None],
                 on_subscribed: Callable[[bool], None], connect_timeout_s: float = 1.0):
        self.setName(f"redis-subscriber:{channel}")
        self._target = target
        self._channel = channel
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._connect_timeout_s = connect_timeout_s
        self._factory: Any = None
        self.subscriptions = 0

    def startService(self) -> None:
        """Connect in the background; reconnects are automatic."""
        super().startService()
        import txredisapi

        subscriber = self

        class InvalidationProtocol(txredisapi.SubscriberProtocol):
            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
                subscriber._on_message(text)

        factory = txredisapi.SubscriberFactory(isLazy=True)
        factory.protocol = InvalidationProtocol
        factory.password = self._target.password
        factory.maxDelay = MAX_RECONNECT_DELAY_S
        build = factory.buildProtocol

        def build_and_subscribe(addr: Any) -> Any:
            protocol = build(addr)
            protocol.whenConnected().addCallback(lambda p: p.subscribe(self._channel)).addCallbacks(
                self._subscribed, lambda failure: log_message(
                    "tenantsvc:redis:subscribe_failed", error=failure.getErrorMessage()))
            return protocol

        factory.buildProtocol = build_and_subscribe
        factory.startConnecting(txredisapi._makeEndpoint(
            self._target.host, self._target.port, self._connect_timeout_s,
            True if self._target.tls else None))
        self._factory = factory

    def _subscribed(self, _: object) -> None:
        self.subscriptions += 1
        self._on_subscribed(self.subscriptions == 1)

    def stopService(self) -> Any:
        """Stop reconnecting and drop the connection."""
        super().stopService()
        factory, self._factory = self._factory, None
        if factory is not None:
            return factory.disconnect()
        return None
