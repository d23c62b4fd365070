"""Metrics.record_interaction: wait/hold histograms per interaction name and DB error counters."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from twisted.python.failure import Failure

from tenantsvc.core.storage_errors import DatabaseUnavailable, IntegrityViolation, StatementTimeout
from tenantsvc.obs.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), "web")


def sample(metrics: Metrics, metric_name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(metric_name, labels) or 0.0


def test_wait_and_hold_times_are_observed_per_interaction_name(metrics):
    metrics.record_interaction("load_theme", 0.0002, 0.003, None)
    metrics.record_interaction("load_theme", 0.2, 0.004, None)
    metrics.record_interaction("save_theme", 0.001, 0.030, None)
    assert sample(metrics, "db_pool_wait_seconds_count", name="load_theme") == 2
    assert sample(metrics, "db_pool_wait_seconds_sum", name="load_theme") == pytest.approx(0.2002)
    assert sample(metrics, "db_pool_wait_seconds_bucket", name="load_theme", le="0.0005") == 1
    assert sample(metrics, "db_connection_hold_seconds_sum", name="save_theme") == pytest.approx(0.030)
    assert sample(metrics, "db_connection_hold_seconds_bucket", name="save_theme", le="0.025") == 0
    assert sample(metrics, "db_interactions_total", name="load_theme", outcome="ok") == 2


def test_connection_errors_and_statement_timeouts_are_counted_on_their_own(metrics):
    metrics.record_interaction("credit", 5.0, 0.0, Failure(DatabaseUnavailable("OperationalError")))
    metrics.record_interaction("credit", 0.0, 3.0, Failure(StatementTimeout("cancelled")))
    metrics.record_interaction("credit", 0.0, 0.01, Failure(IntegrityViolation("unique", "k")))
    assert sample(metrics, "db_connection_errors_total", name="credit") == 1
    assert sample(metrics, "db_statement_timeouts_total", name="credit") == 1
    assert sample(metrics, "db_interactions_total", name="credit", outcome="StatementTimeout") == 1
    assert sample(metrics, "db_interactions_total", name="credit", outcome="IntegrityViolation") == 1


def test_an_interaction_that_never_got_a_connection_has_a_wait_but_no_hold(metrics):
    metrics.record_interaction("credit", 5.0, 0.0, Failure(DatabaseUnavailable("could not connect")))
    assert sample(metrics, "db_pool_wait_seconds_count", name="credit") == 1
    assert sample(metrics, "db_connection_hold_seconds_count", name="credit") == 0
