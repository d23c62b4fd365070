"""The README's "find a request by its correlation id" recipe on a real ``twistd tenantsvc`` under the default
access-log sampling (0.1 % of fast-path successes): a public theme request that brought its own
``X-Correlation-ID`` or ``traceparent``, and a fast-path error, are always in the log, and ``eliot-tree`` renders
them. The log is the process's stdout (the README's ``./scripts/run > var/tenantsvc.log``)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.tenantsvc_process import TenantsvcProcess, http
from tests.support.web_harness import render_eliot_tree

pytestmark = pytest.mark.e2e

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def find_task(service: TenantsvcProcess, correlation_id: str) -> str:
    """The recipe: ``grep -m1 '"correlation_id": *"<id>"' LOG`` → its ``task_uuid`` (waiting for the log writer)."""
    service.wait_for_message(lambda m: m.get("correlation_id") == correlation_id, f"a task for {correlation_id}")
    found = subprocess.run(["grep", "-m1", f'"correlation_id": *"{correlation_id}"', str(service.stdout_path)],
                           capture_output=True, text=True, timeout=10, check=True)
    return json.loads(found.stdout)["task_uuid"]


def rendered_fields(service: TenantsvcProcess, task_uuid: str) -> dict[str, str]:
    """``eliot-tree -u TASK LOG`` once the task has ended, as ``field: value`` pairs of its lines."""
    service.wait_for_message(lambda m: m.get("task_uuid") == task_uuid and m.get("action_status") == "succeeded",
                             "the request task to end")
    lines = render_eliot_tree(service.stdout_path, "-u", task_uuid).splitlines()
    assert any("tenantsvc:http:request/1 " in line and "started" in line for line in lines), lines
    pairs = [line.strip(" |+-`").split(": ", 1) for line in lines if ": " in line]
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def test_a_theme_request_with_an_inbound_correlation_id_is_found_with_eliot_tree(demo_service):
    answer = http("GET", demo_service.url("/demo/api/public/load-theme"),
                  headers={"X-Correlation-ID": "e2e-theme-lookup-1"})
    assert answer.status == 200 and answer.headers["X-Correlation-ID"] == "e2e-theme-lookup-1"
    fields = rendered_fields(demo_service, find_task(demo_service, "e2e-theme-lookup-1"))
    assert fields["correlation_id"] == "e2e-theme-lookup-1"
    assert fields["request_id"] == answer.headers["X-Request-ID"]
    assert (fields["path"], fields["tenant"], fields["status"]) == ("/demo/api/public/load-theme", "demo", "200")
    assert float(fields["duration_ms"]) >= 0


def test_a_theme_request_with_a_traceparent_is_found_by_its_trace_id(demo_service):
    answer = http("GET", demo_service.url("/demo/api/public/theme.css"), headers={"traceparent": TRACEPARENT})
    trace_id = TRACEPARENT.split("-")[1]
    assert answer.status == 200 and answer.headers["X-Correlation-ID"] == trace_id
    assert rendered_fields(demo_service, find_task(demo_service, trace_id))["status"] == "200"


def test_a_fast_path_error_is_found_by_the_correlation_id_it_answered_with(demo_service):
    answer = http("GET", demo_service.url("/nobody-here/api/public/load-theme"))  # no inbound id
    assert answer.status == 404
    fields = rendered_fields(demo_service, find_task(demo_service, answer.headers["X-Correlation-ID"]))
    assert (fields["status"], fields["tenant"]) == ("404", "_unknown")
