"""Exponential backoff with jitter (50–150 % of the nominal delay), as a pure function."""

from __future__ import annotations

from typing import Callable


def backoff_delay(attempt: int, base_s: float, cap_s: float, random: Callable[[], float]) -> float:
    """Delay before retry number ``attempt`` (0-based): ``min(cap, base·2^attempt)`` scaled by 0.5–1.5.

    ``random`` returns a float in [0, 1); tests pass a fixed value.
    """
    nominal = min(cap_s, base_s * (2 ** min(attempt, 32)))
    return nominal * (0.5 + random())
