"""Per-request counters kept as plain integers and rendered at scrape time.

``http_requests_total{method,endpoint,status,tenant}`` and ``tenant_requests_total{tenant}`` have one
series per known tenant. prometheus_client keeps a locked child object per series (about 1 KiB each),
which with 10,000 tenants costs tens of MiB and a label lookup on every request; a dict of ints costs
a few hundred bytes per series and one dictionary update. Updated and collected on the reactor thread.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class RequestCounters(Collector):
    """Counts finished requests; a prometheus ``Collector`` so ``/metrics`` renders them like any counter."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._tenants: dict[str, int] = {}

    def record(self, method: str, endpoint: str, status: str, tenant: str, *, count_tenant: bool) -> None:
        """Count one request; ``count_tenant`` also counts it in ``tenant_requests_total``."""
        key = (method, endpoint, status, tenant)
        self._requests[key] = self._requests.get(key, 0) + 1
        if count_tenant:
            self._tenants[tenant] = self._tenants.get(tenant, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The two counter families, as prometheus_client renders them."""
        requests = CounterMetricFamily("http_requests", "HTTP requests by method, route template, status and tenant.",
                                       labels=["method", "endpoint", "status", "tenant"])
        for labels, value in self._requests.items():
            requests.add_metric(labels, value)
        yield requests
        tenants = CounterMetricFamily("tenant_requests", "Requests per known tenant.", labels=["tenant"])
        for tenant, value in self._tenants.items():
            tenants.add_metric([tenant], value)
        yield tenants
