"""A real Prometheus scraping a real web process: the shipped rules evaluate cleanly, and a pool burst shorter
than the scrape interval is still seen (through the peak gauge; the snapshot gauge mostly misses it).

The process runs on a throwaway Postgres with a pool of 4, so 60 concurrent admin tenant listings (one DB
read each) fill the pool for well under one 5 s scrape interval.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.support.http import http
from tests.support.tenantsvc_process import ADMIN_TOKEN, service_env
from tests.support.processes import wait_until
from tests.support.prometheus_server import RULES_DIR, PrometheusServer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SCRAPE_INTERVAL_S = 5.0
POOL_MAX = 4
BURST = 60
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def prometheus_for():
    """``prometheus_for(port)``: a Prometheus scraping 127.0.0.1:port every 5 s, stopped at teardown."""
    servers: list[PrometheusServer] = []

    def start(port: int) -> PrometheusServer:
        server = PrometheusServer([f"127.0.0.1:{port}"], scrape_interval_s=SCRAPE_INTERVAL_S)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def shipped_alerts() -> set[str]:
    """The alert names deploy/prometheus/alerts.yml defines."""
    groups = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


def highest(prometheus: PrometheusServer, expression: str) -> float:
    """The largest value of an instant vector (0 when it is empty)."""
    return max((float(sample["value"][1]) for sample in prometheus.query(expression)), default=0.0)


def test_a_real_prometheus_evaluates_every_shipped_rule_and_sees_a_pool_burst_between_scrapes(
        start_tenantsvc, postgres_database_url, prometheus_for):
    service = start_tenantsvc("--role", "web", "--listen", "tcp:0:interface=127.0.0.1", env=service_env(
        DATABASE_URL=postgres_database_url, DB_WEB_POOL_MAX=str(POOL_MAX), DB_POOL_MIN="1"))
    prometheus = prometheus_for(service.port)
    wait_until(lambda: prometheus.scrapes() >= 1, "the first scrape", timeout_s=3 * SCRAPE_INTERVAL_S)

    with ThreadPoolExecutor(BURST) as clients:
        started = time.monotonic()
        answers = list(clients.map(lambda _: http("GET", service.url("/admin/api/tenants"), headers=ADMIN), range(BURST)))
        burst_s = time.monotonic() - started
    assert {answer.status for answer in answers} == {200}
    scraped_before = prometheus.scrapes()
    wait_until(lambda: prometheus.scrapes() >= scraped_before + 2, "two scrapes after the burst",
               timeout_s=4 * SCRAPE_INTERVAL_S)

    assert highest(prometheus, 'up{job="tenantsvc"}') == 1
    peak = highest(prometheus, 'max_over_time(db_pool_usage_percent_max{job="tenantsvc"}[5m])')
    snapshot = highest(prometheus, 'max_over_time(db_pool_usage_percent{job="tenantsvc"}[5m])')
    print(f"\nFIGURES burst of {BURST} requests in {burst_s:.2f} s, scrapes every {SCRAPE_INTERVAL_S:g} s: "
          f"peak gauge saw {peak:g} %, snapshot gauge saw {snapshot:g} %")
    assert peak >= 50, "the burst filled most of the pool, and the peak gauge carries it to the next scrape"

    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == shipped_alerts()
    wait_until(lambda: all(rule.get("lastEvaluation", "").startswith("20")
                           for group in prometheus.api("rules")["groups"] for rule in group["rules"]),
               "every rule to be evaluated once", timeout_s=10)
    unhealthy = [(rule["name"], rule.get("lastError")) for group in prometheus.api("rules")["groups"]
                 for rule in group["rules"] if rule["health"] != "ok"]
    assert unhealthy == []
