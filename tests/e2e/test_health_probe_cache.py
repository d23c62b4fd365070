"""``/health/detailed`` under a burst on a real ``twistd tenantsvc`` with Postgres and Redis (issue 11, item 5).

50 concurrent clients send 1,000 requests; the database ``SELECT 1`` (the service's own
``db_interactions_total{name="health_check"}``) and the Redis ``PING`` (counted by redis-server itself,
``INFO commandstats``) run at most once per ``HEALTH_PROBE_CACHE_SECONDS`` (2 s here) plus the one in flight
at the start, whatever the rate. Without the cache each request made one of each (the former bench script:
10,233 of each in 10 s at 50 connections before this change).
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.tenantsvc_process import http, service_env
from tests.support.metrics import scraped_total

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CACHE_S, CLIENTS, REQUESTS = 2.0, 50, 1000


def redis_pings(redis_server) -> int:
    """PING calls redis-server has answered so far."""
    info = subprocess.run(["redis-cli", "-h", redis_server.host, "-p", str(redis_server.port), "INFO", "commandstats"],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    found = re.search(r"cmdstat_ping:calls=(\d+)", info)
    return int(found.group(1)) if found else 0


def health_checks(service) -> float:
    """The service's ``health_check`` DB interactions so far (every outcome)."""
    return scraped_total(http("GET", service.url("/metrics")).body.decode(), "db_interactions_total",
                         name="health_check")


def test_a_burst_of_detailed_health_requests_costs_one_db_and_one_redis_probe_per_period(
        start_tenantsvc, postgres_database_url, redis_server):
    service = start_tenantsvc("--role", "web", "--listen", "tcp:0:interface=127.0.0.1", env=service_env(
        DATABASE_URL=postgres_database_url, REDIS_URL=redis_server.url, HEALTH_PROBE_CACHE_SECONDS=str(CACHE_S)))
    db_before, pings_before = health_checks(service), redis_pings(redis_server)
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as clients:
        answers = list(clients.map(lambda _: http("GET", service.url("/health/detailed")), range(REQUESTS)))
    elapsed_s = time.monotonic() - started
    assert [answer.status for answer in answers] == [200] * REQUESTS
    ages = [answer.json()["checks"]["database:responseTime"][0]["ageSeconds"] for answer in answers]
    assert max(ages) <= CACHE_S + 0.5, "no answer older than the period (plus scheduling slack)"
    allowed = int(elapsed_s / CACHE_S) + 2
    db_probes, pings = health_checks(service) - db_before, redis_pings(redis_server) - pings_before
    print(f"\nFIGURES {REQUESTS} /health/detailed from {CLIENTS} clients in {elapsed_s:.1f} s: "
          f"{db_probes:g} DB probes, {pings} Redis PINGs (at most {allowed} allowed)")
    assert 1 <= db_probes <= allowed
    assert 1 <= pings <= allowed
    assert scraped_total(http("GET", service.url("/metrics")).body.decode(), "health_probes_total",
                         probe="database", source="cache") > REQUESTS / 2
