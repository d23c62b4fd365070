"""``/metrics`` in the Prometheus text format, one metric family at a time.

``prometheus_client.generate_latest`` builds the whole page in memory: every sample as an object with its
label dict, every line as a string, then the joined page and its UTF-8 copy. With 10,000 tenants (two
per-tenant families) that is over 10 MiB of garbage per scrape, at the moment the process is busiest.
Here each family is formatted by ``generate_latest`` itself, alone, and the page is the list of those
chunks: the bytes are the same, and only one family's intermediate objects exist at a time.
Families whose samples are many can make them while they are written (``LazySamples``).
"""

from __future__ import annotations

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


def exposition_chunks(registry: Collector) -> list[bytes]:
    """The text exposition of ``registry``, one chunk per metric family (``b"".join`` is ``generate_latest``'s)."""
    return [generate_latest(_OneFamily(family)) for family in registry.collect()]  # type: ignore[arg-type]


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
