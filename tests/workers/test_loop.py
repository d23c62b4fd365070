"""LoopingWorker on a Clock: its series exist from construction, and each tick is counted and timed."""

from __future__ import annotations

from typing import Iterator

import pytest
from eliot import MemoryLogger
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from tenantsvc.obs.metrics import Metrics
from tenantsvc.workers.loop import LoopingWorker
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
