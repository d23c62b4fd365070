"""A memo for hot paths: values made once per key, at most ``max_entries`` kept (then it starts over).

For values that take few distinct keys in practice (status lines, ``Content-Length`` lines, rate-limit
headers) but must stay bounded whatever a client sends. A hit is a plain dictionary lookup.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``make(key)``, made on the first lookup and kept (unless ``keep(value)`` is false: then it
    is made again next time); full, the memo is emptied first."""

    def __init__(self, make: Callable[[K], V], max_entries: int = 4096, keep: Callable[[V], bool] | None = None):
        super().__init__()
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._make = make
        self._max_entries = max_entries
        self._keep = keep

    def __missing__(self, key: K) -> V:
        value = self._make(key)
        if self._keep is None or self._keep(value):
            if len(self) >= self._max_entries:
                self.clear()
            self[key] = value
        return value
