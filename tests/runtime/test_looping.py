"""runtime.looping on a Clock: LoopingWorker: its series exist from construction, and each tick is counted and timed."""

from __future__ import annotations

from typing import Iterator

import pytest
from eliot import MemoryLogger, log_message
from eliot.parse import Parser
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tenantsvc.obs.metrics import Metrics
from tenantsvc.runtime.looping import GuardedLoop, LoopingWorker
from tests.support.logs import memory_logger

START = 5_000.0


@pytest.fixture(autouse=True)
def eliot_logger() -> Iterator[MemoryLogger]:
    """Capture eliot messages (the failing tick's traceback is expected and flushed by the test)."""
    with memory_logger() as logger:
        yield logger


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_worker_exists_in_metrics_before_its_first_tick(eliot_logger):
    clock, metrics = Clock(), Metrics(CollectorRegistry(), "worker_settlement")
    clock.advance(START)

    async def tick() -> None:
        return None

    LoopingWorker("worker_settlement", tick, clock=clock, interval_s=300, metrics=metrics)  # built, not started
    assert sample(metrics, "worker_started_timestamp_seconds", worker="worker_settlement") == START
    assert sample(metrics, "worker_ticks_total", worker="worker_settlement", outcome="ok") == 0
    assert sample(metrics, "worker_ticks_total", worker="worker_settlement", outcome="error") == 0
    assert sample(metrics, "worker_last_success_timestamp_seconds", worker="worker_settlement") is None


def test_ticks_are_counted_by_outcome_and_only_a_success_moves_the_last_success(eliot_logger):
    clock, metrics = Clock(), Metrics(CollectorRegistry(), "web")
    clock.advance(START)
    outcomes = [None, RuntimeError("the database refused"), None]

    async def tick() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    worker = LoopingWorker("theme_warmer", tick, clock=clock, interval_s=60, metrics=metrics)
    worker.startService()  # first tick now
    clock.advance(60)  # fails
    assert sample(metrics, "worker_last_success_timestamp_seconds", worker="theme_warmer") == START
    clock.advance(60)
    assert sample(metrics, "worker_ticks_total", worker="theme_warmer", outcome="ok") == 2
    assert sample(metrics, "worker_ticks_total", worker="theme_warmer", outcome="error") == 1
    assert sample(metrics, "worker_last_success_timestamp_seconds", worker="theme_warmer") == START + 120
    worker.stopService()
    eliot_logger.flush_tracebacks(RuntimeError)


def test_a_tick_still_running_delays_the_next_and_stopping_waits_for_it(eliot_logger):
    clock = Clock()
    pending: list[Deferred] = []

    def tick() -> Deferred:
        pending.append(Deferred())
        return pending[-1]

    loop = GuardedLoop("slow", tick, clock=clock, interval_s=10)
    loop.startService()
    clock.advance(35)  # the first tick has not finished: no second one started
    assert loop.ticks == 1
    stopped = loop.stopService()
    assert stopped is not None and not stopped.called
    pending[0].callback(None)
    assert stopped.called and not loop.looping


def test_a_plain_tick_that_raises_is_logged_reported_and_survived(eliot_logger):
    clock, outcomes = Clock(), []

    def tick() -> None:
        raise ValueError("broken sample")

    loop = GuardedLoop("sampler", tick, clock=clock, interval_s=1, on_outcome=outcomes.append)
    loop.startService()
    clock.advance(1)
    assert len(outcomes) == 2 and all(failure.check(ValueError) for failure in outcomes)
    assert loop.looping
    loop.stopService()
    eliot_logger.flush_tracebacks(ValueError)


def test_each_worker_tick_is_one_eliot_action_around_the_work(eliot_logger):
    clock, metrics = Clock(), Metrics(CollectorRegistry(), "web")

    async def tick() -> None:
        later: Deferred = Deferred()
        clock.callLater(1, later.callback, None)
        await later  # the action spans a real suspension, resumed from the clock
        log_message(message_type="inside")

    worker = LoopingWorker("theme_warmer", tick, clock=clock, interval_s=60, metrics=metrics)
    worker.startService()
    log_message(message_type="outside")  # logged while the tick is suspended: not part of its action
    clock.advance(1)
    worker.stopService()
    [outside] = [m for m in eliot_logger.messages if m.get("message_type") == "outside"]
    [tree] = Parser.parse_stream([m for m in eliot_logger.messages if m.get("message_type") != "outside"])
    assert tree.root().action_type == "tenantsvc:worker:tick" and tree.root().status == "succeeded"
    assert [child.contents.message_type for child in tree.root().children] == ["inside"]
    assert outside["task_uuid"] != tree.root().task_uuid


def messages_of(logger: MemoryLogger, message_type: str) -> list[dict]:
    return [m for m in logger.messages if m.get("message_type") == message_type]


def test_an_expected_tick_failure_is_one_message_without_a_traceback_and_still_reported(eliot_logger):
    clock, outcomes = Clock(), []

    def tick() -> None:
        raise ConnectionRefusedError("database refused")

    loop = GuardedLoop("settlement", tick, clock=clock, interval_s=1, on_outcome=outcomes.append,
                       expected=(ConnectionError,))
    loop.startService()
    loop.stopService()
    assert [failure.check(ConnectionRefusedError) for failure in outcomes] == [ConnectionRefusedError]
    refused = messages_of(eliot_logger, "tenantsvc:loop:tick_refused")
    assert [(m["loop"], m["error"], m["reason"]) for m in refused] == [
        ("settlement", "ConnectionRefusedError", "database refused")]
    assert eliot_logger.tracebackMessages == []


def test_an_unexpected_tick_failure_keeps_its_traceback(eliot_logger):
    clock = Clock()

    def tick() -> None:
        raise KeyError("bug")

    loop = GuardedLoop("settlement", tick, clock=clock, interval_s=1, expected=(ConnectionError,))
    loop.startService()
    loop.stopService()
    assert messages_of(eliot_logger, "tenantsvc:loop:tick_refused") == []
    assert len(eliot_logger.flush_tracebacks(KeyError)) == 1
