"""Operational endpoints over HTTP: ``/healthz``, ``/readyz`` (listener, warm-up, drain) and ``/health/detailed``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from tenantsvc.web.server import DRAIN_POLL_S, WARM_UP_GRACE_S, WebService
from tests.support.web_harness import WebHarness, fired, modules_loaded_by_importing

def test_healthz_is_static_json_with_version_and_clock_time(harness):
    response = harness.get("/healthz")
    assert response.status == 200
    assert response.header("Cache-Control") == "no-store"
    assert response.json() == {"ok": True, "status": "ok", "version": "0.1.0", "timestamp": "2026-01-02T03:04:05Z"}
    harness.clock.advance(61.5)
    assert harness.get("/healthz").json()["timestamp"] == "2026-01-02T03:05:06.500000Z"


def test_healthz_reports_app_version_from_the_environment(make_harness):
    harness = make_harness(env={"APP_VERSION": "2026.01.02-abc123"})
    assert harness.get("/healthz").json()["version"] == "2026.01.02-abc123"


def test_healthz_touches_no_database(harness):
    harness.pool.close()
    before = harness.pool.interactions
    response = harness.get("/healthz")
    assert response.status == 200
    assert harness.pool.interactions == before


def test_importing_the_health_module_loads_no_database_redis_or_klein_code():
    watched = ["psycopg2", "txredisapi", "klein", "twisted.internet.reactor"]
    assert modules_loaded_by_importing("tenantsvc.web.health", watched) == []


def test_the_import_probe_would_notice_a_database_driver():
    """Guard against a vacuous probe: a module that does import psycopg2 is caught."""
    assert "psycopg2" in modules_loaded_by_importing("psycopg2.extensions", ["psycopg2", "klein"])


# --- readiness ------------------------------------------------------------------------------------


def web_service(harness: WebHarness, reactor: MemoryReactorClock, **options: Any) -> WebService:
    """The real listener service around the harness's site, on an in-memory reactor."""
    web = harness.web
    return WebService(reactor=reactor, listen="tcp:0", site=web.site, root=web.root, readiness=web.readiness,
                      **options)


def test_readyz_is_503_until_the_listener_is_up_then_200(harness):
    starting = harness.get("/readyz")
    assert (starting.status, starting.json()) == (503, {"status": "starting"})
    assert starting.header("Cache-Control") == "no-store"
    reactor = MemoryReactorClock()
    web_service(harness, reactor).startService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(0, "")]
    ready = harness.get("/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready"})


def test_readyz_waits_for_the_start_up_warm_before_going_ready(harness):
    reactor, warmed = MemoryReactorClock(), Deferred()
    web_service(harness, reactor, warmed=warmed).startService()
    assert reactor.tcpServers, "the listener is up"
    assert harness.get("/readyz").json() == {"status": "starting"}
    warmed.callback(None)
    assert harness.get("/readyz").status == 200
    reactor.advance(WARM_UP_GRACE_S)
    assert harness.get("/readyz").status == 200
    assert not reactor.getDelayedCalls()


def test_readyz_goes_ready_after_the_grace_period_when_the_warm_never_finishes(harness):
    reactor = MemoryReactorClock()
    web_service(harness, reactor, warmed=Deferred()).startService()
    reactor.advance(WARM_UP_GRACE_S - 0.001)
    assert harness.get("/readyz").status == 503
    reactor.advance(0.001)
    assert harness.get("/readyz").status == 200


def test_a_drain_before_the_warm_up_finished_never_turns_ready(harness):
    reactor, warmed = MemoryReactorClock(), Deferred()
    service = web_service(harness, reactor, warmed=warmed)
    service.startService()
    fired(service.stopService())
    warmed.callback(None)
    reactor.advance(WARM_UP_GRACE_S)
    assert harness.get("/readyz").json() == {"status": "draining"}


def test_readyz_does_not_fail_when_the_database_is_down(harness):
    web_service(harness, MemoryReactorClock()).startService()
    harness.pool.close()
    assert harness.get("/readyz").status == 200


def test_readyz_is_503_while_draining_and_the_drain_waits_for_in_flight_requests(harness):
    reactor = MemoryReactorClock()
    service = web_service(harness, reactor)
    service.startService()
    harness.pool.pause()
    in_flight = harness.start_request("GET", "/health/detailed")
    stopping = service.stopService()
    draining = harness.get("/readyz")
    assert (draining.status, draining.json()) == (503, {"status": "draining"})
    reactor.advance(DRAIN_POLL_S)
    assert not stopping.called, "the drain must wait for the in-flight request"
    assert not harness.answered(in_flight)
    harness.pool.resume()
    assert harness.finish(in_flight).status == 200
    reactor.advance(DRAIN_POLL_S)
    assert fired(stopping) is None


# --- detailed health ------------------------------------------------------------------------------


def test_detailed_health_passes_with_a_database_check(harness):
    response = harness.get("/health/detailed")
    assert response.status == 200
    assert response.header("Content-Type") == "application/health+json"
    assert response.header("Cache-Control") == "no-store"
    report = json.loads(response.body)
    assert report["status"] == "pass"
    assert report["version"] == "0.1.0" and report["serviceId"] == "tenantsvc-web"
    (database,) = report["checks"]["database:responseTime"]
    assert database == {"componentType": "datastore", "componentId": "sqlite", "status": "pass",
                        "time": "2026-01-02T03:04:05Z", "ageSeconds": 0.0, "observedValue": 0.0,
                        "observedUnit": "ms"}
    (pool,) = report["checks"]["database:connections"]
    assert pool["pool"] == {"size": 1, "in_use": 0, "waiting": 0, "usage_percent": 0.0}
    assert "redis:responseTime" not in report["checks"]


def test_detailed_health_is_503_fail_when_the_database_interaction_fails(harness):
    harness.pool.close()
    response = harness.get("/health/detailed")
    assert response.status == 503
    assert response.header("Content-Type") == "application/health+json"
    report = json.loads(response.body)
    assert report["status"] == "fail"
    (database,) = report["checks"]["database:responseTime"]
    assert (database["status"], database["output"]) == ("fail", "PoolClosed")
    assert "observedValue" not in database


def test_detailed_health_gives_up_on_a_stalled_database_after_its_own_timeout(harness):
    from tenantsvc.services.health import DB_CHECK_TIMEOUT_S

    harness.pool.pause()
    pending = harness.start_request("GET", "/health/detailed")
    harness.clock.advance(DB_CHECK_TIMEOUT_S - 0.001)
    assert not harness.answered(pending)
    harness.clock.advance(0.001)
    response = harness.finish(pending)
    assert response.status == 503
    (database,) = json.loads(response.body)["checks"]["database:responseTime"]
    assert (database["status"], database["output"]) == ("fail", "CancelledError")
    (pool,) = json.loads(response.body)["checks"]["database:connections"]
    assert pool["pool"]["waiting"] == 1


def test_a_timed_out_health_check_never_runs_on_the_database_later(harness):
    from tenantsvc.services.health import DB_CHECK_TIMEOUT_S

    harness.pool.pause()
    pending = harness.start_request("GET", "/health/detailed")
    harness.clock.advance(DB_CHECK_TIMEOUT_S)
    harness.finish(pending)
    harness.pool.resume()
    assert harness.components.db.calls["health_check"] == 1
    outcomes = {sample.labels["outcome"]: sample.value
                for metric in harness.components.registry.collect() if metric.name == "db_interactions"
                for sample in metric.samples
                if sample.name == "db_interactions_total" and sample.labels["name"] == "health_check"}
    assert outcomes == {"InteractionAbandoned": 1.0, "ok": 0.0}  # "ok" exists at 0 from the name's first use


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/health/detailed", "/metrics"])
def test_operational_endpoints_answer_head(harness, path):
    response = harness.request("HEAD", path)
    assert response.status in (200, 503)
    assert response.body == b""


# --- probe cache (issue 11, item 5) ------------------------------------------------------------------------


def test_detailed_health_probes_the_database_once_per_period_whatever_the_request_rate(harness):
    before = harness.pool.interactions
    ages = []
    for _ in range(200):  # 200 requests over 10 s of clock time
        report = json.loads(harness.get("/health/detailed").body)
        ages.append(report["checks"]["database:responseTime"][0]["ageSeconds"])
        harness.clock.advance(0.05)
    assert harness.pool.interactions - before == 2, "one SELECT 1 per 5 s period"
    assert 4.9 < max(ages) <= 5.0 and ages[0] == 0.0
    assert harness.metric("health_probes_total", probe="database", source="run") == 2
    assert harness.metric("health_probes_total", probe="database", source="cache") == 198


def test_the_cached_reading_is_dated_when_it_was_taken(harness):
    harness.get("/health/detailed")
    harness.clock.advance(3.0)
    (database,) = json.loads(harness.get("/health/detailed").body)["checks"]["database:responseTime"]
    assert (database["time"], database["ageSeconds"]) == ("2026-01-02T03:04:05Z", 3.0)
    (pool,) = json.loads(harness.get("/health/detailed").body)["checks"]["database:connections"]
    assert pool["time"] == "2026-01-02T03:04:08Z", "the pool figures are read now, not cached"


def test_concurrent_detailed_health_requests_share_one_database_probe(harness):
    harness.pool.pause()
    pending = [harness.start_request("GET", "/health/detailed") for _ in range(20)]
    assert harness.pool.queued == 1
    harness.pool.resume()
    assert [harness.finish(each).status for each in pending] == [200] * 20
    assert harness.metric("health_probes_total", probe="database", source="in_flight") == 19


def test_a_failed_database_probe_is_cached_too_so_a_down_database_is_asked_once_per_period(harness):
    harness.pool.close()
    answers = [harness.get("/health/detailed") for _ in range(10)]
    assert [answer.status for answer in answers] == [503] * 10
    assert harness.components.db.calls["health_check"] == 1
    harness.clock.advance(5.0)
    assert harness.get("/health/detailed").status == 503
    assert harness.components.db.calls["health_check"] == 2


def test_health_probe_cache_seconds_zero_probes_on_every_request(make_harness):
    harness = make_harness(env={"HEALTH_PROBE_CACHE_SECONDS": "0"})
    before = harness.pool.interactions
    for _ in range(3):
        harness.get("/health/detailed")
    assert harness.pool.interactions - before == 3


class PausingRequest:
    """A request whose connection takes one write, then pauses its producer until the test resumes it."""

    def __init__(self):
        self.written, self.producer, self.finished, self._disconnected = [], None, False, False

    def registerProducer(self, producer, streaming):  # noqa: N802 - Twisted's name
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self):  # noqa: N802 - Twisted's name
        self.producer = None

    def write(self, data):
        self.written.append(data)
        self.producer.pauseProducing()

    def finish(self):
        self.finished = True


def test_a_streamed_body_makes_each_piece_only_when_the_connection_took_the_last():
    from tenantsvc.web.plain import stream

    made = []

    def pieces():
        for n in range(3):
            made.append(n)
            yield b"piece %d\n" % n

    request = PausingRequest()
    stream(request, pieces())
    assert made == [0] and request.written == [b"piece 0\n"]  # paused after the first write
    request.producer.resumeProducing()
    assert made == [0, 1]
    request.producer.resumeProducing()
    request.producer.resumeProducing()
    assert b"".join(request.written) == b"piece 0\npiece 1\npiece 2\n"
    assert request.finished and request.producer is None


def test_a_streamed_body_stops_when_the_client_goes_away():
    from tenantsvc.web.plain import stream

    request = PausingRequest()
    stream(request, iter([b"a", b"b"]))
    request.producer.stopProducing()
    producer = request.producer
    producer.resumeProducing()
    assert request.written == [b"a"] and not request.finished
