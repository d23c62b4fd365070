"""The reactor-lag monitor: a timer that measures how late the reactor runs it, and what that means for readiness.

Every ``interval_s`` the monitor asks the reactor to call it back and, when called, records how much later
than asked that happened (``reactor_lag_seconds``). Everything on the process — every request, probe and
timer — waits behind whatever held the reactor thread, so this lateness is what each of them waited first.

While the reactor is blocked nothing runs, the monitor included: a long block is seen when the reactor
comes back, as one late tick. So readiness cannot follow the last tick alone. After a tick later than
``threshold_s`` the process stays not ready until the ticks have been on time again for ``recovery_s``
(a recovery rule: a reactor that is blocked every few seconds never flaps back to ready between blocks),
and a tick overdue by more than the threshold right now (the reactor got to an I/O event before the
timer) counts as lag too.

Metrics (registered on the service's registry by ``ReactorLagMonitor``): the histogram
``reactor_lag_seconds``, the gauge ``reactor_lag_max_seconds`` (the highest lag of the last minute,
which a scrape cannot miss, ``core.peak_window``) and the counter ``reactor_lag_episodes_total`` (times
the lag went over the threshold, each making ``/readyz`` answer 503). Lateness is measured on the
reactor's clock (wall time): a step of the system clock forward reads as one late tick.
"""

from __future__ import annotations

import math
from typing import Any

from eliot import MessageType, fields, write_failure
from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.application.service import Service
from twisted.python.failure import Failure

from tenantsvc.core.peak_window import PeakWindow
from tenantsvc.obs.metrics import PlainHistogram

TICK_S = 0.1
# From 1 ms (a healthy reactor is ~0.1 ms late) to 30 s (a reactor blocked for good); 0.05 and 0.25 are the
# bounds the alert's promtool tests use.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PEAK_WINDOW_S = 60.0

LAGGING = MessageType(
    "tenantsvc:reactor:lagging", fields(lag_s=float, threshold_s=float, recovery_s=float),
    "The reactor ran a timer later than the readiness threshold: /readyz answers 503 until it is on time again.",
)
CAUGHT_UP = MessageType(
    "tenantsvc:reactor:caught_up", fields(worst_lag_s=float, unready_s=float),
    "The reactor ran its timers on time for the recovery period: /readyz may answer 200 again.",
)


class ReactorLagMonitor(Service):
    """Measures the reactor's lateness every ``interval_s`` and holds readiness while it is too late.

    ``clock`` is the reactor (or a ``task.Clock`` in tests). A tick body never raises: a failure is logged
    and the next tick is scheduled all the same.
    """

    name = "reactor_lag"  # type: ignore[assignment]  # Twisted declares Service.name = None

    def __init__(self, clock: Any, registry: CollectorRegistry, *, threshold_s: float, recovery_s: float,
                 interval_s: float = TICK_S):
        if interval_s <= 0 or threshold_s <= 0 or recovery_s < 0:
            raise ValueError("interval_s and threshold_s must be positive, recovery_s not negative")
        self._clock = clock
        self.threshold_s = threshold_s
        self.recovery_s = recovery_s
        self._interval_s = interval_s
        self._on_time_ticks_needed = math.ceil(recovery_s / interval_s)
        self._expected_at: float | None = None
        self._call: Any = None
        self._peak = PeakWindow(PEAK_WINDOW_S)
        self._on_time_left = 0
        self._episode_started_at = 0.0
        self.lagging = False
        self.worst_lag_s = 0.0  # the worst tick of the current (or last) episode
        self.last_lag_s = 0.0
        self._histogram = PlainHistogram(
            "reactor_lag_seconds", "How much later than asked the reactor ran the lag monitor's timer (every "
            f"{interval_s:g} s): what every request and timer waited for the reactor thread first.",
            [], registry, buckets=LAG_BUCKETS).labels()
        peak = Gauge("reactor_lag_max_seconds",
                     "Highest reactor lag of the last minute, including a timer overdue right now.",
                     registry=registry)
        peak.set_function(lambda: self._peak.peak(self._clock.seconds(), self.overdue_s()))
        self._episodes = Counter(
            "reactor_lag_episodes_total",
            "Times the reactor lag went over REACTOR_LAG_READY_THRESHOLD (each makes /readyz answer 503 until "
            "the reactor has been on time for REACTOR_LAG_READY_RECOVERY).", registry=registry)

    def startService(self) -> None:
        """Schedule the first tick."""
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        """Cancel the pending tick."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._expected_at = None

    def _schedule(self) -> None:
        self._expected_at = self._clock.seconds() + self._interval_s
        self._call = self._clock.callLater(self._interval_s, self._tick)

    def _tick(self) -> None:
        try:
            now = self._clock.seconds()
            self.observe(max(0.0, now - (self._expected_at or now)), now)
        except Exception:
            write_failure(Failure())
        finally:
            if self.running:
                self._schedule()

    def observe(self, lag_s: float, now: float) -> None:
        """Record one tick that ran ``lag_s`` late at ``now`` and update the lagging state."""
        self.last_lag_s = lag_s
        self._histogram.observe(lag_s)
        self._peak.observe(lag_s, now)
        if lag_s >= self.threshold_s:
            if not self.lagging:
                self.lagging, self.worst_lag_s, self._episode_started_at = True, 0.0, now - lag_s
                self._episodes.inc()
                LAGGING.log(lag_s=round(lag_s, 6), threshold_s=self.threshold_s, recovery_s=self.recovery_s)
            self.worst_lag_s = max(self.worst_lag_s, lag_s)
            self._on_time_left = self._on_time_ticks_needed
        elif self.lagging:
            self._on_time_left -= 1
            if self._on_time_left <= 0:
                self.lagging = False
                CAUGHT_UP.log(worst_lag_s=round(self.worst_lag_s, 6),
                              unready_s=round(now - self._episode_started_at, 6))

    def overdue_s(self) -> float:
        """How late the pending tick already is (0 while it is not due, or when the monitor is stopped)."""
        if self._expected_at is None:
            return 0.0
        return max(0.0, self._clock.seconds() - self._expected_at)

    @property
    def too_late(self) -> bool:
        """True while readiness must be held: a recent tick over the threshold, or one overdue by more now."""
        return self.lagging or self.overdue_s() >= self.threshold_s

    def describe(self) -> dict[str, Any]:
        """Why ``/readyz`` is 503 for lag: the worst lag seen, the threshold and the recovery rule."""
        return {"reason": "reactor_lag", "reactor_lag_seconds": round(max(self.worst_lag_s, self.overdue_s()), 3),
                "threshold_seconds": self.threshold_s, "recovery_seconds": self.recovery_s,
                "message": f"the reactor ran timers over {self.threshold_s:g} s late; ready again after "
                           f"{self.recovery_s:g} s on time"}
