"""Reading metric values from a prometheus ``CollectorRegistry`` in tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def metric_total(registry: CollectorRegistry, sample_name: str, **labels: str) -> float:
    """Sum of the samples of ``sample_name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
