"""The highest value a quantity reached over a sliding time window, for gauges that a scrape cannot miss.

A gauge read at scrape time shows the value at that instant: a pool that was 15 % busy for 300 ms
between two scrapes 5 s apart reads 0 at both. Resetting a "max since the last scrape" on every scrape
would fix that for one scraper, but with two (an HA pair of Prometheus servers, a debugging ``curl``)
each reset hides the peak from the others. ``PeakWindow`` keeps the maximum of each time slice instead,
and answers the maximum over the last ``window_s`` seconds (at least the last ``covers_s``, one slice
less): every scraper whose interval is at most ``covers_s`` sees every peak, whoever else scrapes, and
reading it changes nothing.

Time comes in as ``now``. Memory is bounded by the number of slices.
"""

from __future__ import annotations

import math
from collections import deque


class PeakWindow:
    """The maximum value observed over the last ``window_s`` seconds, kept as per-slice maxima.

    ``observe(value, now)`` is called whenever the quantity rises (or on any change); ``peak(now,
    current)`` includes ``current``, the value right now, so a quantity that stays high without changing
    for longer than the window still reads high. A ``now`` earlier than the newest slice (a clock step
    backwards) counts in the newest slice.
    """

    def __init__(self, window_s: float, slices: int = 12):
        if window_s <= 0 or slices < 1:
            raise ValueError("window_s must be positive and slices at least 1")
        self.window_s = window_s
        self._slice_s = window_s / slices
        self._slices = slices
        self._maxima: deque[list[float]] = deque()  # [slice index, maximum in that slice]

    @property
    def covers_s(self) -> float:
        """A value observed at most this long ago is always in ``peak`` (the window less one slice)."""
        return self.window_s - self._slice_s

    def _index(self, now: float) -> int:
        return math.floor(now / self._slice_s)

    def _prune(self, now: float) -> None:
        oldest_kept = self._index(now) - self._slices + 1
        maxima = self._maxima
        while maxima and maxima[0][0] < oldest_kept:
            maxima.popleft()

    def observe(self, value: float, now: float) -> None:
        """Record that the quantity was ``value`` at ``now``."""
        maxima = self._maxima
        index = self._index(now)
        if maxima and index <= maxima[-1][0]:
            if value > maxima[-1][1]:
                maxima[-1][1] = value
            return
        self._prune(now)
        maxima.append([index, value])

    def peak(self, now: float, current: float) -> float:
        """The highest of ``current`` and every value observed within the window ending at ``now``."""
        self._prune(now)
        return max([current, *(maximum for _, maximum in self._maxima)])

    def __len__(self) -> int:
        """Slices currently held (never more than ``slices``)."""
        return len(self._maxima)
