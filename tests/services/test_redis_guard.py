"""RedisBreaker on a Clock guarding a real ``RedisClient`` over a hand-driven fake pool: it opens on timeouts and
connection errors (never on error replies or a caller's cancellation), refuses at once while open (nothing sent,
counted, Retry-After from the open period), frees calls already waiting when it opens, probes with its own PING
and timeout, closes only after several PINGs answer, and backs off while Redis stays down."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tenantsvc.adapters.redis import RedisCircuitOpen, RedisClient, RedisUnavailable
from tenantsvc.core.targets import RedisTarget
from tenantsvc.core.breaker import CLOSED, CONNECTION_ERROR, HALF_OPEN, OPEN, TIMEOUT
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.redis_guard import (
    BREAKER_NAME,
    PROBE_INTERVAL_S,
    PROBED,
    RELEASED,
    RedisBreaker,
    redis_breaker_config,
)
from tenantsvc.services.breaker_view import BREAKER_TRANSITION
from tests.support.fake_redis_pool import FakeRedisPool
from tests.support.logs import eliot_messages  # noqa: F401 - a fixture

TIMEOUT_S = 0.5
PROBE_TIMEOUT_S = 2.5
OPEN_S, OPEN_MAX_S = 1.0, 5.0
TARGET = RedisTarget("127.0.0.1", 1, 0, None)  # never connected to: the fake pool answers


class Env:
    """A client on a fake pool, guarded by a breaker, on one Clock and one registry."""

    def __init__(self, mode: str = "up", failures: int = 3) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.registry = CollectorRegistry()
        self.pool = FakeRedisPool(mode)
        self.client = RedisClient(TARGET, self.clock, TIMEOUT_S, pool=self.pool)
        self.breaker = RedisBreaker(self.clock, Metrics(self.registry, "web"), probe_timeout_s=PROBE_TIMEOUT_S,
                                    config=redis_breaker_config(failures, OPEN_S, OPEN_MAX_S))
        self.breaker.protect(self.client)

    @property
    def state(self) -> str:
        return self.breaker.describe()["state"]

    def get(self) -> "Outcome":
        return Outcome(self.client.get("k"))

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def pass_time(self, seconds: float, step_s: float = 0.01) -> None:
        """Advance the Clock in small steps (a single ``advance`` runs every timer at the final time)."""
        for _ in range(round(seconds / step_s)):
            self.clock.advance(step_s)

    def time_out(self, calls: int) -> list["Outcome"]:
        """Send ``calls`` GETs to a hung Redis at once and let their timeout pass."""
        self.pool.mode = "hung"
        outcomes = [self.get() for _ in range(calls)]
        self.clock.advance(TIMEOUT_S)
        return outcomes


class Outcome:
    """What a call's Deferred fired with (``value`` or ``failure``), or neither while it waits."""

    def __init__(self, deferred: Deferred):
        self.deferred = deferred
        self.value: Any = None
        self.failure: Failure | None = None
        self.fired = False
        deferred.addCallbacks(self._ok, self._failed)

    def _ok(self, value: Any) -> None:
        self.fired, self.value = True, value

    def _failed(self, failure: Failure) -> None:
        self.fired, self.failure = True, failure

    def error(self) -> BaseException:
        assert self.fired and self.failure is not None, "the call did not fail"
        return self.failure.value


def test_three_timeouts_in_a_row_open_it_and_then_calls_fail_at_once_unsent():
    env = Env()
    first = env.time_out(2)
    assert env.state == CLOSED and all(isinstance(o.error(), RedisUnavailable) for o in first)
    env.time_out(1)
    assert env.state == OPEN
    sent_before = len(env.pool.sent)

    refused = env.get()  # no clock advance: answered at once
    assert isinstance(refused.error(), RedisCircuitOpen) and refused.error().retry_after_s == 1
    assert len(env.pool.sent) == sent_before, "an open breaker sent the call anyway"
    assert env.metric("circuit_breaker_rejections_total", breaker_name=BREAKER_NAME, request_class="GET") == 1
    assert env.metric("redis_call_failures_total", kind=TIMEOUT) == 3
    assert env.metric("circuit_breaker_state", breaker_name=BREAKER_NAME) == 1
    assert env.metric("circuit_breaker_transitions_total", breaker_name=BREAKER_NAME, from_state=CLOSED,
                      to_state=OPEN, reason="failures") == 1
    assert env.breaker.describe()["transitions"][-1]["detail"] == TIMEOUT


def test_connection_errors_open_it_too():
    env = Env("refused")
    for _ in range(3):
        assert isinstance(env.get().error(), RedisUnavailable)
    assert env.state == OPEN and env.breaker.describe()["transitions"][-1]["detail"] == CONNECTION_ERROR
    assert env.metric("redis_call_failures_total", kind=CONNECTION_ERROR) == 3


def test_a_reply_between_failures_resets_the_count():
    env = Env()
    env.time_out(2)
    env.pool.mode = "up"
    assert env.get().value is None
    env.time_out(2)
    assert env.state == CLOSED


def test_error_replies_are_redis_answering_and_never_open_it():
    import txredisapi

    env = Env()
    env.pool.replies["GET"] = txredisapi.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    for _ in range(10):
        assert isinstance(Outcome(env.client.call("GET", "k")).error(), RedisUnavailable)  # as before: an error
    assert env.state == CLOSED and env.metric("redis_call_failures_total", kind=TIMEOUT) == 0


def test_a_callers_cancellation_says_nothing_about_redis():
    env = Env("hung")
    for _ in range(5):
        call = env.get()
        call.deferred.cancel()
        assert call.fired
    env.clock.advance(TIMEOUT_S)
    assert env.state == CLOSED and env.metric("redis_call_failures_total", kind=TIMEOUT) == 0


def test_calls_still_waiting_when_it_opens_are_freed_at_once(eliot_messages):
    env = Env("hung")
    early = [env.get() for _ in range(3)]
    env.clock.advance(0.3)
    late = [env.get() for _ in range(4)]  # would time out 0.3 s after the breaker opens
    env.clock.advance(0.2)
    assert all(isinstance(o.error(), RedisUnavailable) and not isinstance(o.error(), RedisCircuitOpen) for o in early)
    assert all(isinstance(o.error(), RedisCircuitOpen) for o in late), "a waiting call was not freed when it opened"
    (released,) = [m for m in eliot_messages if m.get("message_type") == RELEASED.message_type]
    assert released["calls"] == 4
    env.clock.advance(0.3)  # their own timeouts pass later: counted, harmless
    assert env.metric("redis_call_failures_total", kind=TIMEOUT) == 7


def test_retry_after_is_the_rest_of_the_open_period():
    env = Env(failures=1)
    env.time_out(1)
    env.clock.advance(0.2)
    assert env.get().error().retry_after_s == 1  # 0.8 s left, rounded up
    assert env.breaker.describe()["retry_after_s"] == 1


def test_after_the_open_period_one_ping_probes_and_player_calls_stay_refused_until_it_closes(eliot_messages):
    env = Env()
    env.time_out(3)
    env.pool.mode = "up"
    env.clock.advance(OPEN_S - 0.01)
    assert env.pool.count("PING") == 0, "probed before the open period ended"
    env.clock.advance(0.01)
    assert env.pool.count("PING") == 1 and env.state == HALF_OPEN  # the first PING answered; two more to go
    assert isinstance(env.get().error(), RedisCircuitOpen), "a player call went through while half-open"
    env.clock.advance(PROBE_INTERVAL_S)
    assert env.pool.count("PING") == 2 and env.state == HALF_OPEN
    env.clock.advance(PROBE_INTERVAL_S)
    assert env.pool.count("PING") == 3 and env.state == CLOSED
    assert env.get().value is None and env.pool.sent[-1] == "GET"
    env.clock.advance(60)
    assert env.pool.count("PING") == 3, "a closed breaker kept probing"
    probes = [m for m in eliot_messages if m.get("message_type") == PROBED.message_type]
    assert [(p["verdict"], p["state"]) for p in probes] == [("success", HALF_OPEN)] * 2 + [("success", CLOSED)]
    path = [(m["from_state"], m["to_state"], m["reason"]) for m in eliot_messages
            if m.get("message_type") == BREAKER_TRANSITION.message_type and m["breaker_name"] == BREAKER_NAME]
    assert path == [(CLOSED, OPEN, "failures"), (OPEN, HALF_OPEN, "cooldown"), (HALF_OPEN, CLOSED, "recovered")]


def test_a_failed_ping_reopens_it_for_longer_each_time_up_to_the_cap_then_closing_resets():
    env = Env()
    env.time_out(3)  # open at t0 for 1 s; the PINGs below hang, each failing at txredisapi's reply timeout
    periods = []
    for _ in range(5):
        env.clock.advance(env.breaker.machine.open_duration_s)  # half-open: a PING is sent and hangs
        assert env.state == HALF_OPEN and env.pool.count("PING") == len(periods) + 1
        env.pool.pending[-1][2].errback(__import__("txredisapi").TimeoutError("no reply"))
        assert env.state == OPEN
        periods.append(env.breaker.machine.open_duration_s)
    assert periods == [2.0, 4.0, 5.0, 5.0, 5.0]
    env.pool.mode = "up"
    env.pass_time(5.0 + 3 * PROBE_INTERVAL_S)
    assert env.state == CLOSED
    env.time_out(3)
    assert env.breaker.machine.open_duration_s == OPEN_S


def test_a_ping_that_never_returns_times_out_on_its_own_and_reopens_it():
    env = Env()
    env.time_out(3)
    env.clock.advance(OPEN_S)
    assert env.state == HALF_OPEN and env.pool.count("PING") == 1
    env.clock.advance(PROBE_TIMEOUT_S - 0.01)
    assert env.state == HALF_OPEN
    env.clock.advance(0.01)
    assert env.state == OPEN and env.breaker.describe()["transitions"][-1]["reason"] == "probe_failed"


def test_a_long_outage_costs_one_ping_per_open_period():
    env = Env("refused")
    for _ in range(3):
        env.get()
    env.pass_time(60, step_s=0.1)
    # PINGs 1, 3 and 7 s after it opened (periods of 1, 2, 4 s), then every 5 s: 12, 17, … 57
    assert env.pool.count("PING") == 13
    assert env.state == OPEN


def test_stopping_cancels_its_timers_and_the_probe_in_flight():
    env = Env()
    env.time_out(3)
    env.breaker.stopService()
    assert env.clock.getDelayedCalls() == []
    env.clock.advance(OPEN_S)
    env.pool.mode = "hung"
    env.get()  # advances the machine: half-open, but a stopped breaker sends no PING
    assert env.pool.count("PING") == 0
    env.breaker.startService()
    env.clock.advance(0)
    assert env.pool.count("PING") == 1
    env.breaker.stopService()
    assert env.breaker.describe()["probes_in_flight"] == 0, "the cancelled probe kept its slot"
    assert [call for call in env.clock.getDelayedCalls() if call.active()] == []


def test_the_probe_and_unavailable_bypass_counting():
    env = Env()
    assert env.client.unavailable() is None
    env.time_out(3)
    error = env.client.unavailable()
    assert isinstance(error, RedisCircuitOpen) and error.retry_after_s == 1
    assert env.metric("circuit_breaker_rejections_total", breaker_name=BREAKER_NAME, request_class="GET") == 0


def test_describe_says_what_an_operator_needs():
    env = Env()
    env.time_out(3)
    described = env.breaker.describe()
    assert {k: described[k] for k in ("name", "state", "open_reason", "open_duration_s", "retry_after_s")} == {
        "name": "redis", "state": OPEN, "open_reason": "failures", "open_duration_s": OPEN_S, "retry_after_s": 1}
    assert described["transitions"][-1]["from"] == CLOSED


@pytest.mark.parametrize("bad", [{"probe_timeout_s": 0}, {"probe_timeout_s": 1, "probe_interval_s": -1}])
def test_nonsense_probe_settings_are_refused(bad):
    with pytest.raises(ValueError):
        RedisBreaker(Clock(), Metrics(CollectorRegistry(), "web"), **bad)


def test_a_call_failed_early_drops_its_late_reply_without_an_unhandled_error():
    env = Env("hung")
    calls = [env.get() for _ in range(3)]
    env.clock.advance(0.1)
    late = env.get()
    env.clock.advance(TIMEOUT_S - 0.1)  # the first three time out, open it, and free `late` at once
    assert isinstance(late.error(), RedisCircuitOpen) and all(o.fired for o in calls)
    assert env.pool.answer_pending() == 1  # Redis thaws and answers what it was sent: dropped, not raised
    assert env.state == OPEN


def test_cancelled_error_is_not_mistaken_for_a_timeout_when_the_caller_gives_up_first():
    env = Env("hung")
    call = env.get()
    env.clock.advance(TIMEOUT_S / 2)
    call.deferred.cancel()
    assert call.failure is not None and call.failure.check(CancelledError, RedisUnavailable)
    env.clock.advance(TIMEOUT_S)
    assert env.metric("redis_call_failures_total", kind=TIMEOUT) == 0
