"""``/metrics`` one family at a time: the same bytes as ``generate_latest``, samples made while written."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tenantsvc.obs.exposition import LazySamples, exposition_chunks
from tenantsvc.obs.request_counters import RequestCounters


def test_the_chunks_join_to_exactly_what_generate_latest_writes():
    registry = CollectorRegistry()
    Counter("things", "Things.", ["kind"], registry=registry).labels('odd "quoted"\nvalue').inc(3)
    Histogram("waits_seconds", "Waits.", registry=registry).observe(0.2)
    counters = RequestCounters()
    registry.register(counters)
    for tenant in ("acme", "bolt"):
        counters.record("GET", "/<tenant>/api/public/load-theme", "200", tenant, "public", True)
    chunks = exposition_chunks(registry)
    assert len(chunks) > 3
    assert b"".join(chunks) == generate_latest(registry)
    assert b'tenant_requests_total{tenant="bolt"} 1.0' in b"".join(chunks)


def test_lazy_samples_follow_the_counts_and_hold_none():
    counts = {("a", "1"): 2.0}
    samples = LazySamples("x_total", ("k", "v"), counts.items)
    assert [(s.name, s.labels, s.value) for s in samples] == [("x_total", {"k": "a", "v": "1"}, 2.0)]
    counts[("b", "2")] = 5.0
    assert [s.labels["k"] for s in samples] == ["a", "b"]  # read again at each iteration
    single = LazySamples("t_total", ("tenant",), {"acme": 1.0}.items)
    assert [s.labels for s in single] == [{"tenant": "acme"}]
