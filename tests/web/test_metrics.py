"""``/metrics`` over HTTP: the seed's metric names and labels, and label values that no request can multiply."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.web_harness import WebHarness, fired

LOAD_THEME = "/<tenant>/api/public/load-theme"


def scrape(harness: WebHarness) -> dict[str, Any]:
    """Fetch ``/metrics`` and parse it: family name → family."""
    response = harness.get("/metrics")
    assert response.status == 200
    assert response.header("Content-Type").startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(response.body.decode("utf-8"))}


def samples(harness: WebHarness, sample_name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``sample_name`` in a fresh scrape, keyed by its sorted labels."""
    found = {}
    for family in scrape(harness).values():
        for sample in family.samples:
            if sample.name == sample_name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(harness: WebHarness, sample_name: str, **labels: str) -> float | None:
    """The value of one sample with exactly ``labels`` (None when the series does not exist)."""
    return samples(harness, sample_name).get(tuple(sorted(labels.items())))


def label_values(harness: WebHarness, sample_name: str, label: str) -> set[str]:
    """Every value ``label`` takes among the ``sample_name`` series."""
    return {dict(key)[label] for key in samples(harness, sample_name)}


def test_the_seed_metrics_are_exported_with_their_types(harness):
    harness.get("/healthz")
    families = scrape(harness)
    assert families["http_requests"].type == "counter"
    assert families["http_request_duration_seconds"].type == "histogram"
    assert families["tenant_requests"].type == "counter"
    for gauge in ("db_pool_usage_percent", "db_pool_waiting_connections", "db_active_connections"):
        assert families[gauge].type == "gauge"
        assert [sample.labels for sample in families[gauge].samples] == [{"process_type": "web"}]


def test_a_request_is_counted_by_method_route_template_status_and_known_tenant(harness):
    harness.create_tenant("acme")
    harness.get("/acme/api/public/load-theme")
    harness.get("/acme/api/public/load-theme")
    assert value(harness, "http_requests_total", method="GET", endpoint=LOAD_THEME, status="200",
                 tenant="acme", route_class="public") == 2.0
    assert value(harness, "tenant_requests_total", tenant="acme") == 2.0
    assert value(harness, "http_request_duration_seconds_count", method="GET", endpoint=LOAD_THEME,
                 route_class="public") == 2.0


def test_the_endpoint_label_is_the_route_template_never_the_raw_path(harness):
    harness.create_tenant("acme")
    harness.admin("PUT", "/admin/api/tenants/acme/theme", json={"primaryColor": "#000000"})
    harness.admin("GET", "/admin/api/tenants/acme/theme")
    assert value(harness, "http_requests_total", method="PUT", endpoint="/admin/api/tenants/<slug>/theme",
                 status="200", tenant="", route_class="write") == 1.0
    endpoints = label_values(harness, "http_requests_total", "endpoint")
    assert "/admin/api/tenants/<slug>/theme" in endpoints
    assert not any("acme" in endpoint for endpoint in endpoints), endpoints


def test_operational_endpoints_are_labelled_by_their_path(harness):
    harness.get("/healthz")
    harness.get("/readyz")
    harness.get("/health/detailed")
    operational = {"tenant": "", "route_class": "operational"}
    assert value(harness, "http_requests_total", method="GET", endpoint="/healthz", status="200", **operational) == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="/readyz", status="503", **operational) == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="/health/detailed", status="200",
                 **operational) == 1.0


def series_count(harness: WebHarness) -> int:
    """How many request-related series exist (requests, durations, per-tenant counts)."""
    return sum(len(samples(harness, name)) for name in
               ("http_requests_total", "http_request_duration_seconds_count", "tenant_requests_total"))


@pytest.mark.parametrize("path_template", [
    "/{slug}/api/public/load-theme",
    "/{slug}/api/no-such-route",
    "/{slug}",
])
def test_requests_for_unknown_tenants_mint_no_new_series(harness, path_template):
    harness.get(path_template.format(slug="first-unknown"))
    harness.get("/metrics")  # the scrape's own series exist before counting
    before = series_count(harness)
    for _ in range(25):
        harness.get(path_template.format(slug=f"t-{uuid.uuid4().hex[:12]}"))
    assert series_count(harness) == before
    assert label_values(harness, "http_requests_total", "tenant") <= {"", "_unknown"}
    assert samples(harness, "tenant_requests_total") == {}


def test_unknown_and_malformed_tenants_share_the_unknown_label(harness):
    harness.get("/never-created/api/public/load-theme")
    harness.get("/Not_A_Slug/api/public/load-theme")
    assert value(harness, "http_requests_total", method="GET", endpoint=LOAD_THEME, status="404",
                 tenant="_unknown", route_class="public") == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="unmatched", status="404",
                 tenant="_unknown", route_class="none") == 1.0


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "PURGE"])
def test_unusual_methods_fold_into_other(harness, method):
    harness.request(method, "/healthz")
    assert value(harness, "http_requests_total", method="OTHER", endpoint="/healthz", status="405", tenant="",
                 route_class="operational") == 1.0
    assert method not in label_values(harness, "http_requests_total", "method")


def test_pool_gauges_show_interactions_waiting_for_a_connection(harness):
    assert value(harness, "db_pool_waiting_connections", process_type="web") == 0.0
    assert value(harness, "db_active_connections", process_type="web") == 0.0
    assert value(harness, "db_pool_usage_percent", process_type="web") == 0.0
    harness.pool.pause()
    pending = harness.start_request("GET", "/health/detailed")
    assert value(harness, "db_pool_waiting_connections", process_type="web") == 1.0
    harness.pool.resume()
    assert harness.finish(pending).status == 200
    assert value(harness, "db_pool_waiting_connections", process_type="web") == 0.0


def test_theme_hits_are_counted_in_the_cache_rate_limit_and_duration_families(harness):
    harness.create_tenant("acme")
    for _ in range(3):
        assert harness.get("/acme/api/public/load-theme").status == 200
    families = scrape(harness)
    for counter in ("cache_hits", "cache_misses", "cache_responses", "ratelimit_decisions"):
        assert families[counter].type == "counter"
    answered = sum(samples(harness, "cache_responses_total").values())
    assert answered == 3.0
    assert (value(harness, "cache_hits_total", cache="branding")
            + value(harness, "cache_misses_total", cache="branding")) == 3.0
    assert value(harness, "ratelimit_decisions_total", endpoint_class="public", outcome="allowed", scope="none") == 3.0


def test_the_duration_histogram_is_cumulative_and_ends_at_its_count(harness):
    harness.create_tenant("acme")
    for _ in range(4):
        harness.get("/acme/api/public/load-theme")
    family = scrape(harness)["http_request_duration_seconds"]
    buckets = [(sample.labels["le"], sample.value) for sample in family.samples
               if sample.name.endswith("_bucket") and sample.labels["endpoint"] == LOAD_THEME]
    counts = [count for _, count in buckets]
    assert [le for le, _ in buckets][0] == "0.0001", "down to 100 µs: a warm hit takes well under 1 ms"
    assert [le for le, _ in buckets][-1] == "+Inf" and len(buckets) == 17
    assert counts == sorted(counts)
    labels = {"method": "GET", "endpoint": LOAD_THEME, "route_class": "public"}
    assert counts[-1] == value(harness, "http_request_duration_seconds_count", **labels) == 4.0
    assert value(harness, "http_request_duration_seconds_sum", **labels) >= 0.0


def test_every_request_carries_the_route_class_of_its_route_and_no_new_series(harness):
    harness.create_tenant("acme")
    harness.admin("POST", "/admin/api/tenants", json={"slug": "beta", "name": "Beta"})
    harness.get("/acme/api/public/load-theme")
    harness.get("/acme/api/me")  # 401: routed, so classed
    harness.admin("GET", "/admin/api/tenants")
    harness.get("/healthz")
    harness.get("/acme/api/no-such-route")
    classes = {dict(key)["endpoint"]: dict(key)["route_class"] for key in samples(harness, "http_requests_total")
               if dict(key)["method"] == "GET"}
    assert {endpoint: classes[endpoint] for endpoint in (
        LOAD_THEME, "/<tenant>/api/me", "/admin/api/tenants", "/healthz", "unmatched")} == {
        LOAD_THEME: "public", "/<tenant>/api/me": "read", "/admin/api/tenants": "read",
        "/healthz": "operational", "unmatched": "none"}
    by_route: dict[tuple[str, str], set[str]] = {}  # one class per method and template: no new series
    for key in samples(harness, "http_request_duration_seconds_count"):
        labels = dict(key)
        by_route.setdefault((labels["method"], labels["endpoint"]), set()).add(labels["route_class"])
    assert all(len(route_classes) == 1 for route_classes in by_route.values()), by_route


def test_pool_peak_gauges_keep_what_happened_between_two_scrapes(harness):
    from tenantsvc.adapters.db.pool import select_one_txn

    harness.pool.pause()
    pending = [harness.db.run_interaction("test_wait", select_one_txn) for _ in range(3)]
    harness.pool.resume()
    assert [fired(each) for each in pending] == [1] * 3
    # Three interactions waited and finished between scrapes: the snapshot gauges are back at 0, the peaks
    # are not, and reading them (a second scraper) does not reset them.
    for _ in range(2):
        assert value(harness, "db_pool_waiting_connections", process_type="web") == 0.0
        assert value(harness, "db_pool_usage_percent", process_type="web") == 0.0
        assert value(harness, "db_pool_waiting_connections_max", process_type="web") == 3.0
        assert value(harness, "db_pool_usage_percent_max", process_type="web") == 100.0  # SQLite: one connection


@pytest.mark.parametrize(("sample_name", "labels"), [
    ("bets_placed_total", {"outcome": "rejected"}),
    ("bets_settled_total", {"outcome": "void"}),
    ("session_store_operations_total", {"op": "get", "outcome": "error"}),
    ("ratelimit_decisions_total", {"endpoint_class": "auth", "outcome": "limited", "scope": "client"}),
    ("ratelimit_decisions_total", {"endpoint_class": "read", "outcome": "limited", "scope": "tenant"}),
    ("ratelimit_decisions_total", {"endpoint_class": "public", "outcome": "limited", "scope": "tenant"}),
    ("circuit_breaker_rejections_total", {"breaker_name": "db_pool", "request_class": "write"}),
    ("circuit_breaker_checks_total", {"breaker_name": "db_pool", "check": "db_liveness_check",
                                      "outcome": "unanswered"}),
    ("cache_refresh_total", {"cache": "branding", "outcome": "error"}),
    ("db_connection_errors_total", {"name": "load_all_themes"}),  # an interaction the start-up warm ran
    ("db_pool_timeouts_total", {"name": "load_all_themes"}),
    ("db_statement_timeouts_total", {"name": "load_all_themes"}),
    ("db_deadline_timeouts_total", {"name": "load_all_themes"}),
    ("db_slow_calls_total", {"name": "load_all_themes"}),
    ("worker_ticks_total", {"worker": "db_breaker_sampler", "outcome": "error"}),
    ("password_hashing_rejected_total", {}),
])
def test_error_and_outcome_counters_read_zero_before_their_first_event(harness, sample_name, labels):
    assert value(harness, sample_name, **labels) == 0.0


def test_without_redis_no_fail_open_series_is_made_up(harness):
    assert label_values(harness, "ratelimit_decisions_total", "outcome") == {"allowed", "limited"}
    assert samples(harness, "redis_call_failures_total") == {}


@pytest.mark.parametrize(("from_state", "reason"), [("closed", "pressure"), ("closed", "failures"),
                                                    ("half_open", "pressure"), ("half_open", "probe_failed")])
def test_every_automatic_opening_of_the_db_breaker_exists_at_zero(harness, from_state, reason):
    assert value(harness, "circuit_breaker_transitions_total", breaker_name="db_pool", from_state=from_state,
                 to_state="open", reason=reason) == 0.0
