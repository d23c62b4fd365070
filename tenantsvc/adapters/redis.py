"""Redis over txredisapi, every call bounded by a timeout so a dead or paused Redis never hangs a caller.

A client may carry a ``CallGuard`` (the Redis circuit breaker, ``services.redis_guard``): it is asked
before every call (an open breaker fails the call at once with ``RedisCircuitOpen``, nothing sent), told
the verdict of every call that was sent (``verdict``: a reply of any kind is SUCCESS, our own timeout or
txredisapi's is TIMEOUT, a lost or refused connection CONNECTION_ERROR, a caller's cancellation nothing),
and may fail callers still waiting early. ``check`` sends one PING outside the guard: the breaker's probe.

txredisapi imports the global reactor, so it is imported only when a client is built (after twistd
or pytest-twisted has chosen the reactor).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from eliot import log_message
from twisted.application.service import Service
from twisted.internet import error as net_error
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from tenantsvc.core.targets import RedisTarget
from tenantsvc.core.breaker import CONNECTION_ERROR, TIMEOUT
from tenantsvc.runtime.bounded import on_timeout
from tenantsvc.runtime.deferreds import relay

DEFAULT_TIMEOUT_S = 0.5
MAX_RECONNECT_DELAY_S = 2.0  # come back quickly once Redis is reachable again
# A pool slot that lost its connection is connected again within this: MAX_RECONNECT_DELAY_S plus
# txredisapi's jitter (about 12 % of the delay, normally distributed) with room to spare.
RECONNECT_WITHIN_S = 2.5
SUCCESS = "success"  # a verdict: Redis answered (with a value or with an error reply)
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
    """A Redis call failed or timed out; callers degrade instead of failing the request.

    ``retry_after_s`` is set (whole seconds) when it is known how long Redis will stay unavailable.
    """

    retry_after_s: int | None = None


class RedisCircuitOpen(RedisUnavailable):
    """The Redis circuit breaker failed the call at once: refused unsent, or released while it waited."""

    def __init__(self, command: str, retry_after_s: int):
        super().__init__(f"{command}: the Redis circuit breaker is open; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


def _unavailable(failure: Failure, command: str) -> None:
    if failure.check(RedisUnavailable):
        failure.raiseException()
    raise RedisUnavailable(f"{command}: {failure.type.__name__}")


class CallGuard(Protocol):
    """What ``RedisClient`` asks before and tells after each call (``services.redis_guard.RedisBreaker``)."""

    def refusal(self, command: str) -> RedisUnavailable | None:
        """None to send ``command`` now; else the error to fail it with at once, unsent (counted)."""

    def refusing(self) -> RedisUnavailable | None:
        """What ``refusal`` would answer now, without counting anything."""

    def sent(self, waiter: Deferred, command: str) -> None:
        """``command`` was sent and waits for its reply; the guard may fail ``waiter`` early (RedisUnavailable).

        A call answered at once is only ``finished``."""

    def finished(self, waiter: Deferred, verdict: str | None) -> None:
        """The call behind ``waiter`` ended with ``verdict`` (see ``verdict``)."""


def verdict(result: object, timed_out: bool) -> str | None:
    """What one call's outcome says about Redis's health.

    SUCCESS for any reply, error replies included (NOSCRIPT, a failing script, a wrong type: Redis
    answered); TIMEOUT when our timer or txredisapi's reply timeout fired; CONNECTION_ERROR when the
    connection was refused, lost or absent; None for anything else (the caller cancelled, a bug of ours).
    """
    import txredisapi

    if not isinstance(result, Failure) or result.check(txredisapi.ResponseError):
        return SUCCESS
    if timed_out or result.check(txredisapi.TimeoutError):
        return TIMEOUT
    if result.check(txredisapi.ConnectionError, net_error.ConnectError, net_error.ConnectionLost,
                    net_error.ConnectionDone):
        return CONNECTION_ERROR
    return None


def bounded_call(clock: Any, send: Callable[[], Deferred], timeout_s: float,
                 on_verdict: Callable[[Deferred, str | None], None] | None = None) -> Deferred:
    """Run ``send()`` and return a Deferred of its result that fails with CancelledError after ``timeout_s``.

    Cancelling the returned Deferred cancels the call. ``on_verdict(waiter, verdict)`` is told how the call
    ended before the caller is (the returned Deferred may already have been failed by someone else then).
    """
    sending = maybeDeferred(send)
    waiter: Deferred = Deferred(lambda _: sending.cancel())
    timeout = on_timeout(clock, sending, timeout_s)

    def settle(result: object) -> None:
        if on_verdict is not None:
            on_verdict(waiter, verdict(result, timeout.expired))
        return relay(result, waiter)  # failed early (or cancelled): the late result is dropped, never left unhandled

    sending.addBoth(settle)
    return waiter


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


def _connection_pool(target: RedisTarget, timeout_s: float, poolsize: int) -> Any:
    """A lazily connecting txredisapi pool that reconnects within ``MAX_RECONNECT_DELAY_S``, for ever."""
    import txredisapi

    pool = txredisapi.lazyConnectionPool(
        poolsize=poolsize, reconnect=True, connectTimeout=max(timeout_s, 1.0), replyTimeout=timeout_s,
        **_redis_target_kwargs(target),
    )
    pool._factory.maxDelay = MAX_RECONNECT_DELAY_S
    # txredisapi stops reconnecting for good when a new connection's SELECT/AUTH fails, and on a paused
    # Redis that handshake times out: the pool would stay empty until the process restarts. Keep trying.
    pool._factory.stopTrying = _keep_trying
    return pool


class RedisClient(Service):
    """A lazily connecting, self-reconnecting pool; a Service so it disconnects on shutdown.

    Every call fails with ``RedisUnavailable`` after ``timeout_s`` rather than waiting for a
    connection that may never come.
    """

    def __init__(self, target: RedisTarget, clock: Any, timeout_s: float = DEFAULT_TIMEOUT_S, poolsize: int = 4,
                 *, pool: Any = None):
        self.setName("redis")
        self._clock = clock
        self.timeout_s = timeout_s
        self.target = target
        self.guard: CallGuard | None = None  # set by the breaker that protects this client
        self._pool = pool if pool is not None else _connection_pool(target, timeout_s, poolsize)

    def _execute(self, command: str, *args: Any, timeout_s: float | None = None) -> Deferred:
        guard = self.guard
        if guard is not None:
            refusal = guard.refusal(command)
            if refusal is not None:
                return fail(refusal)
        waiter = bounded_call(self._clock, lambda: self._pool.execute_command(command, *args),
                              self.timeout_s if timeout_s is None else timeout_s,
                              None if guard is None else guard.finished)
        if guard is not None and not waiter.called:
            guard.sent(waiter, command)
        return waiter

    def unavailable(self) -> RedisUnavailable | None:
        """The error any call would fail with at once now (the breaker refuses calls), else None; sends nothing."""
        return None if self.guard is None else self.guard.refusing()

    def check(self, timeout_s: float) -> Deferred:
        """Send one PING outside the guard (the breaker's probe); fires with its ``verdict``, never fails."""
        verdicts: list[str | None] = []
        waiter = bounded_call(self._clock, lambda: self._pool.execute_command("PING"), timeout_s,
                              lambda _, outcome: verdicts.append(outcome))
        return waiter.addBoth(lambda _: verdicts[0] if verdicts else None)

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
