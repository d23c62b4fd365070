"""Per-request counters kept as plain integers and rendered at scrape time.

``http_requests_total{method,endpoint,status,tenant,route_class}`` and ``tenant_requests_total{tenant}`` have one
series per known tenant. prometheus_client keeps a locked child object per series (about 1 KiB each),
which with 10,000 tenants costs tens of MiB and a label lookup on every request; a dict of ints costs
a few hundred bytes per series and one dictionary update. Updated and collected on the reactor thread.

Two small families are summed from the same counts at scrape time, at no cost per request, for alerting:
``http_responses_total{route_class, code_class}`` (2xx, 3xx, 4xx, 5xx) and ``http_internal_errors_total
{route_class}`` (status 500). Every combination exists from start-up at 0, so the first 5xx or 500 of a
route class shows as an increase (a series born at 1 would not), and an SLO rule reads a few series instead
of one per tenant and status.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from tenantsvc.core.request_classes import METRIC_ROUTE_CLASSES, NO_ROUTE_CLASS, OPERATIONAL  # noqa: F401
from tenantsvc.obs.exposition import LazySamples

# The route_class label: core.request_classes' route classes, ``operational`` (health, readiness, metrics)
# and ``none`` (a request that matched no route).
ROUTE_CLASSES = METRIC_ROUTE_CLASSES
CODE_CLASSES = ("2xx", "3xx", "4xx", "5xx")


class RequestCounters(Collector):
    """Counts finished requests; a prometheus ``Collector`` so ``/metrics`` renders them like any counter."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str, str, str], int] = {}
        self._tenants: dict[str, int] = {}

    def record(self, method: str, endpoint: str, status: str, tenant: str, route_class: str,
               count_tenant: bool) -> None:
        """Count one request; ``count_tenant`` also counts it in ``tenant_requests_total``."""
        key = (method, endpoint, status, tenant, route_class)
        self._requests[key] = self._requests.get(key, 0) + 1
        if count_tenant:
            self._tenants[tenant] = self._tenants.get(tenant, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The two counter families, as prometheus_client renders them."""
        requests = CounterMetricFamily("http_requests",
                                       "HTTP requests by method, route template, status, tenant and route class.",
                                       labels=["method", "endpoint", "status", "tenant", "route_class"])
        # One series per tenant: samples made as they are written (obs.exposition), not all held at once.
        requests.samples = LazySamples(  # type: ignore[assignment]
            "http_requests_total", ("method", "endpoint", "status", "tenant", "route_class"), self._requests.items)
        yield requests
        tenants = CounterMetricFamily("tenant_requests", "Requests per known tenant.", labels=["tenant"])
        tenants.samples = LazySamples("tenant_requests_total", ("tenant",), self._tenants.items)  # type: ignore[assignment]
        yield tenants
        yield from self._by_class()

    def _by_class(self) -> Iterator[CounterMetricFamily]:
        """``http_responses_total`` and ``http_internal_errors_total``, summed from the request counts."""
        responses = {(route_class, code_class): 0 for route_class in ROUTE_CLASSES for code_class in CODE_CLASSES}
        internal = dict.fromkeys(ROUTE_CLASSES, 0)
        for (_, _, status, _, route_class), value in list(self._requests.items()):
            key = (route_class, status[:1] + "xx")
            responses[key] = responses.get(key, 0) + value
            if status == "500":
                internal[route_class] = internal.get(route_class, 0) + value
        family = CounterMetricFamily("http_responses", "HTTP responses by route class and status class "
                                     "(summed from http_requests_total).", labels=["route_class", "code_class"])
        for labels, value in responses.items():
            family.add_metric(labels, value)
        yield family
        errors = CounterMetricFamily("http_internal_errors", "HTTP 500 answers (a bug: never expected) by route "
                                     "class.", labels=["route_class"])
        for route_class, value in internal.items():
            errors.add_metric([route_class], value)
        yield errors
