"""OddsPoller on a Clock: staggered per-sport loops, jitter, backoff with Retry-After, stop, metrics, describe()."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedAction
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from tenantsvc.core.storage_errors import DatabaseUnavailable
from tenantsvc.core.feed_errors import FeedError, FeedHttpError, FeedTimeout
from tenantsvc.core.odds import SPORTS
from tenantsvc.core.poll_schedule import RETRY_AFTER_CAP_S
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.errors import BreakerOpen
from tenantsvc.workers.odds_poller import POLL, OddsPoller
from tests.support.logs import memory_logger

ALMOST_ONE = 0.999
START = 1_000.0  # the Clock's time at start-up, so timestamps are not zero


class FeedConfigError(FeedError):
    """A feed error that retrying soon cannot fix."""

    kind = "http_error"
    retryable = False


@dataclass
class FakeIngest:
    """An ``ingest(sport)`` the test scripts: errors to raise in turn, sports whose runs stay open until fired."""

    clock: Clock
    calls: list[tuple[str, float]] = field(default_factory=list)
    errors: dict[str, list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    held: set[str] = field(default_factory=set)
    open_runs: dict[str, Deferred] = field(default_factory=dict)

    async def __call__(self, sport: str) -> None:
        self.calls.append((sport, self.clock.seconds() - START))
        if sport in self.held:
            self.open_runs[sport] = Deferred()
            await self.open_runs[sport]
        elif self.errors[sport]:
            raise self.errors[sport].pop(0)

    def times(self, sport: str) -> list[float]:
        """When (seconds after start-up) ``sport`` was polled."""
        return [at for polled, at in self.calls if polled == sport]


@dataclass
class Rig:
    """A poller wired to a Clock, a scripted ingest and its own metrics registry."""

    clock: Clock
    ingest: FakeIngest
    metrics: Metrics
    poller: OddsPoller

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of one exported sample, or None if it is absent."""
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture(autouse=True)
def eliot_logger() -> Iterator[MemoryLogger]:
    """Capture eliot messages; fail on invalid messages or tracebacks the test did not expect and flush."""
    with memory_logger() as logger:
        yield logger


def make_rig(sports: Sequence[str] = ("soccer",), *, period_s: float = 60.0, jitter: float = 0.5,
             start: bool = True, **options: Any) -> Rig:
    """A poller over ``sports`` with a fixed ``random``; started at ``START`` unless ``start`` is False."""
    clock = Clock()
    clock.advance(START)
    ingest = FakeIngest(clock)
    metrics = Metrics(CollectorRegistry(), "worker")
    poller = OddsPoller(sports, ingest, clock=clock, metrics=metrics, period_s=period_s,
                        random=lambda: jitter, **options)
    if start:
        poller.startService()
    return Rig(clock, ingest, metrics, poller)


def run_for(clock: Clock, seconds: float, step: float = 1.0) -> None:
    """Advance ``clock`` by ``seconds`` in ``step`` increments (plus one zero step to run due calls)."""
    clock.advance(0)
    for _ in range(round(seconds / step)):
        clock.advance(step)


# --- schedule -------------------------------------------------------------------------------------------

def test_each_sport_first_runs_at_its_stagger_offset():
    rig = make_rig(("soccer", "tennis", "golf", "darts"))
    assert rig.ingest.calls == []  # nothing runs inside startService
    run_for(rig.clock, 50)
    assert rig.ingest.calls == [("soccer", 0.0), ("tennis", 15.0), ("golf", 30.0), ("darts", 45.0)]


def test_no_two_sports_run_in_the_same_clock_advance():
    rig = make_rig(SPORTS, period_s=180.0)  # 18 sports, one every 10 s
    rig.clock.advance(0)
    for _ in range(3 * 180 - 1):
        before = len(rig.ingest.calls)
        rig.clock.advance(1.0)
        assert len(rig.ingest.calls) - before <= 1
    assert all(rig.ingest.times(sport) == [i * 10.0, i * 10.0 + 180, i * 10.0 + 360]
               for i, sport in enumerate(SPORTS))


@pytest.mark.parametrize(("jitter", "next_run"), [(0.0, 30.0), (0.5, 60.0), (ALMOST_ONE, 89.94)])
def test_after_a_success_the_next_run_is_a_jittered_period_later(jitter, next_run):
    rig = make_rig(jitter=jitter)
    rig.clock.advance(0)
    assert rig.poller.describe()["soccer"]["next_run_in_s"] == pytest.approx(next_run)
    rig.clock.advance(next_run - 0.01)
    assert len(rig.ingest.calls) == 1
    rig.clock.advance(0.01)
    assert rig.ingest.times("soccer") == [0.0, pytest.approx(next_run)]


def test_backoff_grows_with_consecutive_failures_and_resets_after_a_success():
    rig = make_rig()  # base 30 s, jitter 0.5 → exactly the nominal delays
    rig.ingest.errors["soccer"] = [FeedTimeout("t"), FeedTimeout("t"), FeedTimeout("t")]
    run_for(rig.clock, 300)
    # failures at 0, 30, 90 → waits 30, 60, 120; success at 210 → one period (60); then still fine
    assert rig.ingest.times("soccer") == [0.0, 30.0, 90.0, 210.0, 270.0]
    rig.ingest.errors["soccer"] = [FeedTimeout("t")]
    run_for(rig.clock, 60)
    assert rig.ingest.times("soccer")[-2:] == [330.0, 360.0]  # the streak restarted at the base delay


def test_backoff_stops_growing_at_the_cap():
    rig = make_rig(backoff_base_s=100, backoff_cap_s=250)
    rig.ingest.errors["soccer"] = [FeedTimeout("t")] * 4
    run_for(rig.clock, 1000, step=10)
    assert rig.ingest.times("soccer")[:5] == [0.0, 100.0, 300.0, 550.0, 800.0]


def test_a_retry_after_longer_than_the_backoff_is_honoured():
    rig = make_rig()
    rig.ingest.errors["soccer"] = [FeedHttpError(429, retry_after_s=500.0)]
    rig.clock.advance(0)
    assert rig.poller.describe()["soccer"] == {
        "next_run_in_s": 500.0, "in_flight": False, "consecutive_failures": 1, "last_success": None,
        "last_error": "rate_limited"}
    rig.clock.advance(499)
    assert len(rig.ingest.calls) == 1
    rig.clock.advance(1)
    assert rig.ingest.times("soccer") == [0.0, 500.0]


def test_a_hostile_retry_after_is_capped_at_an_hour():
    rig = make_rig()
    rig.ingest.errors["soccer"] = [FeedHttpError(503, retry_after_s=10.0 ** 9)]
    rig.clock.advance(0)
    assert rig.poller.describe()["soccer"]["next_run_in_s"] == RETRY_AFTER_CAP_S


def test_a_feed_error_that_retrying_cannot_fix_waits_the_full_cap_at_once():
    rig = make_rig(backoff_base_s=30, backoff_cap_s=900)
    rig.ingest.errors["soccer"] = [FeedConfigError("bad key")]
    rig.clock.advance(0)
    assert rig.poller.describe()["soccer"]["next_run_in_s"] == pytest.approx(900.0)


def test_a_run_in_flight_blocks_only_its_own_sport():
    rig = make_rig(("soccer", "tennis"))
    rig.ingest.held.add("soccer")
    run_for(rig.clock, 600)
    assert rig.ingest.times("soccer") == [0.0]
    assert len(rig.ingest.times("tennis")) == 10  # 30, 90, … 570: the other sport carries on
    assert rig.poller.describe()["soccer"]["in_flight"] is True
    assert rig.poller.describe()["soccer"]["next_run_in_s"] is None
    rig.ingest.open_runs["soccer"].callback(None)
    run_for(rig.clock, 60)
    assert rig.ingest.times("soccer") == [0.0, 660.0]  # one period after the run finished


@pytest.mark.parametrize("raise_synchronously", [False, True])
def test_an_unexpected_exception_is_logged_counted_and_backed_off_without_killing_the_loop(
        raise_synchronously, eliot_logger):
    rig = make_rig(start=False)
    failures = [RuntimeError("bug")]

    async def failing_once(sport: str) -> None:
        if failures:
            raise failures.pop()
        await rig.ingest(sport)

    def failing_once_synchronously(sport: str) -> Any:
        if failures:
            raise failures.pop()
        return rig.ingest(sport)

    rig.poller._ingest = failing_once_synchronously if raise_synchronously else failing_once
    rig.poller.startService()
    run_for(rig.clock, 100)
    assert len(eliot_logger.flush_tracebacks(RuntimeError)) == 1
    assert rig.sample("feed_errors_total", sport="soccer", kind="error") == 1
    assert rig.ingest.times("soccer") == [30.0, 90.0]  # backed off 30 s, then the normal period
    assert rig.poller.describe()["soccer"]["last_error"] is None


@pytest.mark.parametrize("refusal", [BreakerOpen(3, "failures"), DatabaseUnavailable("server closed the connection")])
def test_a_save_the_database_refused_is_db_unavailable_backed_off_and_logged_without_a_traceback(
        refusal, eliot_logger):
    rig = make_rig()
    rig.ingest.errors["soccer"] = [refusal]
    rig.clock.advance(0)
    assert eliot_logger.flush_tracebacks(Exception) == []
    assert rig.sample("feed_errors_total", sport="soccer", kind="db_unavailable") == 1
    assert rig.poller.describe()["soccer"]["last_error"] == "db_unavailable"
    assert rig.poller.describe()["soccer"]["next_run_in_s"] == 30.0  # the first backoff step


def test_a_cancelled_error_while_running_counts_as_an_error(eliot_logger):
    rig = make_rig()
    rig.ingest.errors["soccer"] = [CancelledError()]  # e.g. a timeout that cancelled without translating
    rig.clock.advance(0)
    eliot_logger.flush_tracebacks(CancelledError)
    assert rig.sample("feed_errors_total", sport="soccer", kind="error") == 1
    assert rig.poller.describe()["soccer"]["next_run_in_s"] == 30.0


# --- stopping -------------------------------------------------------------------------------------------

def test_stop_cancels_every_pending_run():
    rig = make_rig(("soccer", "tennis", "golf"))
    rig.clock.advance(0)
    assert len(rig.clock.getDelayedCalls()) == 3
    stopped = rig.poller.stopService()
    assert stopped.called
    assert rig.clock.getDelayedCalls() == []
    run_for(rig.clock, 600, step=10)
    assert rig.ingest.times("soccer") == [0.0]
    assert rig.ingest.times("tennis") == []
    assert all(state["next_run_in_s"] is None for state in rig.poller.describe().values())


def test_stop_waits_for_the_run_in_flight_without_cancelling_it():
    rig = make_rig(("soccer", "tennis"))
    rig.ingest.held.add("soccer")
    rig.clock.advance(0)
    stopped = rig.poller.stopService()
    assert rig.clock.getDelayedCalls() == []
    assert not stopped.called
    run_for(rig.clock, 100)
    assert not rig.ingest.open_runs["soccer"].called  # never cancelled: it may be inside a DB write
    rig.ingest.open_runs["soccer"].callback(None)
    assert stopped.called
    assert rig.clock.getDelayedCalls() == []  # the finished run schedules nothing after stop
    assert rig.sample("odds_worker_last_success_timestamp_seconds", sport="soccer") == START + 100


def test_a_run_cancelled_during_stop_is_not_counted_as_an_error(eliot_logger):
    rig = make_rig()
    rig.ingest.held.add("soccer")
    rig.clock.advance(0)
    stopped = rig.poller.stopService()
    rig.ingest.open_runs["soccer"].cancel()  # e.g. the DB service shutting down cancelled the interaction
    assert stopped.called
    assert rig.sample("feed_errors_total", sport="soccer", kind="error") == 0
    assert rig.sample("worker_ticks_total", worker="worker_odds", outcome="error") == 0
    assert rig.poller.describe()["soccer"]["consecutive_failures"] == 0
    (action,) = LoggedAction.of_type(eliot_logger.messages, POLL)
    assert action.end_message["outcome"] == "stopped"


def test_a_restarted_poller_resumes_its_stagger_and_keeps_one_timer_per_sport():
    rig = make_rig(("soccer", "tennis"))
    rig.ingest.held.add("soccer")
    rig.clock.advance(0)
    rig.poller.stopService()
    rig.poller.startService()  # soccer is still in flight: only tennis gets a timer now
    assert len(rig.clock.getDelayedCalls()) == 1
    rig.ingest.open_runs["soccer"].callback(None)
    assert len(rig.clock.getDelayedCalls()) == 2


# --- metrics, logs and describe() -----------------------------------------------------------------------

def test_success_sets_the_last_success_time_and_the_fetch_duration():
    rig = make_rig()
    rig.ingest.held.add("soccer")
    rig.clock.advance(0)
    rig.clock.advance(3)
    rig.ingest.open_runs["soccer"].callback(None)
    assert rig.sample("odds_worker_last_success_timestamp_seconds", sport="soccer") == START + 3
    assert rig.sample("feed_fetch_duration_seconds_count", sport="soccer") == 1
    assert rig.sample("feed_fetch_duration_seconds_sum", sport="soccer") == 3
    assert rig.sample("feed_errors_total", sport="soccer", kind="timeout") == 0
    assert rig.sample("worker_ticks_total", worker="worker_odds", outcome="ok") == 1
    assert rig.sample("worker_last_success_timestamp_seconds", worker="worker_odds") == START + 3


def test_odds_age_counts_from_start_up_until_the_first_success_then_grows_between_polls():
    rig = make_rig(("soccer", "tennis"))
    assert rig.sample("odds_age_seconds", sport="tennis") == 0
    rig.ingest.errors["tennis"] = [FeedTimeout("t")]
    run_for(rig.clock, 30)  # soccer ok at 0, tennis failed at 30
    assert rig.sample("odds_age_seconds", sport="soccer") == 30
    assert rig.sample("odds_age_seconds", sport="tennis") == 30  # never succeeded: as old as the process
    rig.clock.advance(25)
    assert rig.sample("odds_age_seconds", sport="soccer") == 55
    assert rig.sample("odds_age_seconds", sport="tennis") == 55


def test_every_series_exists_from_construction_before_the_poller_starts():
    rig = make_rig(("soccer", "tennis"), start=False)  # e.g. the migrations still wait for the database
    rig.clock.advance(900)
    assert rig.sample("odds_age_seconds", sport="tennis") == 900  # so "odds_age_seconds > 900" can fire
    assert rig.sample("feed_errors_total", sport="tennis", kind="unreachable") == 0
    assert rig.sample("worker_ticks_total", worker="worker_odds", outcome="ok") == 0
    assert rig.sample("worker_started_timestamp_seconds", worker="worker_odds") == START
    assert rig.sample("worker_last_success_timestamp_seconds", worker="worker_odds") is None


def test_each_poll_is_one_worker_odds_tick():
    rig = make_rig(("soccer", "tennis"))
    rig.ingest.errors["tennis"] = [FeedTimeout("t")]
    run_for(rig.clock, 30)
    assert rig.sample("worker_ticks_total", worker="worker_odds", outcome="ok") == 1
    assert rig.sample("worker_ticks_total", worker="worker_odds", outcome="error") == 1
    assert rig.sample("worker_last_success_timestamp_seconds", worker="worker_odds") == START


def test_failures_are_counted_by_sport_and_kind_and_leave_the_last_success_alone():
    rig = make_rig()
    rig.ingest.errors["soccer"] = [FeedHttpError(429), FeedHttpError(502), FeedTimeout("t")]
    run_for(rig.clock, 250)  # failures at 0, 30, 90 (waits 30, 60, 120); success at 210
    assert rig.sample("feed_errors_total", sport="soccer", kind="rate_limited") == 1
    assert rig.sample("feed_errors_total", sport="soccer", kind="server_error") == 1
    assert rig.sample("feed_errors_total", sport="soccer", kind="timeout") == 1
    assert rig.sample("feed_fetch_duration_seconds_count", sport="soccer") == 4
    assert rig.sample("odds_worker_last_success_timestamp_seconds", sport="soccer") == START + 210


def test_describe_reports_every_sport_before_and_after_runs():
    rig = make_rig(("soccer", "tennis"))
    assert rig.poller.describe() == {
        "soccer": {"next_run_in_s": 0.0, "in_flight": False, "consecutive_failures": 0, "last_success": None,
                   "last_error": None},
        "tennis": {"next_run_in_s": 30.0, "in_flight": False, "consecutive_failures": 0, "last_success": None,
                   "last_error": None},
    }
    rig.ingest.errors["tennis"] = [FeedTimeout("t"), FeedTimeout("t")]
    run_for(rig.clock, 60)  # soccer ok at 0 and 60; tennis failed at 30 and 60
    assert rig.poller.describe() == {
        "soccer": {"next_run_in_s": 60.0, "in_flight": False, "consecutive_failures": 0,
                   "last_success": START + 60, "last_error": None},
        "tennis": {"next_run_in_s": 60.0, "in_flight": False, "consecutive_failures": 2, "last_success": None,
                   "last_error": "timeout"},
    }


def test_each_run_is_an_eliot_action_naming_its_sport_and_outcome(eliot_logger):
    rig = make_rig(("soccer", "tennis"))
    rig.ingest.errors["tennis"] = [FeedHttpError(429)]
    run_for(rig.clock, 30)
    actions = LoggedAction.of_type(eliot_logger.messages, POLL)
    assert [(a.start_message["sport"], a.end_message["outcome"], a.end_message["consecutive_failures"])
            for a in actions] == [("soccer", "ok", 0), ("tennis", "rate_limited", 1)]
    assert all(a.succeeded for a in actions)


@pytest.mark.parametrize("sports", [("soccer", "curling"), ("soccer", "soccer")])
def test_unknown_or_repeated_sports_are_refused(sports):
    with pytest.raises(ValueError):
        make_rig(sports, start=False)
