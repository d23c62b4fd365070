"""The README's metrics tables and what real processes export on ``/metrics``, both ways.

A ``web`` and a ``worker_odds`` process (``--demo``, embedded SQLite, no Redis) are scraped after their
start-up work. Every family is registered in every role, so each process must export exactly the documented
families (a family of the other role's work has no samples, or zeros). What only Redis brings is a few
*series*, not families: a third ``web`` process with ``REDIS_URL`` (the throwaway redis-server) shows them, at 0
from start-up. Nothing here depends on Postgres: the pool and breaker families are the same on SQLite.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.tenantsvc_process import TenantsvcProcess, http, service_env
from tests.support.readme_metrics import documented_families

pytestmark = pytest.mark.e2e

LISTEN = ("--listen", "tcp:0:interface=127.0.0.1")


def scrape(service: TenantsvcProcess) -> dict[str, Any]:
    """The process's ``/metrics``, parsed: documented name (counters with ``_total``) → family.

    In the Prometheus text format prometheus_client writes each counter's and histogram's ``_created``
    samples as a gauge family of their own (``foo_created`` for ``foo_total``); the README documents that
    once, so each is checked to belong to a counter or histogram and then left out.
    """
    answer = http("GET", service.url("/metrics"))
    assert answer.status == 200
    families = {family.name + ("_total" if family.type == "counter" else ""): family
                for family in text_string_to_metric_families(answer.body.decode("utf-8"))}
    created = {name for name in families if name.endswith("_created")}
    for name in created:
        base = name.removesuffix("_created")
        assert families.get(base + "_total", families.get(base)).type in ("counter", "histogram"), name
    return {name: family for name, family in families.items() if name not in created}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, None when absent."""
    for family in families.values():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def started(start_tenantsvc: Any, *args: str, **env: str) -> TenantsvcProcess:
    """A ready ``--demo`` process whose start-up work (migrations, warm or first poll) is logged as done."""
    service = start_tenantsvc("--demo", *args, *LISTEN, env=service_env(**env))
    service.wait_for_message(lambda m: m.get("message_type") == "tenantsvc:web:ready", "start-up work done")
    return service


@pytest.mark.parametrize("role", ["web", "worker_odds"])
def test_each_role_exports_exactly_the_documented_families(start_tenantsvc, role):
    service = started(start_tenantsvc, "--role", role)
    exported, documented = set(scrape(service)), set(documented_families())
    assert sorted(exported - documented) == [], "exported but not in the README's Metrics tables"
    assert sorted(documented - exported) == [], "in the README but not exported"


def test_a_worker_exports_its_series_from_start_up(start_tenantsvc):
    service = started(start_tenantsvc, "--role", "worker_odds")
    families = scrape(service)
    for sport in ("soccer", "basketball"):  # the demo feed's sports; basketball's first poll is 150 s away
        assert sample(families, "odds_age_seconds", sport=sport) is not None
        assert sample(families, "feed_errors_total", sport=sport, kind="timeout") == 0.0
    assert sample(families, "worker_ticks_total", worker="worker_odds", outcome="error") == 0.0
    assert sample(families, "worker_started_timestamp_seconds", worker="worker_odds") > 0
    assert sample(families, "tenantsvc_build_info", version="0.1.0", role="worker_odds", environment="development",
                  twisted=_twisted_version()) == 1.0
    assert sample(families, "password_hashing_queue_depth") == 0.0  # nobody logs in on a worker


def test_a_web_process_exports_its_platform_and_hashing_series(start_tenantsvc):
    service = started(start_tenantsvc, "--role", "web")
    families = scrape(service)
    assert sample(families, "process_resident_memory_bytes") > 10 * 2**20
    assert sample(families, "process_open_fds") > 0
    assert sample(families, "python_gc_frozen_objects") > 0  # gc.freeze() after the start-up work
    assert sample(families, "password_hashing_threads") == 2.0
    assert sample(families, "http_internal_errors_total", route_class="public") == 0.0
    assert sample(families, "db_pool_usage_percent_max", process_type="web") is not None


def test_redis_brings_its_series_at_zero_from_start_up(start_tenantsvc, redis_server):
    redis_server.flushall()
    service = started(start_tenantsvc, "--role", "web", REDIS_URL=redis_server.url)
    families = scrape(service)
    assert set(families) == set(documented_families())
    assert sample(families, "circuit_breaker_state", breaker_name="redis") == 0.0
    assert sample(families, "redis_call_failures_total", kind="timeout") == 0.0
    for scope in ("none", "client", "tenant"):  # admitted, or refused by that level, while Redis was failing
        assert sample(families, "ratelimit_decisions_total", endpoint_class="auth", outcome="fail_open",
                      scope=scope) == 0.0
    assert sample(families, "cache_l2_operations_total", cache="branding", op="get", outcome="error") == 0.0
    assert sample(families, "cache_l2_operations_total", cache="branding", op="set", outcome="ok") >= 1.0  # the warm


def _twisted_version() -> str:
    import twisted

    return twisted.__version__
