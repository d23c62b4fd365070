"""End to end: real ``twistd -n tenantsvc`` processes serving loopback HTTP, logging eliot JSON, stopping on SIGTERM."""

from __future__ import annotations

import json

import pytest

from tenantsvc.core.theme import DEFAULT_THEME
from tenantsvc.services.demo import DEMO_THEME
from tests.support.tenantsvc_process import ADMIN_TOKEN, http, service_env
from tests.support.metrics import scraped_total
from tests.support.processes import accepts_connections, wait_until
from tests.support.web_harness import render_eliot_tree

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_the_demo_tenant_serves_its_non_default_theme(demo_service):
    answer = http("GET", demo_service.url("/demo/api/public/load-theme"))
    assert answer.status == 200
    assert answer.json() == DEMO_THEME.to_wire() != DEFAULT_THEME.to_wire()
    assert answer.headers["Cache-Control"] == "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"
    assert answer.headers["X-Correlation-ID"] and answer.headers["X-Request-ID"]


def test_the_embedded_database_is_a_sqlite_file_under_var(demo_service):
    assert (demo_service.workdir / "var" / "tenantsvc.sqlite3").is_file()


def test_admin_creates_a_tenant_and_saves_a_theme_that_load_theme_then_serves(demo_service):
    created = http("POST", demo_service.url("/admin/api/tenants"), json_body={"slug": "acme", "name": "Acme Bets"},
                   headers=ADMIN)
    assert created.status == 201, created.body
    assert created.headers["Location"] == "/admin/api/tenants/acme"
    theme = {"primaryColor": "#FF0066", "layoutStyle": "compact", "sportsbookName": "Acme Bets"}
    saved = http("PUT", demo_service.url("/admin/api/tenants/acme/theme"), json_body=theme, headers=ADMIN)
    assert saved.status == 200, saved.body
    served = http("GET", demo_service.url("/acme/api/public/load-theme"))
    assert served.status == 200
    assert served.json() == {**DEFAULT_THEME.to_wire(), **theme}
    revalidated = http("GET", demo_service.url("/acme/api/public/load-theme"),
                       headers={"If-None-Match": served.headers["ETag"]})
    assert revalidated.status == 304


def test_the_operational_endpoints_answer_over_http(demo_service):
    assert http("GET", demo_service.url("/healthz")).json()["status"] == "ok"
    detailed = http("GET", demo_service.url("/health/detailed"))
    assert (detailed.status, detailed.headers["Content-Type"]) == (200, "application/health+json")
    assert json.loads(detailed.body)["status"] == "pass"
    metrics = http("GET", demo_service.url("/metrics")).body.decode()
    assert 'http_requests_total{endpoint="/healthz",method="GET",route_class="operational",status="200",tenant=""}' in metrics


def test_db_work_is_nested_in_the_request_task_in_the_real_process(demo_service, tmp_path):
    http("GET", demo_service.url("/admin/api/tenants"), headers={**ADMIN, "X-Correlation-ID": "e2e-list-1"})
    started = demo_service.wait_for_message(lambda m: m.get("correlation_id") == "e2e-list-1", "the request task")
    demo_service.wait_for_message(
        lambda m: m.get("task_uuid") == started["task_uuid"] and m.get("action_type") == "tenantsvc:http:request"
        and m.get("action_status") == "succeeded", "the request task to finish")
    task = [m for m in demo_service.messages() if m["task_uuid"] == started["task_uuid"]]
    interactions = [m for m in task if m.get("action_type") == "tenantsvc:db:interaction"]
    assert [m["name"] for m in interactions if m["action_status"] == "started"] == ["list_tenants"]
    assert all(len(m["task_level"]) > 1 for m in interactions), "the DB action is nested, not a task of its own"

    complete_lines = demo_service.stdout_path.read_text(encoding="utf-8")
    snapshot = tmp_path / "stdout.jsonl"
    snapshot.write_text(complete_lines[:complete_lines.rfind("\n") + 1], encoding="utf-8")
    rendered = render_eliot_tree(snapshot, "--task-uuid", started["task_uuid"])
    assert "tenantsvc:http:request/1 => started" in rendered and "correlation_id: e2e-list-1" in rendered
    assert "tenantsvc:db:interaction/2/1 => started" in rendered and "name: list_tenants" in rendered


def test_the_web_role_drains_and_exits_0_on_sigterm(start_tenantsvc):
    service = start_tenantsvc("--role", "web", "--listen", "tcp:0:interface=127.0.0.1",
                              env={**service_env(), "ACCESS_LOG_SAMPLE_RATE": "1"})
    assert http("GET", service.url("/healthz")).status == 200
    assert service.terminate() == 0, service.stderr()
    assert not accepts_connections("127.0.0.1", service.port)
    assert service.stderr() == ""
    types = [m.get("message_type") for m in service.messages()]
    assert types.index("tenantsvc:shutdown") < types.index("tenantsvc:web:drained")
    rendered = render_eliot_tree(service.stdout_path)  # the whole stdout of a stopped process is eliot JSON
    assert "tenantsvc:http:request/1 => started" in rendered and "tenantsvc:web:drained" in rendered


@pytest.mark.parametrize("role,action,metric", [
    ("worker_odds", "tenantsvc:odds:ingest", 'odds_worker_last_success_timestamp_seconds{sport="soccer"}'),
    ("worker_settlement", "tenantsvc:settlement:cycle", 'worker_last_success_timestamp_seconds{worker="worker_settlement"}'),
])
def test_a_worker_role_runs_its_loop_serves_only_operations_and_exits_0_on_sigterm(start_tenantsvc, role, action,
                                                                                      metric):
    service = start_tenantsvc("--demo", "--role", role, "--listen", "tcp:0:interface=127.0.0.1")
    service.wait_for_message(lambda m: m.get("action_type") == action and m.get("action_status") == "succeeded",
                             f"the {role} loop to complete a run")
    scrape = http("GET", service.url("/metrics"))
    assert scrape.status == 200 and metric in scrape.body.decode()
    wait_until(lambda: scraped_total(http("GET", service.url("/metrics")).body.decode(), "reactor_lag_seconds_count") > 0,
               "the reactor-lag monitor's first ticks (it runs in every role)", timeout_s=10)
    assert http("GET", service.url("/healthz")).status == 200
    checks = http("GET", service.url("/health/detailed")).json()["checks"]
    assert ("odds:feed" in checks) == (role == "worker_odds") and "sessions:count" not in checks
    not_here = http("GET", service.url("/demo/api/public/load-theme"))
    assert not_here.status == 404 and "worker process" in not_here.json()["message"]
    assert http("GET", service.url("/admin/api/tenants"), headers=ADMIN).status == 404
    other = "tenantsvc:settlement:cycle" if role == "worker_odds" else "tenantsvc:odds:ingest"
    assert not any(m.get("action_type") == other for m in service.messages())
    assert service.terminate() == 0, service.stderr()
    assert service.stderr() == ""


def test_the_demo_shows_odds_from_the_bundled_feed_and_takes_a_bet(demo_service):
    demo_service.wait_for_message(
        lambda m: m.get("message_type") == "tenantsvc:odds:saved" and m.get("sport") == "soccer",
        "the demo odds worker to save the sample soccer odds")
    odds = http("GET", demo_service.url("/demo/api/public/odds/soccer"))
    assert odds.status == 200
    match = odds.json()["matches"][0]
    home = next(m for m in match["markets"] if m["market"] == "1x2")["selections"][0]
    assert home["selection"] == "home"
    credentials = {"username": "punter", "password": "correct horse battery"}
    assert http("POST", demo_service.url("/demo/api/auth/register"), json_body=credentials).status == 201
    logged_in = http("POST", demo_service.url("/demo/api/auth/login"), json_body=credentials)
    cookie = logged_in.headers["Set-Cookie"].split(";")[0]
    body = {"match_id": match["id"], "market": "1x2", "selection": "home", "line": None, "stake_cents": 500,
            "odds": home["odds"]}
    placed = http("POST", demo_service.url("/demo/api/bets"), json_body=body,
                  headers={"Cookie": cookie, "Idempotency-Key": "demo-bet-1"})
    assert placed.status == 201, placed.body
    assert placed.json()["balance_cents"] == 100_000 - 500
    listed = http("GET", demo_service.url("/demo/api/bets"), headers={"Cookie": cookie})
    assert [b["id"] for b in listed.json()["bets"]] == [placed.json()["bet"]["id"]]
