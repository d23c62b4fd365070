"""A health probe run at most once per ``max_age_s`` whatever the request rate; concurrent callers share one run.

``/health/detailed`` is unauthenticated by default and cheap to ask for: without this, every call cost a
database round trip and a Redis PING (issue 11: one client at 50 connections caused 6,896 DB round trips in
12 s). A ``CachedProbe`` keeps the last reading with the time it was taken; a caller within ``max_age_s`` of
it gets that reading, a later caller starts one new probe that every caller arriving meanwhile waits for
(``SingleFlight``: one caller cancelling never cancels the probe). The probe function reports failure as a
value (a health check must describe failure), so failures are cached like successes: a database that is
down is asked once per period, not once per request. A probe that raises anyway reaches its waiters and is
not cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from twisted.internet.defer import Deferred, succeed

from tenantsvc.runtime.singleflight import SingleFlight

T = TypeVar("T")
RUN, CACHE, IN_FLIGHT = "run", "cache", "in_flight"  # how a caller got its reading (health_probes_total)


@dataclass(frozen=True)
class Reading(Generic[T]):
    """One probe result and the clock time at which it was taken (when the probe finished)."""

    value: T
    taken_at: float

    def age_s(self, now: float) -> float:
        """Seconds since the reading was taken (never negative, even after a clock step backwards)."""
        return max(0.0, now - self.taken_at)


class CachedProbe(Generic[T]):
    """``get()`` → a Deferred ``Reading``: the cached one while younger than ``max_age_s``, else a fresh probe.

    ``on_answer(source)`` is told how each caller was answered (``run``, ``cache`` or ``in_flight``).
    """

    def __init__(self, name: str, clock: Any, probe: Callable[[], Deferred], max_age_s: float,
                 on_answer: Callable[[str], None] | None = None):
        self.name = name
        self._clock = clock
        self._probe = probe
        self._max_age_s = max_age_s
        self._on_answer = on_answer or (lambda source: None)
        self._flight: SingleFlight[Reading[T]] = SingleFlight()
        self._reading: Reading[T] | None = None

    def get(self) -> "Deferred[Reading[T]]":
        """The last reading if still fresh, else the result of the probe in flight (starting one if none is)."""
        reading, now = self._reading, self._clock.seconds()
        if reading is not None and reading.taken_at <= now < reading.taken_at + self._max_age_s:
            self._on_answer(CACHE)
            return succeed(reading)
        self._on_answer(IN_FLIGHT if self._flight.in_flight(self.name) else RUN)
        return self._flight.run(self.name, self._refresh)

    async def _refresh(self) -> Reading[T]:
        value = await self._probe()
        reading = Reading(value, self._clock.seconds())
        self._reading = reading
        return reading
