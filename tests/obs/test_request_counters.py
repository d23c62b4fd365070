"""The request counters render exactly like prometheus_client counters, without a child object per series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tenantsvc.obs.metrics import UNKNOWN_TENANT, Metrics


def test_requests_render_as_http_requests_total_and_tenant_requests_total():
    registry = CollectorRegistry()
    metrics = Metrics(registry, "web")
    for _ in range(2):
        metrics.record_request("GET", "/<tenant>/api/me", 200, "acme", 0.001, "read")
    metrics.record_request("BREW", "unmatched", 404, UNKNOWN_TENANT, 0.001)
    text = generate_latest(registry).decode()
    assert "# TYPE http_requests_total counter" in text
    assert ('http_requests_total{endpoint="/<tenant>/api/me",method="GET",route_class="read",status="200",'
            'tenant="acme"} 2.0') in text
    assert registry.get_sample_value("http_requests_total", {"method": "OTHER", "endpoint": "unmatched",
                                                             "status": "404", "tenant": "_unknown",
                                                             "route_class": "none"}) == 1.0
    assert registry.get_sample_value("tenant_requests_total", {"tenant": "acme"}) == 2.0
    assert registry.get_sample_value("tenant_requests_total", {"tenant": "_unknown"}) is None


def test_ten_thousand_tenants_cost_little_memory():
    import tracemalloc

    metrics = Metrics(CollectorRegistry(), "web")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(10_000):
        metrics.record_request("GET", "/<tenant>/api/public/load-theme", 200, f"tenant-{n:05d}", 0.001)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used < 10_000 * 600, f"{used / 10_000:.0f} bytes per tenant"


def test_responses_by_class_are_sums_of_the_request_counts_and_exist_from_start_up():
    registry = CollectorRegistry()
    metrics = Metrics(registry, "web")

    def responses(route_class: str, code_class: str) -> float | None:
        return registry.get_sample_value("http_responses_total", {"route_class": route_class, "code_class": code_class})

    assert responses("write", "5xx") == 0.0 and responses("none", "2xx") == 0.0
    assert registry.get_sample_value("http_internal_errors_total", {"route_class": "read"}) == 0.0
    for tenant in ("acme", "beta"):
        metrics.record_request("GET", "/<tenant>/api/me", 200, tenant, 0.001, "read")
        metrics.record_request("GET", "/<tenant>/api/me", 500, tenant, 0.001, "read")
    metrics.record_request("POST", "/<tenant>/api/bets", 503, "acme", 0.001, "write")
    metrics.record_request("GET", "/<tenant>/api/public/load-theme", 304, "acme", 0.001, "public")
    metrics.record_request("GET", "/<tenant>/api/public/load-theme", 499, "acme", 0.001, "public")
    assert (responses("read", "2xx"), responses("read", "5xx"), responses("write", "5xx")) == (2.0, 2.0, 1.0)
    assert (responses("public", "3xx"), responses("public", "4xx")) == (1.0, 1.0)
    assert registry.get_sample_value("http_internal_errors_total", {"route_class": "read"}) == 2.0
    assert registry.get_sample_value("http_internal_errors_total", {"route_class": "write"}) == 0.0  # a 503
