"""When the odds poller runs each sport: staggered starts, jittered periods, and backoff after failures.

Pure arithmetic on seconds; ``random`` is injected (a callable returning a float in [0, 1)) so tests pass
a fixed value. The worker (``tenantsvc.workers.odds_poller``) decides which failures back off and applies
these delays with the reactor's clock.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from tenantsvc.core.backoff import backoff_delay

RETRY_AFTER_CAP_S = 3600.0
"""The longest server Retry-After we obey: a hostile or broken header cannot park a sport for more than an hour."""


def stagger_offsets(sports: Sequence[str], period_s: float) -> dict[str, float]:
    """The first-run delay of each sport: sport ``i`` of ``n`` starts ``i·period/n`` after start-up.

    Offsets are distinct and lie in [0, period), so no two sports wake together. Raises ``ValueError``
    for a non-positive period or a sport named twice (two loops for one sport would double its load on
    the rate-limited feed).
    """
    if not period_s > 0:
        raise ValueError(f"period_s must be positive, not {period_s!r}")
    if len(set(sports)) != len(sports):
        raise ValueError(f"each sport may be polled by one loop only: {list(sports)!r}")
    count = len(sports)
    return {sport: period_s * index / count for index, sport in enumerate(sports)}


def jittered(period_s: float, random: Callable[[], float]) -> float:
    """``period_s`` scaled by 50–150 %: the same jitter ``backoff_delay`` applies, at its first attempt."""
    return backoff_delay(0, period_s, period_s, random)


def honoured_retry_after(retry_after_s: float | None, cap_s: float = RETRY_AFTER_CAP_S) -> float:
    """The part of a server's Retry-After we obey: 0 when absent, negative or NaN; at most ``cap_s``."""
    if retry_after_s is None or math.isnan(retry_after_s) or retry_after_s <= 0:
        return 0.0
    return min(retry_after_s, cap_s)


def retry_delay(attempt: int, error_retry_after_s: float | None, *, base_s: float, cap_s: float,
                random: Callable[[], float], retry_after_cap_s: float = RETRY_AFTER_CAP_S) -> float:
    """Delay before retry number ``attempt`` (0-based) after a failure that may carry a Retry-After.

    ``backoff_delay(attempt, base_s, cap_s, random)`` — exponential, 50–150 % jitter, nominal at most
    ``cap_s`` — but never shorter than what the server asked for. The server's Retry-After is itself
    capped at ``retry_after_cap_s`` (one hour by default), which may exceed ``cap_s``: the feed's own
    instruction outranks our backoff ceiling, up to that hour.
    """
    backoff = backoff_delay(attempt, base_s, cap_s, random)
    return max(backoff, honoured_retry_after(error_retry_after_s, retry_after_cap_s))
