"""The request counters render exactly like prometheus_client counters, without a child object per series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tenantsvc.obs.metrics import UNKNOWN_TENANT, Metrics


def test_requests_render_as_http_requests_total_and_tenant_requests_total():
    registry = CollectorRegistry()
    metrics = Metrics(registry, "web")
    for _ in range(2):
        metrics.record_request("GET", "/<tenant>/api/me", 200, "acme", 0.001)
    metrics.record_request("BREW", "unmatched", 404, UNKNOWN_TENANT, 0.001)
    text = generate_latest(registry).decode()
    assert "# TYPE http_requests_total counter" in text
    assert 'http_requests_total{endpoint="/<tenant>/api/me",method="GET",status="200",tenant="acme"} 2.0' in text \
        or 'http_requests_total{method="GET",endpoint="/<tenant>/api/me",status="200",tenant="acme"} 2.0' in text
    assert registry.get_sample_value("http_requests_total", {"method": "OTHER", "endpoint": "unmatched",
                                                             "status": "404", "tenant": "_unknown"}) == 1.0
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
