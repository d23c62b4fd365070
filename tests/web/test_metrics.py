"""``/metrics`` over HTTP: the seed's metric names and labels, and label values that no request can multiply."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.web_harness import WebHarness

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
                 tenant="acme") == 2.0
    assert value(harness, "tenant_requests_total", tenant="acme") == 2.0
    assert value(harness, "http_request_duration_seconds_count", method="GET", endpoint=LOAD_THEME) == 2.0


def test_the_endpoint_label_is_the_route_template_never_the_raw_path(harness):
    harness.create_tenant("acme")
    harness.admin("PUT", "/admin/api/tenants/acme/theme", json={"primaryColor": "#000000"})
    harness.admin("GET", "/admin/api/tenants/acme/theme")
    assert value(harness, "http_requests_total", method="PUT", endpoint="/admin/api/tenants/<slug>/theme",
                 status="200", tenant="") == 1.0
    endpoints = label_values(harness, "http_requests_total", "endpoint")
    assert "/admin/api/tenants/<slug>/theme" in endpoints
    assert not any("acme" in endpoint for endpoint in endpoints), endpoints


def test_operational_endpoints_are_labelled_by_their_path(harness):
    harness.get("/healthz")
    harness.get("/readyz")
    harness.get("/health/detailed")
    assert value(harness, "http_requests_total", method="GET", endpoint="/healthz", status="200", tenant="") == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="/readyz", status="503", tenant="") == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="/health/detailed", status="200",
                 tenant="") == 1.0


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
                 tenant="_unknown") == 1.0
    assert value(harness, "http_requests_total", method="GET", endpoint="unmatched", status="404",
                 tenant="_unknown") == 1.0


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "PURGE"])
def test_unusual_methods_fold_into_other(harness, method):
    harness.request(method, "/healthz")
    assert value(harness, "http_requests_total", method="OTHER", endpoint="/healthz", status="405", tenant="") == 1.0
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
    assert value(harness, "ratelimit_decisions_total", endpoint_class="public", outcome="allowed") == 3.0


def test_the_duration_histogram_is_cumulative_and_ends_at_its_count(harness):
    harness.create_tenant("acme")
    for _ in range(4):
        harness.get("/acme/api/public/load-theme")
    family = scrape(harness)["http_request_duration_seconds"]
    buckets = [(sample.labels["le"], sample.value) for sample in family.samples
               if sample.name.endswith("_bucket") and sample.labels["endpoint"] == LOAD_THEME]
    counts = [count for _, count in buckets]
    assert [le for le, _ in buckets][-1] == "+Inf" and len(buckets) == 14
    assert counts == sorted(counts)
    assert counts[-1] == value(harness, "http_request_duration_seconds_count", method="GET", endpoint=LOAD_THEME) == 4.0
    assert value(harness, "http_request_duration_seconds_sum", method="GET", endpoint=LOAD_THEME) >= 0.0
