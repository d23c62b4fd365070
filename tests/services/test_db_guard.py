"""DbBreaker on a Clock with a hand-driven fake Database: feeds, admission by class, bounded waits and the
overall deadline, exports."""

from __future__ import annotations

from typing import Any, Callable

import eliot
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tenantsvc.core.storage_errors import (
    DatabaseUnavailable,
    IntegrityViolation,
    InteractionAbandoned,
    StatementTimeout,
)
from tenantsvc.adapters.db.pool import PoolSnapshot
from tenantsvc.core.breaker import (
    BACKGROUND,
    CLOSED,
    CONNECTION_ERROR,
    HALF_OPEN,
    OPEN,
    READ,
    TIMEOUT,
    WRITE,
    BreakerConfig,
)
from tenantsvc.obs.metrics import Metrics
from tenantsvc.composition.core_parts import build_components
from tenantsvc.composition.overrides import Overrides
from tenantsvc.services.db_guard import (
    DEADLINE_MARGIN_S,
    LIVENESS_CHECK,
    PROBE,
    SAMPLE_INTERVAL_S,
    SUCCESS,
    DbBreaker,
    verdict,
)
from tenantsvc.services.errors import BreakerOpen, DatabaseTimeout, PoolTimeout, ServiceUnavailable
from tenantsvc.web.errors import to_api_error
from tests.support.web_harness import ThreadlessConnectionPool, harness_settings
from tests.support.logs import eliot_messages  # noqa: F401 - a fixture

CONN_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 3.0
DEADLINE_S = CONN_TIMEOUT_S + STATEMENT_TIMEOUT_S + DEADLINE_MARGIN_S
OPEN_DURATION_S = 5.0
SLOW_CALL_S = 1.0


class FakePending:
    """One interaction of the fake: begun, finished and withdrawn only when the test says so."""

    def __init__(self, db: "FakeDatabase", name: str):
        self.db = db
        self.name = name
        self.began = False
        self.began_at = 0.0
        self.reported_overdue = False
        self.withdrawn = False
        self.deferred: Deferred = Deferred(lambda d: setattr(self, "withdrawn", not self.began))

    def withdraw(self) -> bool:
        """Like ``PendingInteraction.withdraw``: only while not begun."""
        if self.began or self.deferred.called:
            return False
        self.deferred.cancel()
        return True

    def begin(self) -> None:
        assert not self.withdrawn, "a withdrawn interaction must never begin"
        self.began = True
        self.began_at = self.db.clock.seconds() if self.db.clock is not None else 0.0

    def finish(self, outcome: Any = "done") -> None:
        """Observers first, then the caller, as the real Database does."""
        failure = Failure(outcome) if isinstance(outcome, Exception) else None
        self.db.finish(self.name, failure)
        if not self.deferred.called:
            if failure is None:
                self.deferred.callback(outcome)
            else:
                self.deferred.errback(failure)


class FakeDatabase:
    """Implements what DbBreaker needs; every interaction waits for the test to drive it."""

    def __init__(self, clock: Any = None) -> None:
        self.clock = clock
        self.pool = PoolSnapshot(size=20, in_use=0, waiting=0)
        self.observers: list[Callable[..., None]] = []
        self.pending: list[FakePending] = []

    def named(self, name: str) -> list[FakePending]:
        """The interactions submitted under ``name``, oldest first."""
        return [pending for pending in self.pending if pending.name == name]

    def overdue(self, threshold_s: float) -> list[str]:
        """Like ``Database.overdue``: begun, unfinished, held ``threshold_s`` or more, each named once."""
        now = self.clock.seconds() if self.clock is not None else 0.0
        found = []
        for pending in self.pending:
            if (pending.began and not pending.deferred.called and not pending.reported_overdue
                    and now - pending.began_at >= threshold_s):
                pending.reported_overdue = True
                found.append(pending.name)
        return found

    def snapshot(self) -> PoolSnapshot:
        return self.pool

    def add_observer(self, observer: Callable[..., None]) -> None:
        self.observers.append(observer)

    def submit_interaction(self, name: str, fn: Any, *args: Any) -> FakePending:
        pending = FakePending(self, name)
        self.pending.append(pending)
        return pending

    def run_interaction(self, name: str, fn: Any, *args: Any) -> Deferred:
        return self.submit_interaction(name, fn, *args).deferred

    def finish(self, name: str, failure: Failure | None, hold_s: float = 0.002) -> None:
        for observer in self.observers:
            observer(name, 0.001, hold_s, failure)

    def interaction_ends(self, outcome: Any, name: str = "other") -> None:
        """An interaction not run through the breaker finishes (the observer feed)."""
        self.finish(name, Failure(outcome) if isinstance(outcome, Exception) else None)


def noop_txn(txn: Any) -> None:
    """Interaction body (never called by the fake)."""


class Env:
    """A started DbBreaker on a Clock, its fake Database and its own metrics registry."""

    def __init__(self, slow_call_threshold_s: float = SLOW_CALL_S, **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.db = FakeDatabase(self.clock)
        self.metrics = Metrics(CollectorRegistry(), "web")
        self.breaker = DbBreaker(self.db, self.clock, self.metrics, conn_timeout_s=CONN_TIMEOUT_S,
                                 statement_timeout_s=STATEMENT_TIMEOUT_S, slow_call_threshold_s=slow_call_threshold_s,
                                 config=BreakerConfig(open_duration_s=OPEN_DURATION_S, **config))
        self.breaker.startService()

    def run(self, request_class: str, name: str = "work") -> Deferred:
        return ensureDeferred(self.breaker.run(request_class, name, noop_txn))

    def pressure(self, in_use: int, waiting: int = 0) -> None:
        """Set the pool figures and let the sampler see them."""
        self.db.pool = PoolSnapshot(20, in_use, waiting)
        self.clock.advance(SAMPLE_INTERVAL_S)

    def metric(self, metric_name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(metric_name, labels) or 0.0

    @property
    def state(self) -> str:
        return self.breaker.machine.state

    def open_on_failures(self) -> None:
        for _ in range(5):
            self.db.interaction_ends(DatabaseUnavailable("OperationalError"))
        assert self.state == OPEN

    def half_open(self) -> FakePending:
        """Open on pressure, calm down, wait out the open period: half-open, with the breaker's own probe sent."""
        self.pressure(20)
        self.pressure(0)
        self.clock.advance(OPEN_DURATION_S)
        assert self.state == HALF_OPEN
        (probe,) = self.db.named(PROBE)
        return probe


@pytest.fixture
def env() -> Env:
    return Env()


def refusal(deferred: Deferred, error_type: type = BreakerOpen) -> Any:
    """The exception a fired, failed Deferred carries (and mark it handled)."""
    assert deferred.called, "expected an immediate answer"
    failure = deferred.result
    assert isinstance(failure, Failure) and failure.check(error_type), failure
    deferred.addErrback(lambda _: None)
    return failure.value


# ---- feeds -----------------------------------------------------------------------------------


def test_the_sampler_opens_the_breaker_on_pool_pressure_and_exports_it(env, eliot_messages):
    assert env.metric("circuit_breaker_state", breaker_name="db_pool") == 0
    env.pressure(16, waiting=4)
    assert env.state == CLOSED
    env.pressure(17)
    assert env.state == OPEN
    assert env.metric("circuit_breaker_state", breaker_name="db_pool") == 1
    assert env.metric("circuit_breaker_transitions_total", breaker_name="db_pool", from_state="closed",
                      to_state="open", reason="pressure") == 1
    logged = [m for m in eliot_messages if m.get("message_type") == "tenantsvc:breaker:transition"]
    assert [(m["from_state"], m["to_state"], m["reason"]) for m in logged] == [("closed", "open", "pressure")]


def test_connection_errors_and_statement_timeouts_open_the_breaker(env):
    for error in [DatabaseUnavailable("x")] * 3 + [StatementTimeout("y")] * 2:
        env.db.interaction_ends(error)
    assert env.state == OPEN
    assert env.breaker.machine.transitions[-1].detail == TIMEOUT


def test_answers_from_the_db_even_refusals_are_not_failures(env):
    for _ in range(3):
        for _ in range(4):
            env.db.interaction_ends(DatabaseUnavailable("x"))
        env.db.interaction_ends(IntegrityViolation("unique", "tenants_slug_key"))
    for _ in range(10):
        env.db.interaction_ends(InteractionAbandoned("queued"))
        env.db.interaction_ends(KeyError("a bug in the interaction"))
    assert env.state == CLOSED


@pytest.mark.parametrize(("error", "expected"), [
    (None, SUCCESS),
    (IntegrityViolation("unique", "x"), SUCCESS),
    (ValueError("the interaction's own logic"), SUCCESS),
    (DatabaseUnavailable("x"), CONNECTION_ERROR),
    (StatementTimeout("x"), TIMEOUT),
    (DatabaseTimeout(2, 8.5), TIMEOUT),
    (InteractionAbandoned("x"), None),
    (CancelledError(), None),
    (PoolTimeout(2, 5.0), None),
])
def test_verdict_on_each_outcome(error, expected):
    assert verdict(error) == expected


def test_a_failing_snapshot_never_kills_the_sampling_loop(env):
    def broken() -> PoolSnapshot:
        raise RuntimeError("snapshot failed")

    env.db.snapshot = broken  # type: ignore[method-assign]
    env.clock.advance(SAMPLE_INTERVAL_S)
    env.clock.advance(SAMPLE_INTERVAL_S)
    assert env.metric("worker_ticks_total", worker="db_breaker_sampler", outcome="error") == 2
    assert env.breaker.sampler.looping


def test_stopping_the_service_stops_sampling():
    env = Env()
    env.breaker.stopService()
    env.db.pool = PoolSnapshot(20, 20, 10)
    env.clock.advance(10 * SAMPLE_INTERVAL_S)
    assert env.state == CLOSED and env.clock.getDelayedCalls() == []


# ---- admission by request class ----------------------------------------------------------------


def test_closed_breaker_runs_reads_and_writes(env):
    read, write = env.run(READ, "list_tenants"), env.run(WRITE, "insert_tenant")
    assert [p.name for p in env.db.pending] == ["list_tenants", "insert_tenant"]
    for pending, value in zip(env.db.pending, ("rows", "row")):
        pending.begin()
        pending.finish(value)
    assert (read.result, write.result) == ("rows", "row")


def test_under_pressure_reads_are_refused_but_critical_writes_go_through(env):
    env.pressure(18)
    error = refusal(env.run(READ))
    assert error.retry_after_s == OPEN_DURATION_S and error.reason == "pressure"
    assert env.metric("circuit_breaker_rejections_total", breaker_name="db_pool", request_class="read") == 1
    write = env.run(WRITE, "place_bet")
    env.db.pending[-1].begin()
    env.db.pending[-1].finish("bet")
    assert write.result == "bet"


def test_when_the_db_is_failing_writes_fail_fast_with_retry_after(env):
    env.open_on_failures()
    env.clock.advance(1.5)
    error = refusal(env.run(WRITE))
    assert error.retry_after_s == 4 and error.reason == "failures"
    assert env.db.pending == []


def test_half_open_sends_its_own_probe_and_admits_users_up_to_the_probe_budget(env):
    own = env.half_open()
    user = env.run(READ)  # the second of the two probe slots
    refusal(env.run(READ))
    refusal(env.run(WRITE))
    assert [p.name for p in env.db.pending] == [PROBE, "work"]
    for pending in list(env.db.pending):
        pending.begin()
        pending.finish("ok")
    assert user.result == "ok"
    assert env.state == CLOSED
    assert env.breaker.machine.reason == "recovered"
    assert env.metric("circuit_breaker_state", breaker_name="db_pool") == 0
    assert env.metric("circuit_breaker_checks_total", breaker_name="db_pool", check=PROBE, outcome="answered") == 1
    assert own.began


def test_the_breaker_recovers_with_its_own_probes_alone_when_nobody_calls(env):
    first = env.half_open()
    first.begin()
    first.finish("ok")
    assert len(env.db.named(PROBE)) == 1
    env.clock.advance(SAMPLE_INTERVAL_S)  # the next one goes with the next sample
    second = env.db.named(PROBE)[1]
    second.begin()
    second.finish("ok")
    assert env.state == CLOSED and len(env.db.named(PROBE)) == 2


def test_background_work_is_refused_while_half_open_and_never_takes_a_probe_slot(env):
    env.half_open()
    refusal(env.run(BACKGROUND, "theme_refresh"))
    user = env.run(READ)
    assert [p.name for p in env.db.pending] == [PROBE, "work"] and not user.called
    assert env.metric("circuit_breaker_rejections_total", breaker_name="db_pool", request_class="background") == 1


def test_background_work_is_refused_even_when_the_breaker_opened_on_pressure(env):
    env.pressure(18)
    env.pressure(18)
    assert env.state == OPEN
    refusal(env.run(BACKGROUND))
    env.run(WRITE)  # a critical write still goes through
    assert [p.name for p in env.db.pending] == ["work"]


def test_a_failed_probe_reopens_for_longer_and_a_user_probe_sees_its_error():
    env = Env(open_backoff_factor=2.0, open_duration_max_s=4 * OPEN_DURATION_S)
    own = env.half_open()
    user = env.run(READ)
    env.db.named("work")[0].begin()
    env.db.named("work")[0].finish(DatabaseUnavailable("still down"))
    refusal(user, DatabaseUnavailable)
    assert (env.state, env.breaker.machine.reason) == (OPEN, "probe_failed")
    assert env.breaker.machine.open_duration_s == 2 * OPEN_DURATION_S
    refusal(env.run(WRITE))
    own.begin()
    own.finish(DatabaseUnavailable("still down"))  # a stale probe of the last half-open period: ignored
    assert env.breaker.machine.open_duration_s == 2 * OPEN_DURATION_S
    env.clock.advance(2 * OPEN_DURATION_S)
    assert env.state == HALF_OPEN
    retry = env.db.named(PROBE)[1]
    retry.begin()
    env.clock.advance(SLOW_CALL_S)  # the probe's own timeout: no answer is a failure
    assert env.state == OPEN and env.breaker.machine.open_duration_s == 4 * OPEN_DURATION_S
    env.clock.advance(4 * OPEN_DURATION_S)
    third = env.db.named(PROBE)[2]
    third.begin()
    third.finish("ok")
    env.clock.advance(SAMPLE_INTERVAL_S)
    fourth = env.db.named(PROBE)[3]
    fourth.begin()
    fourth.finish("ok")
    assert env.state == CLOSED
    env.open_on_failures()
    assert env.breaker.machine.open_duration_s == OPEN_DURATION_S  # closing reset the backoff


def test_a_probe_that_never_got_a_connection_frees_its_slot_and_is_sent_again():
    env = Env(half_open_max_probes=1)
    own = env.half_open()
    refusal(env.run(READ))  # the only slot is the breaker's own probe
    env.clock.advance(SLOW_CALL_S)  # no connection within the probe timeout: withdrawn, no verdict
    assert own.withdrawn and env.state == HALF_OPEN
    assert env.metric("circuit_breaker_checks_total", breaker_name="db_pool", check=PROBE,
                      outcome="no_connection") == 1
    env.clock.advance(SAMPLE_INTERVAL_S)
    assert len(env.db.named(PROBE)) == 2  # sent again with the next sample


def test_a_user_probe_past_the_deadline_reopens_the_breaker():
    env = Env()
    env.half_open()
    probe = env.run(READ)
    env.db.named("work")[0].begin()
    env.clock.advance(DEADLINE_S)
    refusal(probe, DatabaseTimeout)
    assert (env.state, env.breaker.machine.reason) == (OPEN, "probe_failed")
    assert env.breaker.machine.transitions[-1].detail == TIMEOUT


# ---- slow calls ------------------------------------------------------------------------------


def test_a_call_past_the_slow_threshold_is_a_failure_while_it_runs_and_sends_a_liveness_check(env):
    call = env.run(WRITE, "credit_wallet")
    env.db.pending[0].begin()
    env.clock.advance(SLOW_CALL_S - SAMPLE_INTERVAL_S)
    assert env.db.named(LIVENESS_CHECK) == []
    env.clock.advance(SAMPLE_INTERVAL_S)
    assert env.metric("db_slow_calls_total", name="credit_wallet") == 1
    assert env.breaker.machine._consecutive_failures == 1
    (check,) = env.db.named(LIVENESS_CHECK)
    check.begin()
    check.finish("ok")  # the database answers: the call was merely slow
    assert env.state == CLOSED and env.breaker.machine._consecutive_failures == 0
    env.clock.advance(SLOW_CALL_S)
    assert env.metric("db_slow_calls_total", name="credit_wallet") == 1  # counted once
    env.db.pending[0].finish("committed")
    assert call.result == "committed"


def test_a_slow_call_and_an_unanswered_liveness_check_open_the_breaker_at_once(env, eliot_messages):
    env.run(WRITE, "credit_wallet")
    env.db.pending[0].begin()  # Postgres frozen (SIGSTOP): no answer will come
    env.clock.advance(SLOW_CALL_S)
    (check,) = env.db.named(LIVENESS_CHECK)
    check.begin()
    env.clock.advance(SLOW_CALL_S)
    assert env.state == OPEN
    transition = env.breaker.machine.transitions[-1]
    assert (transition.reason, transition.detail) == ("failures", "unresponsive")
    assert env.metric("circuit_breaker_checks_total", breaker_name="db_pool", check=LIVENESS_CHECK,
                      outcome="unanswered") == 1
    checks = [m for m in eliot_messages if m.get("message_type") == "tenantsvc:breaker:check"]
    assert [(m["check"], m["outcome"], m["slow_calls"]) for m in checks] == [
        (LIVENESS_CHECK, "unanswered", ["credit_wallet"])]
    refusal(env.run(WRITE))  # the DB is not answering: writes fail fast


def test_a_liveness_check_without_a_free_connection_says_nothing(env):
    env.run(WRITE, "long_report")
    env.db.pending[0].begin()
    env.clock.advance(SLOW_CALL_S)
    (check,) = env.db.named(LIVENESS_CHECK)
    env.clock.advance(SLOW_CALL_S)  # never got a connection: the pool is busy, which pressure judges
    assert check.withdrawn and env.state == CLOSED


def test_a_slow_call_that_succeeds_is_no_success():
    env = Env()
    for _ in range(4):
        env.db.interaction_ends(DatabaseUnavailable("x"))
    env.db.finish("slow_but_fine", None, hold_s=SLOW_CALL_S + 0.1)
    env.db.interaction_ends(DatabaseUnavailable("x"))
    assert env.state == OPEN


def test_slow_call_detection_is_off_at_zero():
    env = Env(slow_call_threshold_s=0)
    env.run(WRITE)
    env.db.pending[0].begin()
    env.clock.advance(60 * SLOW_CALL_S)
    assert env.db.named(LIVENESS_CHECK) == [] and env.metric("db_slow_calls_total", name="work") == 0


# ---- bounded waits --------------------------------------------------------------------------


@pytest.mark.parametrize(("request_class", "name"), [(WRITE, "credit_wallet"), (READ, "list_tenants")])
def test_a_call_without_a_connection_within_the_bound_is_withdrawn_and_never_runs(env, request_class, name):
    call = env.run(request_class, name)
    pending = env.db.pending[0]
    env.clock.advance(CONN_TIMEOUT_S - 0.01)
    assert not call.called
    env.clock.advance(0.01)
    error = refusal(call, PoolTimeout)
    assert pending.withdrawn and error.retry_after_s == 2 and error.waited_s == CONN_TIMEOUT_S
    assert env.metric("db_pool_timeouts_total", name=name) == 1
    with pytest.raises(AssertionError, match="never begin"):
        pending.begin()


def test_the_deadline_is_the_connection_wait_plus_the_statement_timeout_plus_a_margin():
    metrics = Metrics(CollectorRegistry(), "web")
    breaker = DbBreaker(FakeDatabase(), Clock(), metrics, conn_timeout_s=1.0, statement_timeout_s=2.0,
                        deadline_margin_s=0.25)
    assert breaker.deadline_s == 3.25
    assert Env().breaker.deadline_s == DEADLINE_S
    with pytest.raises(ValueError, match="positive"):
        DbBreaker(FakeDatabase(), Clock(), metrics, conn_timeout_s=0, statement_timeout_s=1.0)


def test_without_a_statement_timeout_only_the_connection_wait_is_bounded():
    clock, db = Clock(), FakeDatabase()
    breaker = DbBreaker(db, clock, Metrics(CollectorRegistry(), "web"), conn_timeout_s=1.0, statement_timeout_s=0)
    assert breaker.deadline_s is None  # DB_STATEMENT_TIMEOUT=0: Postgres bounds no statement, so neither do we
    call = ensureDeferred(breaker.run(WRITE, "work", noop_txn))
    db.pending[0].begin()
    clock.advance(3600)
    assert not call.called and clock.getDelayedCalls() == []
    db.pending[0].finish("done")
    assert call.result == "done"


def test_the_composition_root_passes_the_configured_bounds(tmp_path):
    settings = harness_settings(str(tmp_path / "db.sqlite3"), env={"DB_CONN_TIMEOUT": "1",
                                                                    "DB_STATEMENT_TIMEOUT": "1500ms"})
    components = build_components(settings, Clock(), Overrides(pool_factory=ThreadlessConnectionPool))
    try:
        assert components.breaker.deadline_s == 1 + 1.5 + DEADLINE_MARGIN_S
    finally:
        components.db.close()


def test_a_call_that_began_within_the_bound_is_awaited_until_the_deadline(env):
    write = env.run(WRITE)
    env.clock.advance(CONN_TIMEOUT_S - 1)
    env.db.pending[0].begin()
    env.clock.advance(DEADLINE_S - (CONN_TIMEOUT_S - 1) - 0.01)
    assert not write.called and not env.db.pending[0].withdrawn
    env.db.pending[0].finish("committed")
    assert write.result == "committed"
    assert env.metric("db_pool_timeouts_total", name="work") == 0
    assert env.metric("db_deadline_timeouts_total", name="work") == 0


@pytest.mark.parametrize("request_class", [READ, WRITE])
def test_past_the_deadline_the_caller_gets_a_503_error_and_the_late_result_is_dropped(env, eliot_messages,
                                                                                      request_class):
    call = env.run(request_class, "credit_wallet")
    env.db.pending[0].begin()  # e.g. a statement sent to a frozen (SIGSTOPped) Postgres: no answer ever comes
    env.clock.advance(DEADLINE_S - 0.01)
    assert not call.called
    env.clock.advance(0.01)
    error = refusal(call, DatabaseTimeout)
    assert isinstance(error, ServiceUnavailable)
    assert (error.retry_after_s, error.deadline_s) == (2, DEADLINE_S)
    assert env.metric("db_deadline_timeouts_total", name="credit_wallet") == 1
    assert to_api_error(error).status == 503 and to_api_error(error).headers["Retry-After"] == "2"
    env.clock.advance(30)
    env.db.pending[0].finish("committed late")  # the DB thawed: the interaction completes in the background
    late = [m for m in eliot_messages if m.get("message_type") == "tenantsvc:db:late_result"]
    assert [(m["name"], m["outcome"], m["elapsed_s"]) for m in late] == [
        ("credit_wallet", "success", DEADLINE_S + 30)]


def test_a_late_failure_is_logged_and_never_left_unhandled(env, eliot_messages):
    call = env.run(WRITE)
    env.db.pending[0].begin()
    env.clock.advance(DEADLINE_S)
    refusal(call, DatabaseTimeout)
    env.db.pending[0].finish(DatabaseUnavailable("connection reset"))
    assert env.db.pending[0].deferred.result is None  # consumed: no "Unhandled error in Deferred"
    late = [m for m in eliot_messages if m.get("message_type") == "tenantsvc:db:late_result"]
    assert [m["outcome"] for m in late] == ["DatabaseUnavailable"]


def test_deadline_timeouts_open_the_breaker_and_later_writes_fail_fast():
    env = Env(slow_call_threshold_s=0)  # the deadline alone (slow calls would open it sooner)
    calls = [env.run(WRITE) for _ in range(5)]
    for pending in env.db.pending:
        pending.begin()
    env.clock.advance(DEADLINE_S)
    for call in calls:
        refusal(call, DatabaseTimeout)
    assert env.state == OPEN
    assert (env.breaker.machine.open_reason, env.breaker.machine.transitions[-1].detail) == ("failures", TIMEOUT)
    refusal(env.run(WRITE))
    assert len(env.db.pending) == 5


def test_the_timers_are_cleared_once_the_call_finished(env):
    sampler_only = len(env.clock.getDelayedCalls())
    write = env.run(WRITE)
    assert len(env.clock.getDelayedCalls()) == sampler_only + 2  # connection wait and overall deadline
    env.db.pending[0].begin()
    env.db.pending[0].finish("done")
    assert write.result == "done"
    assert len(env.clock.getDelayedCalls()) == sampler_only


def test_cancelling_a_queued_write_cancels_it_rather_than_timing_out(env):
    write = env.run(WRITE)
    write.cancel()
    refusal(write, CancelledError)
    assert env.db.pending[0].withdrawn
    assert env.metric("db_pool_timeouts_total", name="work") == 0


def test_cancelling_a_running_call_drops_its_result_and_clears_the_timers(env):
    sampler_only = len(env.clock.getDelayedCalls())
    read = env.run(READ)
    env.db.pending[0].begin()
    read.cancel()
    refusal(read, CancelledError)
    assert len(env.clock.getDelayedCalls()) == sampler_only
    env.db.pending[0].finish("ignored")
    assert env.metric("db_deadline_timeouts_total", name="work") == 0


# ---- operators and health ----------------------------------------------------------------------


def test_forced_open_refuses_everything_until_auto(env, eliot_messages):
    env.breaker.set_mode("open")
    refusal(env.run(READ))
    assert refusal(env.run(WRITE)).reason == "forced"
    env.clock.advance(60)
    assert env.state == OPEN
    env.breaker.set_mode("auto")
    env.clock.advance(OPEN_DURATION_S)
    assert env.state == HALF_OPEN
    modes = [m["mode"] for m in eliot_messages if m.get("message_type") == "tenantsvc:breaker:mode"]
    assert modes == ["open", "auto"]


def test_forced_closed_admits_reads_while_the_db_is_failing(env):
    env.breaker.set_mode("closed")
    for _ in range(20):
        env.db.interaction_ends(DatabaseUnavailable("x"))
    env.pressure(20, waiting=9)
    env.run(READ)
    assert env.state == CLOSED and len(env.db.pending) == 1


def test_an_unknown_mode_is_refused(env):
    with pytest.raises(ValueError, match="open, closed, auto"):
        env.breaker.set_mode("sideways")


def test_describe_reports_state_mode_and_recent_transitions(env):
    env.open_on_failures()
    env.clock.advance(OPEN_DURATION_S)
    report = env.breaker.describe()
    assert {k: report[k] for k in ("name", "state", "mode", "open_reason", "probes_in_flight", "open_duration_s",
                                   "slow_call_threshold_s")} == {
        "name": "db_pool", "state": "half_open", "mode": "auto", "open_reason": "failures", "probes_in_flight": 1,
        "open_duration_s": OPEN_DURATION_S, "slow_call_threshold_s": SLOW_CALL_S}
    assert [(t["from"], t["to"], t["reason"], t["detail"]) for t in report["transitions"]] == [
        ("closed", "open", "failures", "connection_error"), ("open", "half_open", "cooldown", "")]
    assert report["transitions"][1]["at"] - report["transitions"][0]["at"] == pytest.approx(OPEN_DURATION_S)


def test_classified_runners_send_every_interaction_through_the_breaker(env):
    reads, writes = env.breaker.runner(READ), env.breaker.runner(WRITE)
    env.pressure(18)
    refusal(reads.run_interaction("list_tenants", noop_txn))
    write = writes.run_interaction("insert_tenant", noop_txn)
    assert [p.name for p in env.db.pending] == ["insert_tenant"]
    env.clock.advance(CONN_TIMEOUT_S)
    refusal(write, PoolTimeout)
    with pytest.raises(ValueError, match="request_class"):
        env.breaker.runner("public")


def test_a_long_outage_costs_one_probe_per_open_period_never_a_reconnect_storm():
    env = Env(open_backoff_factor=2.0, open_duration_max_s=4 * OPEN_DURATION_S)
    env.open_on_failures()
    for _ in range(int(600 / SAMPLE_INTERVAL_S)):  # ten minutes of a database that never answers
        env.clock.advance(SAMPLE_INTERVAL_S)
        for probe in env.db.named(PROBE):
            if not probe.deferred.called:
                probe.begin()
                probe.finish(DatabaseUnavailable("connection refused"))
    # Open periods 5, 10, 20, 20, 20 … s: one probe each, whatever the pool size or the traffic.
    assert 28 <= len(env.db.named(PROBE)) <= 31, len(env.db.named(PROBE))
    assert env.state in (OPEN, HALF_OPEN)
