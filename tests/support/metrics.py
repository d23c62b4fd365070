"""Reading metric values in tests and bench: from a prometheus ``CollectorRegistry``, or from a scraped
``/metrics`` page (always parsed with prometheus_client's own text parser, never by hand)."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from prometheus_client import CollectorRegistry

# One sample of a scraped page: its name and its labels, sorted.
Series = tuple[str, tuple[tuple[str, str], ...]]


def metric_total(registry: CollectorRegistry, sample_name: str, **labels: str) -> float:
    """Sum of the samples of ``sample_name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _scraped(text: str) -> Iterator:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        yield from family.samples


def scraped_total(text: str, sample_name: str, **labels: str) -> float:
    """Like ``metric_total``, for a ``/metrics`` page as scraped."""
    return sum(sample.value for sample in _scraped(text)
               if sample.name == sample_name and labels.items() <= sample.labels.items())


def scraped_samples(text: str) -> dict[Series, float]:
    """Every sample of a scraped ``/metrics`` page (``*_created`` left out), keyed by name and sorted labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in _scraped(text) if not sample.name.endswith("_created")}


def sample_delta(before: dict[Series, float], after: dict[Series, float], name: str, by: str, /,
                 **where: str) -> dict[str, int]:
    """How much sample ``name`` grew between two scrapes, per value of label ``by``, among samples matching ``where``."""
    grown: Counter[str] = Counter()
    for (series, labels), value in after.items():
        label_map = dict(labels)
        if series != name or any(label_map.get(k) != v for k, v in where.items()):
            continue
        grew = value - before.get((series, labels), 0.0)
        if grew:
            grown[label_map.get(by, "")] += int(round(grew))
    return dict(sorted(grown.items()))


def sample_value(samples: dict[Series, float], name: str, /, **where: str) -> float | None:
    """The first sample called ``name`` whose labels include ``where``, or None."""
    for (series, labels), value in samples.items():
        if series == name and where.items() <= dict(labels).items():
            return value
    return None
