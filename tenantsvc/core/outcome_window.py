"""Successes and failures over a sliding time window, in fixed slices so memory stays bounded."""

from __future__ import annotations

import math
from collections import deque


class OutcomeWindow:
    """Counts outcomes of the last ``window_s`` seconds, kept as at most ``slices`` per-slice tallies.

    Time comes in as ``now``. An outcome reported with a ``now`` earlier than the newest slice (a clock
    step backwards) is added to the newest slice, so the number of slices never exceeds ``slices``.
    """

    def __init__(self, window_s: float, slices: int = 10):
        if window_s <= 0 or slices < 1:
            raise ValueError("window_s must be positive and slices at least 1")
        self._slice_s = window_s / slices
        self._slices_max = slices
        self._tallies: deque[list[int]] = deque()  # [slice index, successes, failures]

    def _index(self, now: float) -> int:
        return math.floor(now / self._slice_s)

    def _prune(self, now: float) -> None:
        oldest_kept = self._index(now) - self._slices_max + 1
        while self._tallies and self._tallies[0][0] < oldest_kept:
            self._tallies.popleft()

    def add(self, now: float, failed: bool) -> None:
        """Count one outcome at ``now``."""
        self._prune(now)
        index = self._index(now)
        if not self._tallies or index > self._tallies[-1][0]:
            self._tallies.append([index, 0, 0])
        self._tallies[-1][2 if failed else 1] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` within the window ending at ``now``."""
        self._prune(now)
        successes = sum(tally[1] for tally in self._tallies)
        failures = sum(tally[2] for tally in self._tallies)
        return successes + failures, failures

    def clear(self) -> None:
        """Forget every outcome."""
        self._tallies.clear()

    def __len__(self) -> int:
        """Number of slices currently held (never more than ``slices``)."""
        return len(self._tallies)
