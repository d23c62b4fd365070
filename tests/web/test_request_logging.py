"""Request logging: one eliot task per request, its context fields, DB work nested inside, as ``eliot-tree`` shows."""

from __future__ import annotations

import pytest

import json

from eliot.json import json_default
from eliot.testing import LoggedAction

from tenantsvc.adapters.db.pool import DB_INTERACTION
from tests.support.web_harness import logged_request, render_eliot_tree


def test_a_request_is_one_task_with_its_context_and_the_db_interaction_nested(harness, eliot_logger):
    response = harness.admin("POST", "/admin/api/tenants", json={"slug": "acme", "name": "Acme"},
                             headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "req-1"})
    task = logged_request(eliot_logger.messages, "corr-1")
    assert task.start_message["task_level"] == [1], "the request must be a task, not part of another one"
    assert {key: task.start_message[key] for key in ("correlation_id", "request_id", "tenant", "method", "path")} == {
        "correlation_id": "corr-1", "request_id": "req-1", "tenant": "", "method": "POST",
        "path": "/admin/api/tenants"}
    assert task.succeeded and task.end_message["status"] == response.status == 201
    (interaction,) = [child for child in task.descendants() if isinstance(child, LoggedAction)
                      and child.start_message["action_type"] == DB_INTERACTION.action_type]
    assert interaction.start_message["name"] == "insert_tenant"
    assert interaction.succeeded and {"wait_ms", "hold_ms"} <= interaction.end_message.keys()


def test_a_sampled_public_request_logs_its_known_tenant(make_harness, eliot_logger):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "1"})
    harness.create_tenant("acme")
    harness.get("/acme/api/public/load-theme", headers={"X-Correlation-ID": "corr-2"})
    task = logged_request(eliot_logger.messages, "corr-2")
    assert (task.start_message["tenant"], task.end_message["status"]) == ("acme", 200)
    assert task.start_message["path"] == "/acme/api/public/load-theme"


def request_tasks(messages: list[dict]) -> list[dict]:
    """The start messages of every ``tenantsvc:http:request`` task logged."""
    return [m for m in messages if m.get("action_type") == "tenantsvc:http:request" and m.get("action_status") == "started"]


@pytest.mark.parametrize("path", ["/acme/api/public/load-theme", "/acme/api/public/theme.css", "/healthz"])
def test_unsampled_fast_path_successes_are_counted_but_not_logged(make_harness, eliot_logger, path):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0"})
    harness.create_tenant("acme")
    eliot_logger.reset()
    before = harness.metric("http_requests_total", method="GET", status="200")
    assert harness.get(path).status == 200
    assert request_tasks(eliot_logger.messages) == []
    assert harness.metric("http_requests_total", method="GET", status="200") == before + 1


def test_an_unsampled_304_is_not_logged(make_harness, eliot_logger):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0"})
    harness.create_tenant("acme")
    etag = harness.get("/acme/api/public/load-theme").header("ETag")
    eliot_logger.reset()
    assert harness.get("/acme/api/public/load-theme", headers={"If-None-Match": etag}).status == 304
    assert request_tasks(eliot_logger.messages) == []


@pytest.mark.parametrize(("header", "value", "correlation_id"), [
    ("X-Correlation-ID", "corr-inbound", "corr-inbound"),
    ("X-Request-ID", "req-inbound", None),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
])
def test_a_fast_path_request_bringing_its_own_id_is_always_logged(make_harness, eliot_logger, header, value,
                                                                  correlation_id):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0"})
    harness.create_tenant("acme")
    eliot_logger.reset()
    response = harness.get("/acme/api/public/load-theme", headers={header: value})
    assert response.status == 200
    task = logged_request(eliot_logger.messages, response.header("X-Correlation-ID"))
    assert correlation_id is None or task.start_message["correlation_id"] == correlation_id
    assert task.start_message["request_id"] == response.header("X-Request-ID")
    assert task.end_message["status"] == 200 and task.end_message["duration_ms"] >= 0


@pytest.mark.parametrize(("path", "status"), [("/nobody/api/public/load-theme", 404), ("/healthz/x", 404),
                                              ("/readyz", 503)])
def test_an_unsampled_fast_path_answer_other_than_2xx_is_always_logged(make_harness, eliot_logger, path, status):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0"})
    harness.web.readiness.start_draining()
    eliot_logger.reset()
    response = harness.get(path)
    assert response.status == status
    task = logged_request(eliot_logger.messages, response.header("X-Correlation-ID"))
    assert (task.start_message["path"], task.end_message["status"]) == (path, status)


def test_a_fast_path_request_slower_than_the_threshold_is_always_logged_with_its_duration(make_harness, eliot_logger):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0", "ACCESS_LOG_SLOW_THRESHOLD": "50ms",
                                "HEALTH_PROBE_CACHE_SECONDS": "0"})
    harness.pool.pause()  # /health/detailed (a fast path, its probe not cached) waits for its DB round trip
    quick = harness.start_request("GET", "/health/detailed")
    harness.clock.advance(0.04)
    harness.pool.resume()
    quick_id = harness.finish(quick).header("X-Correlation-ID")
    harness.pool.pause()
    slow = harness.start_request("GET", "/health/detailed")
    harness.clock.advance(0.06)
    harness.pool.resume()
    slow_id = harness.finish(slow).header("X-Correlation-ID")
    logged = [m["correlation_id"] for m in request_tasks(eliot_logger.messages)]
    assert quick_id not in logged
    assert logged_request(eliot_logger.messages, slow_id).end_message["duration_ms"] == pytest.approx(60, abs=1)


def test_klein_routes_are_always_logged_whatever_the_sample_rate(make_harness, eliot_logger):
    harness = make_harness(env={"ACCESS_LOG_SAMPLE_RATE": "0"})
    harness.admin("GET", "/admin/api/tenants", headers={"X-Correlation-ID": "corr-admin"})
    assert logged_request(eliot_logger.messages, "corr-admin").end_message["status"] == 200


def test_eliot_tree_renders_the_db_interaction_inside_the_request_task(harness, eliot_logger, tmp_path):
    harness.create_tenant("acme")
    eliot_logger.reset()
    harness.admin("PUT", "/admin/api/tenants/acme/theme", json={"primaryColor": "#000000"},
                  headers={"X-Correlation-ID": "corr-tree", "X-Request-ID": "req-tree"})
    eliot_logger.validate()  # also serialises the messages in place
    log_file = tmp_path / "request.log"
    log_file.write_text("".join(json.dumps(message, default=json_default) + "\n"
                                for message in eliot_logger.messages))
    task_uuid = logged_request(eliot_logger.messages, "corr-tree").start_message["task_uuid"]

    rendered = render_eliot_tree(log_file, "--task-uuid", task_uuid)
    lines = rendered.splitlines()

    def first_line(*parts: str) -> int:
        """Index of the first rendered line containing every one of ``parts``."""
        return next(i for i, line in enumerate(lines) if all(part in line for part in parts))

    def depth(index: int) -> int:
        """How deep in the tree the rendered line ``index`` is drawn."""
        return len(lines[index]) - len(lines[index].lstrip(" |"))

    request_start = first_line("tenantsvc:http:request/1 ", "=> started")
    request_end = first_line("tenantsvc:http:request/", "=> succeeded")
    db_start = first_line("tenantsvc:db:interaction/", "=> started")
    assert request_start < db_start < request_end, rendered
    assert depth(db_start) > depth(request_start), rendered
    assert "name: save_theme" in lines[db_start + 1], rendered
    request_fields = {line.strip(" |+-`") for line in lines[request_start + 1:db_start]}
    assert {"correlation_id: corr-tree", "request_id: req-tree", "method: PUT",
            "path: /admin/api/tenants/acme/theme", "tenant:"} <= request_fields, rendered
