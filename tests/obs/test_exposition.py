"""``/metrics`` one family at a time: the same bytes as ``generate_latest``, samples made while written."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tenantsvc.obs.exposition import LazySamples, exposition_chunks
from tenantsvc.obs.request_counters import RequestCounters


@pytest.mark.parametrize("slice_samples", [1, 2, 3, 1000])
@pytest.mark.parametrize("tenants", [0, 1, 5])
def test_the_pieces_join_to_exactly_what_generate_latest_writes(slice_samples, tenants):
    registry = CollectorRegistry()
    Counter("things", "Things.", ["kind"], registry=registry).labels('odd "quoted"\nvalue').inc(3)
    Histogram("waits_seconds", "Waits.", registry=registry).observe(0.2)
    counters = RequestCounters()
    registry.register(counters)
    for index in range(tenants):
        counters.record("GET", "/<tenant>/api/public/load-theme", "200", f"tenant-{index}", "public", True)
    pieces = list(exposition_chunks(registry, slice_samples))
    assert b"".join(pieces) == generate_latest(registry)
    per_tenant_family = 1 + max(0, -(-tenants // slice_samples) - 1)  # its slices
    assert len(pieces) >= 2 + 2 * per_tenant_family


def test_lazy_samples_follow_the_counts_and_hold_none():
    counts = {("a", "1"): 2.0}
    samples = LazySamples("x_total", ("k", "v"), counts.items)
    assert [(s.name, s.labels, s.value) for s in samples] == [("x_total", {"k": "a", "v": "1"}, 2.0)]
    counts[("b", "2")] = 5.0
    assert [s.labels["k"] for s in samples] == ["a", "b"]  # read again at each iteration
    single = LazySamples("t_total", ("tenant",), {"acme": 1.0}.items)
    assert [s.labels for s in single] == [{"tenant": "acme"}]
