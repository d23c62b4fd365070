"""``PlainCounter``/``PlainHistogram`` export exactly the text prometheus_client's ``Counter``/``Histogram`` do.

Each test feeds the same observations to a plain metric and to a reference prometheus_client metric of
the same name, help, labels and buckets (each on its own registry, at the same frozen ``time.time()``
so ``_created`` agrees) and compares the rendered text byte for byte, in both exposition formats.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from tenantsvc.obs.metrics import LATENCY_BUCKETS, Metrics, PlainCounter, PlainHistogram

CREATED_AT = 1_700_000_000.25
LOAD_THEME = "/<tenant>/api/public/load-theme"
METHODS = st.sampled_from(["GET", "HEAD", "POST", "BREW"])
ENDPOINTS = st.sampled_from([LOAD_THEME, "/healthz", "/admin/api/tenants", "unmatched"])
# Durations on and around every bucket bound, plus anything a clock difference could give.
BOUNDS = st.sampled_from(LATENCY_BUCKETS)
DURATIONS = st.one_of(BOUNDS, BOUNDS.map(lambda b: b * (1 + 1e-12)), BOUNDS.map(lambda b: b * (1 - 1e-12)),
                      st.floats(min_value=-1.0, max_value=1e4, allow_nan=False), st.just(0.0))


@pytest.fixture(autouse=True)
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both implementations stamp ``_created`` with ``time.time()``: make it the same instant."""
    monkeypatch.setattr(time, "time", lambda: CREATED_AT)


def rendered(registry: CollectorRegistry) -> tuple[bytes, bytes]:
    """The registry in the Prometheus text format and in OpenMetrics."""
    return generate_latest(registry), generate_openmetrics(registry)


def blocks(text: str) -> dict[str, str]:
    """The exposition text cut into blocks, each from its ``# HELP <name>`` line, keyed by name."""
    found: dict[str, str] = {}
    name = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
        elif line == "# EOF\n":
            continue
        found[name] = found.get(name, "") + line
    return found


@given(st.lists(st.tuples(METHODS, ENDPOINTS, DURATIONS), max_size=60))
def test_a_plain_histogram_renders_exactly_as_a_prometheus_histogram(observations):
    plain_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    plain = PlainHistogram("http_request_duration_seconds", "HTTP request duration.", ["method", "endpoint"],
                           plain_registry, buckets=LATENCY_BUCKETS)
    reference = Histogram("http_request_duration_seconds", "HTTP request duration.", ["method", "endpoint"],
                          buckets=LATENCY_BUCKETS, registry=reference_registry)
    for method, endpoint, seconds in observations:
        plain.labels(method, endpoint).observe(seconds)
        reference.labels(method, endpoint).observe(seconds)
    assert rendered(plain_registry) == rendered(reference_registry)


@given(st.lists(st.tuples(st.sampled_from(["branding", "odds"]), st.sampled_from(["fresh", "stale", "default"]),
                          st.one_of(st.just(1), st.integers(0, 5), st.floats(0, 1e6))), max_size=40))
def test_a_plain_counter_renders_exactly_as_a_prometheus_counter(increments):
    plain_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    plain = PlainCounter("cache_responses_total", "Cached answers.", ["cache", "result"], plain_registry)
    reference = Counter("cache_responses_total", "Cached answers.", ["cache", "result"], registry=reference_registry)
    for cache, result, amount in increments:
        plain.labels(cache, result).inc(amount)
        reference.labels(cache, result).inc(amount)
    assert rendered(plain_registry) == rendered(reference_registry)


def test_series_exist_at_zero_from_labels_on_as_prometheus_children_do():
    plain_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    PlainCounter("cache_hits_total", "Hits.", ["cache"], plain_registry).labels("branding")
    Counter("cache_hits_total", "Hits.", ["cache"], registry=reference_registry).labels("branding")
    PlainHistogram("latency_seconds", "Latency.", ["op"], plain_registry, buckets=(0.1, 1.0)).labels("get")
    Histogram("latency_seconds", "Latency.", ["op"], buckets=(0.1, 1.0), registry=reference_registry).labels("get")
    assert rendered(plain_registry) == rendered(reference_registry)
    assert plain_registry.get_sample_value("cache_hits_total", {"cache": "branding"}) == 0.0


def test_created_series_follow_prometheus_client_switch(monkeypatch):
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    plain_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    PlainCounter("hits_total", "Hits.", ["cache"], plain_registry).labels("branding").inc()
    Counter("hits_total", "Hits.", ["cache"], registry=reference_registry).labels("branding").inc()
    PlainHistogram("seconds", "Seconds.", ["op"], plain_registry, buckets=(1.0,)).labels("get").observe(0.5)
    Histogram("seconds", "Seconds.", ["op"], buckets=(1.0,), registry=reference_registry).labels("get").observe(0.5)
    assert rendered(plain_registry) == rendered(reference_registry)
    assert b"_created" not in generate_latest(plain_registry)


def test_plain_metrics_refuse_what_prometheus_metrics_refuse():
    registry = CollectorRegistry()
    counter = PlainCounter("hits_total", "Hits.", ["cache"], registry)
    with pytest.raises(ValueError):
        counter.labels("branding").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("branding", "extra")
    with pytest.raises(ValueError):
        PlainHistogram("seconds", "Seconds.", ["op"], registry, buckets=(1.0, 0.5))
    with pytest.raises(ValueError):  # the registry knows the plain metric's names, so duplicates are refused
        Counter("hits_total", "Another.", registry=registry)
    with pytest.raises(ValueError):
        PlainHistogram("hits", "Clashes with hits_total.", [], registry, buckets=(1.0,))


def feed(metrics: Metrics) -> None:
    """What a few minutes of traffic records on the theme path's metrics."""
    durations = [0.00005, 0.0001, 0.0004, 0.001, 0.0011, 0.0025, 0.003, 0.01, 0.07, 3.0, 10.0, 11.0, 0.0]
    for seconds in durations:
        metrics.record_request("GET", LOAD_THEME, 200, "demo", seconds, "public")
    metrics.record_request("BREW", "/healthz", 405, "", 0.002, "operational")
    metrics.record_request("POST", "/admin/api/tenants", 201, "", 0.2, "write")
    metrics.cache_hits.labels("branding").inc()
    metrics.cache_misses.labels("branding").inc(2)
    metrics.cache_responses.labels("branding", "fresh").inc(3)
    metrics.cache_responses.labels("branding", "default").inc()
    for decision in [("public", "allowed", "none"), ("public", "allowed", "none"), ("auth", "limited", "client")]:
        metrics.record_rate_limit(*decision)


def reference_metrics(registry: CollectorRegistry) -> None:
    """The same observations on the prometheus_client metrics these families were before (same
    names, help, labels and buckets as ``Metrics``)."""
    duration = Histogram("http_request_duration_seconds",
                         "HTTP request duration by method, route template and route class.",
                         ["method", "endpoint", "route_class"], buckets=LATENCY_BUCKETS, registry=registry)
    hits = Counter("cache_hits_total", "In-process cache hits (fresh or stale).", ["cache"], registry=registry)
    misses = Counter("cache_misses_total", "In-process cache misses.", ["cache"], registry=registry)
    responses = Counter("cache_responses_total", "Cached answers by result (fresh, stale, default).",
                        ["cache", "result"], registry=registry)
    decisions = Counter(
        "ratelimit_decisions_total",
        "Rate-limit decisions by endpoint class, outcome (allowed, limited, or fail_open: Redis was "
        "unreachable and the in-process buckets decided) and scope (the level that refused: client or "
        "tenant; none when admitted).", ["endpoint_class", "outcome", "scope"], registry=registry)
    for seconds in [0.00005, 0.0001, 0.0004, 0.001, 0.0011, 0.0025, 0.003, 0.01, 0.07, 3.0, 10.0, 11.0, 0.0]:
        duration.labels("GET", LOAD_THEME, "public").observe(seconds)
    duration.labels("OTHER", "/healthz", "operational").observe(0.002)
    duration.labels("POST", "/admin/api/tenants", "write").observe(0.2)
    hits.labels("branding").inc()
    misses.labels("branding").inc(2)
    responses.labels("branding", "fresh").inc(3)
    responses.labels("branding", "default").inc()
    for decision in [("public", "allowed", "none"), ("public", "allowed", "none"), ("auth", "limited", "client")]:
        decisions.labels(*decision).inc()


@pytest.mark.parametrize("generate", [generate_latest, generate_openmetrics], ids=["prometheus", "openmetrics"])
def test_the_service_exports_these_families_as_prometheus_client_did(generate):
    registry, reference = CollectorRegistry(), CollectorRegistry()
    feed(Metrics(registry, "web"))
    reference_metrics(reference)
    exported, expected = blocks(generate(registry).decode()), blocks(generate(reference).decode())
    families = [name for name in expected if name]  # the reference registry holds only these families
    assert len(families) >= 5
    assert {name: exported.get(name) for name in families} == {name: expected[name] for name in families}
