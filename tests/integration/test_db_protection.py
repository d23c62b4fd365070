"""DB protection on real databases: withdrawing queued interactions, the bounded write under a saturated
Postgres pool, and the pool metrics for statement timeouts and connection errors."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred, gatherResults

from tenantsvc.core.storage_errors import DatabaseUnavailable, StatementTimeout
from tenantsvc.core.breaker import OPEN, PRESSURE, READ, WRITE, BreakerConfig
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.db_guard import DbBreaker
from tenantsvc.services.errors import BreakerOpen, PoolTimeout
from tests.support.interactions import (
    Gate,
    create_notes_txn,
    insert_note_txn,
    notes_txn,
    sleep_once_entered_txn,
    sleep_txn,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

CONN_TIMEOUT_S = 0.3
SLEEP_S = 2.0


def sample(metrics: Metrics, metric_name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(metric_name, labels) or 0.0


def instrumented(db: Any) -> Metrics:
    """Metrics observing ``db``, as the composition root wires them."""
    metrics = Metrics(CollectorRegistry(), "web")
    db.add_observer(metrics.record_interaction)
    return metrics


@pytest.fixture(params=["sqlite", "postgres"])
def one_connection_db(request, database_factory):
    """A Database with a single pooled connection and an empty ``notes`` table."""
    db = database_factory.open(request.param, DB_WEB_POOL_MAX="1", DB_POOL_MIN="1")
    pytest_twisted.blockon(db.run_interaction("create_notes", create_notes_txn))
    return db


@pytest_twisted.ensureDeferred
async def test_a_withdrawn_interaction_never_runs(one_connection_db):
    db, gate = one_connection_db, Gate()
    try:
        holder = db.run_interaction("hold", gate.hold_txn)
        await gate.entered
        queued = db.submit_interaction("queued_write", insert_note_txn, "withdrawn")
        assert not queued.began
        assert queued.withdraw() is True
        with pytest.raises(CancelledError):
            await queued.deferred
    finally:
        gate.open()
    await holder
    assert await db.run_interaction("notes", notes_txn) == []


@pytest_twisted.ensureDeferred
async def test_an_interaction_that_began_cannot_be_withdrawn_and_completes(one_connection_db):
    db, gate = one_connection_db, Gate()
    try:
        running = db.submit_interaction("hold", gate.hold_txn, "kept")
        await gate.entered
        assert running.began
        assert running.withdraw() is False
    finally:
        gate.open()
    assert await running.deferred == "held"
    assert await db.run_interaction("notes", notes_txn) == ["kept"]


@pytest_twisted.ensureDeferred
async def test_a_write_that_cannot_get_a_connection_times_out_and_never_lands(database_factory):
    from twisted.internet import reactor

    db = database_factory.open("postgres", DB_WEB_POOL_MAX="2", DB_POOL_MIN="0", DB_STATEMENT_TIMEOUT="10s")
    await db.run_interaction("create_notes", create_notes_txn)
    metrics = instrumented(db)
    breaker = DbBreaker(db, reactor, metrics, conn_timeout_s=CONN_TIMEOUT_S,
                        config=BreakerConfig(min_pool_size_for_usage=1))
    entered = [Deferred(), Deferred()]
    sleeps = [db.run_interaction("long_report", sleep_once_entered_txn, e, SLEEP_S) for e in entered]
    await gatherResults(entered)
    breaker.startService()  # samples at once: 2 of 2 connections in use
    try:
        assert (breaker.machine.state, breaker.machine.open_reason) == (OPEN, PRESSURE)
        with pytest.raises(BreakerOpen):
            await breaker.run(READ, "notes", notes_txn)
        asked_at = reactor.seconds()
        with pytest.raises(PoolTimeout):
            await breaker.run(WRITE, "insert_note", insert_note_txn, "late")
        assert reactor.seconds() - asked_at >= CONN_TIMEOUT_S * 0.9
        assert not any(d.called for d in sleeps), "the write must give up while the pool is still saturated"
    finally:
        breaker.stopService()
    await gatherResults(sleeps)
    assert await db.run_interaction("notes", notes_txn) == []
    assert await breaker.run(WRITE, "insert_note", insert_note_txn, "on time") is None
    assert await db.run_interaction("notes", notes_txn) == ["on time"]
    assert sample(metrics, "db_pool_timeouts_total", name="insert_note") == 1
    assert sample(metrics, "circuit_breaker_rejections_total", breaker_name="db_pool", request_class="read") == 1


@pytest.mark.parametrize("backend", ["postgres", "pgbouncer"])
@pytest_twisted.ensureDeferred
async def test_a_statement_timeout_is_counted_and_its_hold_time_measured(database_factory, backend):
    db = database_factory.open(backend, DB_STATEMENT_TIMEOUT="200ms")
    metrics = instrumented(db)
    with pytest.raises(StatementTimeout):
        await db.run_interaction("slow_report", sleep_txn, SLEEP_S)
    assert sample(metrics, "db_statement_timeouts_total", name="slow_report") == 1
    assert sample(metrics, "db_connection_hold_seconds_count", name="slow_report") == 1
    assert sample(metrics, "db_connection_hold_seconds_sum", name="slow_report") >= 0.2
    assert sample(metrics, "db_pool_wait_seconds_count", name="slow_report") == 1


@pytest_twisted.ensureDeferred
async def test_an_unreachable_database_is_counted_as_a_connection_error(database_factory):
    db = database_factory.open(url=f"postgresql://nobody@127.0.0.1:{free_port()}/nothing", DB_CONN_TIMEOUT="1")
    metrics = instrumented(db)
    with pytest.raises(DatabaseUnavailable):
        await db.run_interaction("load_theme", notes_txn)
    assert sample(metrics, "db_connection_errors_total", name="load_theme") == 1
    assert sample(metrics, "db_pool_wait_seconds_count", name="load_theme") == 1
    # The attempt to connect held a pool slot (a thread), so it is hold time, not wait time.
    assert sample(metrics, "db_connection_hold_seconds_count", name="load_theme") == 1
    assert (db.snapshot().in_use, db.snapshot().waiting) == (0, 0)
