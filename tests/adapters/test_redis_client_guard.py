"""What ``RedisClient`` tells its ``CallGuard``, as a contract run on the fake pool (Clock) and on the real
throwaway Redis (real reactor; frozen with SIGSTOP for the no-answer case): a value and an error reply are both
Redis answering (success), no answer within the timeout is a timeout, a caller's cancellation says nothing, a
refused call is never sent, and ``check`` (the breaker's PING) reports without being guarded."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from tenantsvc.adapters.redis import SUCCESS, RedisCircuitOpen, RedisClient, RedisScript, RedisUnavailable
from tenantsvc.core.targets import RedisTarget
from tenantsvc.core.breaker import TIMEOUT
from tests.support.fake_redis_pool import FakeRedisPool
from tests.support.fleet import RawRedis
from tests.support.redis_clients import TEST_TIMEOUT_S, RedisClients, redis_clients  # noqa: F401 (a fixture)

FAILING_SCRIPT = RedisScript("return redis.error_reply('ERR deliberately failing script')")


class RecordingGuard:
    """A ``CallGuard`` that records what it is told and refuses while ``refusing_now``."""

    def __init__(self) -> None:
        self.verdicts: list[str | None] = []
        self.sent_commands: list[str] = []
        self.refusing_now = False

    def refusal(self, command: str) -> RedisUnavailable | None:
        return RedisCircuitOpen(command, 3) if self.refusing_now else None

    def refusing(self) -> RedisUnavailable | None:
        return self.refusal("any")

    def sent(self, waiter: Deferred, command: str) -> None:
        self.sent_commands.append(command)

    def finished(self, waiter: Deferred, verdict: str | None) -> None:
        self.verdicts.append(verdict)


class FakeEnv:
    """The client on the fake pool, timed by a Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.pool = FakeRedisPool("up")
        self.client = RedisClient(RedisTarget("127.0.0.1", 1, 0, None), self.clock, TEST_TIMEOUT_S, pool=self.pool)
        self.guard = RecordingGuard()
        self.client.guard = self.guard

    def error_reply(self) -> None:
        import txredisapi

        self.pool.replies["EVALSHA"] = txredisapi.ResponseError("ERR deliberately failing script")

    async def unanswered(self, send: Any) -> tuple[Any, BaseException | None]:
        """``send()`` while the fake answers nothing, let its timeout pass; (value, error)."""
        self.pool.mode = "hung"
        try:
            call = send()
            self.clock.advance(TEST_TIMEOUT_S)
            return await outcome_of(call)
        finally:
            self.pool.mode = "up"

    def sends(self, command: str) -> int:
        return self.pool.count(command)


class RealEnv:
    """The client on the throwaway Redis, timed by the real reactor."""

    def __init__(self, clients: RedisClients, server: Any):
        self.server = server
        self.client = clients.new()
        self.guard = RecordingGuard()
        self.client.guard = self.guard
        self.raw = RawRedis(server.host, server.port)

    def error_reply(self) -> None:
        pass  # FAILING_SCRIPT fails on a real Redis by itself

    async def unanswered(self, send: Any) -> tuple[Any, BaseException | None]:
        """``send()`` while Redis is frozen (SIGSTOP) and wait for the outcome; (value, error)."""
        await self.client.check(2.0)  # a pooled connection is up (unguarded), so only the freeze stops the answer
        await deferToThread(self.server.pause)
        try:
            return await outcome_of(send())
        finally:
            self.server.resume()

    def sends(self, command: str) -> int:
        info = self.raw.command("INFO", "commandstats")
        for line in info.splitlines():
            if line.startswith(f"cmdstat_{command.lower()}:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest) -> Any:
    if request.param == "fake":
        return FakeEnv()
    return RealEnv(request.getfixturevalue("redis_clients"), request.getfixturevalue("redis_server"))


async def outcome_of(call: Deferred) -> tuple[Any, BaseException | None]:
    """(value, None) or (None, the error) of ``call``."""
    try:
        return await call, None
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return None, error


async def failure_of(call: Deferred) -> BaseException:
    value, error = await outcome_of(call)
    assert error is not None, f"the call succeeded with {value!r}"
    return error


@pytest_twisted.ensureDeferred
async def test_a_reply_is_a_success(env):
    assert await env.client.call("PING") in ("PONG", b"PONG")
    assert env.guard.verdicts == [SUCCESS]


@pytest_twisted.ensureDeferred
async def test_an_error_reply_is_redis_answering_although_the_caller_gets_unavailable(env):
    env.error_reply()
    error = await failure_of(env.client.run_script(FAILING_SCRIPT, [], []))
    assert isinstance(error, RedisUnavailable)
    assert env.guard.verdicts and set(env.guard.verdicts) == {SUCCESS}, env.guard.verdicts


@pytest_twisted.ensureDeferred
async def test_no_answer_within_the_timeout_is_a_timeout(env):
    _, error = await env.unanswered(lambda: env.client.call("GET", "k"))
    assert isinstance(error, RedisUnavailable)
    assert env.guard.verdicts[-1] == TIMEOUT


@pytest_twisted.ensureDeferred
async def test_a_refused_call_is_never_sent_and_fails_at_once(env):
    before = env.sends("GET")
    env.guard.refusing_now = True
    call = env.client.get("k")
    assert call.called, "a refused call waited"
    error = await failure_of(call)
    assert isinstance(error, RedisCircuitOpen) and error.retry_after_s == 3
    assert env.sends("GET") == before and env.guard.sent_commands == []
    assert isinstance(env.client.unavailable(), RedisCircuitOpen)


@pytest_twisted.ensureDeferred
async def test_check_pings_past_a_refusing_guard_and_reports_its_verdict(env):
    env.guard.refusing_now = True
    assert await env.client.check(TEST_TIMEOUT_S) == SUCCESS
    assert env.guard.verdicts == [], "the probe's outcome went to the guard as a call's"
    assert await env.unanswered(lambda: env.client.check(TEST_TIMEOUT_S)) == (TIMEOUT, None)


def test_a_callers_cancellation_is_no_verdict():
    fake = FakeEnv()
    fake.pool.mode = "hung"
    call = fake.client.get("k")
    call.addErrback(lambda failure: failure.trap(CancelledError, RedisUnavailable))
    call.cancel()
    assert fake.guard.verdicts == [None]
    fake.clock.advance(TEST_TIMEOUT_S)
    assert fake.guard.verdicts == [None], "the cancelled call's timer still fired"


def test_verdicts_of_connection_failures():
    import txredisapi
    from twisted.internet.error import ConnectionLost, ConnectionRefusedError
    from twisted.python.failure import Failure

    from tenantsvc.adapters.redis import verdict
    from tenantsvc.core.breaker import CONNECTION_ERROR

    assert verdict("OK", False) == SUCCESS
    assert verdict(Failure(txredisapi.ScriptDoesNotExist("NOSCRIPT")), False) == SUCCESS
    assert verdict(Failure(txredisapi.TimeoutError("no reply")), False) == TIMEOUT
    assert verdict(Failure(CancelledError()), True) == TIMEOUT  # our own timer cancelled it
    for error in (txredisapi.ConnectionError("Not connected"), ConnectionLost(), ConnectionRefusedError()):
        assert verdict(Failure(error), False) == CONNECTION_ERROR, error
    assert verdict(Failure(CancelledError()), False) is None
    assert verdict(Failure(ValueError("a bug of ours")), False) is None
