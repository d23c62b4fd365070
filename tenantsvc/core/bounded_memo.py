"""A memo for hot paths: values made once per key, at most ``max_entries`` kept (then it starts over).

For values that take few distinct keys in practice (status lines, ``Content-Length`` lines, rate-limit
headers) but must stay bounded whatever a client sends. A hit is a plain dictionary lookup.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(dict[K, V], Generic[K, V]):
    """``memo[key]`` is ``make(key)``, made on the first lookup and kept; full, the memo is emptied first."""

    def __init__(self, make: Callable[[K], V], max_entries: int = 4096):
        super().__init__()
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._make = make
        self._max_entries = max_entries

    def __missing__(self, key: K) -> V:
        if len(self) >= self._max_entries:
            self.clear()
        value = self[key] = self._make(key)
        return value
