"""Reading metric values in tests: from a prometheus ``CollectorRegistry``, or from a scraped ``/metrics`` page."""

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


def scraped_total(text: str, sample_name: str, **labels: str) -> float:
    """Like ``metric_total``, for a ``/metrics`` page as scraped (parsed with prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == sample_name and labels.items() <= sample.labels.items())
