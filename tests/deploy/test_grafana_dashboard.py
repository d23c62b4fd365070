"""deploy/grafana/tenantsvc.json: it loads, every panel queries the templated Prometheus data source, every
query parses (``promtool check rules`` over them as recording rules) and selects only series the service
exports or the recording rules define, and the areas an operator needs each have their panels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.deploy.series import known_series
from tests.support.promql import check_expressions, metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tenantsvc.json"
# Grafana's variables, as Prometheus would receive them.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*"}


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def queries() -> list[tuple[str, str]]:
    """``(panel title / refId, expr with the variables substituted)`` for every target."""
    found = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (panel["title"], expr)
            found.append((f"{panel['title']} {target['refId']}", expr))
    return found


def test_every_panel_queries_the_templated_prometheus_and_ids_are_unique():
    loaded = dashboard()
    assert loaded["uid"] == "tenantsvc"
    assert {variable["name"] for variable in loaded["templating"]["list"]} == {"datasource", "instance"}
    ids = [panel["id"] for panel in panels(loaded)]
    assert len(ids) == len(set(ids))
    for panel in panels(loaded):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_every_query_parses():
    checked = check_expressions(queries())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries())} rules found" in checked.stdout


def test_every_query_selects_only_known_series():
    unknown = {title: sorted(metric_names(expr) - known_series()) for title, expr in queries()}
    assert {title: names for title, names in unknown.items() if names} == {}


@pytest.mark.parametrize("series", [
    "tenantsvc:http_requests:rate5m", "tenantsvc:http_errors:ratio_rate5m", "tenantsvc:http_latency_slow:ratio_rate5m",
    "tenantsvc:http_request_duration_seconds:p99_5m", "cache_responses_total", "circuit_breaker_state",
    "tenantsvc:db_pool_wait_seconds:p95_5m", "db_pool_usage_percent_max", "tenantsvc:worker_seconds_since_success",
    "odds_age_seconds", "ratelimit_decisions_total", "password_hashing_queue_depth_max",
    "tenantsvc:reactor_lag_seconds:p99_5m", "process_resident_memory_bytes",
])
def test_each_area_an_operator_needs_has_a_panel(series):
    assert any(series in metric_names(expr) for _, expr in queries())


def test_the_breaker_state_is_a_timeline_with_named_states():
    (timeline,) = [panel for panel in panels(dashboard()) if panel["type"] == "state-timeline"]
    assert "circuit_breaker_state" in timeline["targets"][0]["expr"]
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    assert {value["text"] for value in mapping["options"].values()} == {"closed", "open", "half-open"}
