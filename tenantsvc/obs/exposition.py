"""``/metrics`` in the Prometheus text format, a piece at a time.

``prometheus_client.generate_latest`` builds the whole page in memory: every sample as an object with its
label dict, every line as a string, then the joined page and its UTF-8 copy. With 10,000 tenants (two
per-tenant families) that is over 10 MiB of garbage per scrape, at the moment the process is busiest.
Here the page is made lazily, as the connection takes it: each family is formatted by ``generate_latest``
itself, alone, and a family whose samples are made while written (``LazySamples``, the per-tenant ones)
in slices of ``SLICE_SAMPLES``, its ``# HELP`` and ``# TYPE`` lines with the first. The bytes are the same.
"""

from __future__ import annotations

import copy
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


class _OneFamily:
    """A collector of one already collected family (what ``generate_latest`` takes)."""

    def __init__(self, family: Any):
        self._family = family

    def collect(self) -> Iterator[Any]:
        """The family."""
        yield self._family


SLICE_SAMPLES = 1000


def exposition_chunks(registry: Collector, slice_samples: int = SLICE_SAMPLES) -> Iterator[bytes]:
    """The text exposition of ``registry`` in pieces, made as they are asked for (``b"".join`` of them is
    ``generate_latest(registry)``)."""
    for family in registry.collect():
        if not isinstance(family.samples, LazySamples):
            yield _formatted(family)
            continue
        samples = iter(family.samples)
        piece = list(islice(samples, slice_samples))
        yield _formatted(_with_samples(family, piece))  # with the family's HELP and TYPE lines
        while piece := list(islice(samples, slice_samples)):
            yield _formatted(_with_samples(family, piece)).split(b"\n", 2)[2]  # without them


def _formatted(family: Any) -> bytes:
    return generate_latest(_OneFamily(family))  # type: ignore[arg-type]


def _with_samples(family: Any, samples: list[Sample]) -> Any:
    """``family`` with ``samples`` in place of its own."""
    part = copy.copy(family)
    part.samples = samples
    return part


class LazySamples:
    """A family's samples made as they are iterated: ``make(labels, value)`` over ``items()`` of a counts map.

    Iterable any number of times (each iteration reads the counts as they are then); holds no sample.
    """

    def __init__(self, name: str, label_names: tuple[str, ...], items: Callable[[], Iterable[tuple[Any, float]]]):
        self._name = name
        self._label_names = label_names
        self._items = items

    def __iter__(self) -> Iterator[Sample]:
        names = self._label_names
        for labels, value in list(self._items()):
            values = labels if isinstance(labels, tuple) else (labels,)
            yield Sample(self._name, dict(zip(names, values)), value, None, None)
