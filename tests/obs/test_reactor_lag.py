"""The reactor-lag monitor on a ``task.Clock``: lateness measured per tick, readiness held through a recovery period.

A blocked reactor is modelled as the clock jumping forward past a pending tick before it runs (which is
what a real reactor does after a blocking call: the timer fires once, late).
"""

from __future__ import annotations

from typing import Any

import pytest
from eliot import MemoryLogger
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from tenantsvc.obs.reactor_lag import CAUGHT_UP, LAGGING, TICK_S, ReactorLagMonitor
from tenantsvc.web.health import Readiness
from tests.support.logs import memory_logger
from tests.support.metrics import metric_total

THRESHOLD_S, RECOVERY_S = 0.5, 1.0


def started_monitor(registry: CollectorRegistry | None = None) -> tuple[ReactorLagMonitor, Clock, CollectorRegistry]:
    """A running monitor on a Clock at t=1000 with a 0.5 s threshold and a 1 s recovery."""
    clock, registry = Clock(), registry or CollectorRegistry()
    clock.advance(1000.0)
    monitor = ReactorLagMonitor(clock, registry, threshold_s=THRESHOLD_S, recovery_s=RECOVERY_S)
    monitor.startService()
    return monitor, clock, registry


def run_on_time(clock: Clock, seconds: float) -> None:
    """Let the reactor run every tick exactly when due for ``seconds``."""
    for _ in range(round(seconds / TICK_S)):
        clock.advance(TICK_S)


def block(clock: Clock, seconds: float) -> None:
    """Hold the reactor for ``seconds`` past the pending tick's due time, then let it run the late tick."""
    clock.advance(TICK_S + seconds)


@pytest.fixture(autouse=True)
def logger() -> Any:
    """Captured eliot messages (every test: an unexpected traceback fails it)."""
    with memory_logger() as captured:
        yield captured


def test_ticks_on_time_record_zero_lag_and_stay_ready(logger: MemoryLogger):
    monitor, clock, registry = started_monitor()
    run_on_time(clock, 2.0)
    assert metric_total(registry, "reactor_lag_seconds_count") == 20
    assert metric_total(registry, "reactor_lag_seconds_sum") == pytest.approx(0.0, abs=1e-9)
    assert not monitor.too_late
    assert metric_total(registry, "reactor_lag_episodes_total") == 0


def test_a_late_tick_is_observed_in_the_histogram_with_its_lateness():
    monitor, clock, registry = started_monitor()
    block(clock, 0.3)
    assert monitor.last_lag_s == pytest.approx(0.3)
    assert metric_total(registry, "reactor_lag_seconds_bucket", le="0.25") == 0
    assert metric_total(registry, "reactor_lag_seconds_bucket", le="0.5") == 1
    assert metric_total(registry, "reactor_lag_max_seconds") == pytest.approx(0.3)
    assert not monitor.too_late, "0.3 s is under the 0.5 s threshold"


def test_a_block_over_the_threshold_holds_readiness_until_the_recovery_period_is_on_time(logger: MemoryLogger):
    monitor, clock, registry = started_monitor()
    readiness = Readiness(lag=monitor)
    readiness.started = True
    block(clock, 2.0)
    assert readiness.describe() == {
        "status": "lagging", "reason": "reactor_lag", "reactor_lag_seconds": 2.0, "threshold_seconds": 0.5,
        "recovery_seconds": 1.0,
        "message": "the reactor ran timers over 0.5 s late; ready again after 1 s on time"}
    assert not readiness.ready
    run_on_time(clock, RECOVERY_S - TICK_S)
    assert not readiness.ready, "one on-time tick short of the recovery period"
    run_on_time(clock, TICK_S)
    assert readiness.ready and readiness.describe() == {"status": "ready"}
    assert metric_total(registry, "reactor_lag_episodes_total") == 1
    (lagging,) = [m for m in logger.messages if m.get("message_type") == LAGGING.message_type]
    assert lagging["lag_s"] == pytest.approx(2.0) and lagging["threshold_s"] == 0.5
    (caught_up,) = [m for m in logger.messages if m.get("message_type") == CAUGHT_UP.message_type]
    assert caught_up["worst_lag_s"] == pytest.approx(2.0)
    assert caught_up["unready_s"] == pytest.approx(2.0 + RECOVERY_S)


def test_a_second_block_during_recovery_starts_the_recovery_again_without_a_new_episode():
    monitor, clock, registry = started_monitor()
    block(clock, 1.0)
    run_on_time(clock, 0.5)
    block(clock, 0.6)
    run_on_time(clock, RECOVERY_S - TICK_S)
    assert monitor.too_late, "the recovery period restarted at the second late tick"
    run_on_time(clock, TICK_S)
    assert not monitor.too_late
    assert metric_total(registry, "reactor_lag_episodes_total") == 1
    assert monitor.worst_lag_s == pytest.approx(1.0)


def test_a_tick_overdue_right_now_counts_as_lag_before_it_runs():
    """The reactor may answer a request queued during a block before it runs the late timer."""
    monitor, clock, _ = started_monitor()
    readiness = Readiness(lag=monitor)
    readiness.started = True
    clock.rightNow += TICK_S + 0.7  # time passes, the pending tick has not run yet
    assert monitor.overdue_s() == pytest.approx(0.7)
    assert readiness.state == "lagging"
    assert readiness.describe()["reactor_lag_seconds"] == 0.7


def test_draining_and_starting_win_over_lagging():
    monitor, clock, _ = started_monitor()
    readiness = Readiness(lag=monitor)
    block(clock, 1.0)
    assert readiness.state == "starting"
    readiness.started = True
    assert readiness.state == "lagging"
    readiness.start_draining()
    assert readiness.describe() == {"status": "draining"}


def test_the_peak_gauge_keeps_a_block_for_a_minute_then_forgets_it():
    monitor, clock, registry = started_monitor()
    block(clock, 3.0)
    run_on_time(clock, 30.0)
    assert metric_total(registry, "reactor_lag_max_seconds") == pytest.approx(3.0)
    run_on_time(clock, 31.0)
    assert metric_total(registry, "reactor_lag_max_seconds") == pytest.approx(0.0)


def test_stopping_cancels_the_pending_tick_and_a_stopped_monitor_never_holds_readiness():
    monitor, clock, _ = started_monitor()
    monitor.stopService()
    assert clock.getDelayedCalls() == []
    clock.advance(10.0)
    assert not monitor.too_late and monitor.overdue_s() == 0.0


def test_a_failing_tick_body_is_logged_and_the_monitor_keeps_ticking(logger: MemoryLogger, monkeypatch):
    monitor, clock, registry = started_monitor()

    def broken(lag_s: float, now: float) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor, "observe", broken)
    clock.advance(TICK_S)
    assert len(clock.getDelayedCalls()) == 1, "the next tick is scheduled despite the failure"
    (failure,) = logger.flush_tracebacks(RuntimeError)
    monkeypatch.undo()
    run_on_time(clock, 0.2)
    assert metric_total(registry, "reactor_lag_seconds_count") == 2


def test_the_monitor_refuses_a_meaningless_configuration():
    with pytest.raises(ValueError):
        ReactorLagMonitor(Clock(), CollectorRegistry(), threshold_s=0.0, recovery_s=1.0)
