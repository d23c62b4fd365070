"""The DB circuit breaker as a pure state machine: time comes in as ``now``, nothing here does I/O.

CLOSED → OPEN on *pressure* (a pool sample at or over the open thresholds: usage >= 85 % or >= 5
waiting) or on *failures* (N consecutive connection errors/timeouts, or a failure rate over a sliding
window once it holds a minimum volume). OPEN → HALF_OPEN once ``open_duration_s`` has passed.
HALF_OPEN lets at most ``half_open_max_probes`` probes reach the DB at once and refuses everything
else; a failed probe, or renewed pressure, reopens it. It closes only with hysteresis: the required
number of probes succeeded AND the last pressure sample is below the lower (close) thresholds.

What a caller may do (``allow``): CLOSED admits everything. OPEN refuses reads; it admits writes
only when it opened on pressure (a critical write still goes through, bounded by the pool wait),
never when it opened on failures or was forced (the DB is down: fail fast). HALF_OPEN admits a call
only as a probe, whose outcome the caller must report (``probe_succeeded`` / ``probe_failed`` /
``probe_abandoned``). ``background`` work (cache refreshes, warmers, feed workers) is admitted only
while CLOSED: it never takes a probe slot, so recovery is judged by user requests and the breaker's
own dedicated probe, not by whichever tick comes first. ``force_open`` / ``force_closed`` pin the state,
ignoring every signal, until ``auto`` hands control back to the rules from the current state. ``trip``
opens at once on evidence stronger than a count (a trivial query unanswered while calls are slow).

Optionally (``open_backoff_factor`` > 1) each reopening by a failed probe lengthens the next open period,
up to ``open_duration_max_s``, so a long outage costs a bounded number of probes; closing resets it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from tenantsvc.core.outcome_window import OutcomeWindow
from tenantsvc.core.request_classes import BACKGROUND, BREAKER_CLASSES, READ, WRITE  # noqa: F401 (re-exported)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)
STATE_CODES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}  # the circuit_breaker_state gauge values

REQUEST_CLASSES = BREAKER_CLASSES  # core.request_classes: the one vocabulary

AUTO, FORCED_OPEN, FORCED_CLOSED = "auto", "forced_open", "forced_closed"

# Why a transition happened.
PRESSURE = "pressure"          # a pool sample at or over the open thresholds
FAILURES = "failures"          # consecutive failures, or the failure rate over the window
COOLDOWN = "cooldown"          # open_duration_s elapsed: OPEN → HALF_OPEN
PROBE_FAILED = "probe_failed"  # a half-open probe failed
RECOVERED = "recovered"        # probes succeeded and pressure is below the close thresholds
FORCED = "forced"              # an operator forced the state
# Every way the rules (not an operator) open a breaker: (from_state, to_state, reason).
AUTOMATIC_OPENINGS = ((CLOSED, OPEN, PRESSURE), (CLOSED, OPEN, FAILURES), (HALF_OPEN, OPEN, PRESSURE),
                      (HALF_OPEN, OPEN, PROBE_FAILED))

# Kinds of failure the caller reports: a connection error, a timeout (statement timeout or overall deadline),
# a call still holding its connection past the slow-call threshold, a trivial query left unanswered.
CONNECTION_ERROR, TIMEOUT, SLOW_CALL, UNRESPONSIVE = "connection_error", "timeout", "slow_call", "unresponsive"


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds and timings; the close thresholds must sit below the open ones (hysteresis).

    Pools smaller than ``min_pool_size_for_usage`` are judged by waiters only: one busy connection
    out of one (embedded SQLite) is not overload.
    """

    open_usage_percent: float = 85.0
    open_waiting: int = 5
    # CLOSED opens on pressure only when this many samples in a row are hot: one momentary peak (a burst
    # of commits landing together) must not shed reads for a whole open period.
    open_after_hot_samples: int = 1
    close_usage_percent: float = 60.0
    close_waiting: int = 2
    min_pool_size_for_usage: int = 4
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    failure_window_s: float = 10.0
    failure_min_calls: int = 20
    open_duration_s: float = 5.0
    # Each reopening by a failed probe multiplies the open period by ``open_backoff_factor``, up to
    # ``open_duration_max_s``; closing resets it. The defaults (1.0, None) keep every period at open_duration_s.
    open_backoff_factor: float = 1.0
    open_duration_max_s: float | None = None
    half_open_max_probes: int = 2
    half_open_successes_to_close: int = 2
    history_size: int = 20

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.close_usage_percent <= self.open_usage_percent:
            problems.append("need 0 < close_usage_percent <= open_usage_percent")
        if not 1 <= self.close_waiting <= self.open_waiting:
            problems.append("need 1 <= close_waiting <= open_waiting")
        if not 0 < self.failure_rate <= 1:
            problems.append("failure_rate must be in (0, 1]")
        if min(self.consecutive_failures, self.failure_min_calls, self.half_open_max_probes,
               self.half_open_successes_to_close, self.history_size, self.min_pool_size_for_usage,
               self.open_after_hot_samples) < 1:
            problems.append("counts must be at least 1")
        if self.failure_window_s <= 0 or self.open_duration_s <= 0:
            problems.append("durations must be positive")
        if self.open_backoff_factor < 1:
            problems.append("open_backoff_factor must be at least 1")
        if self.open_duration_max_s is not None and self.open_duration_max_s < self.open_duration_s:
            problems.append("need open_duration_max_s >= open_duration_s")
        if problems:
            raise ValueError("invalid BreakerConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class Transition:
    """One state change: when, from what, to what, why, and (for failures) the kind of the last one."""

    at: float
    from_state: str
    to_state: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Probe:
    """A half-open admission; its outcome must be reported back. Stale once the half-open period ends."""

    generation: int


@dataclass(frozen=True)
class Admission:
    """The answer of ``allow``: truthy when the call may reach the DB; ``probe`` set when admitted as one."""

    allowed: bool
    probe: Probe | None = None

    def __bool__(self) -> bool:
        return self.allowed


ADMITTED = Admission(True)
REFUSED = Admission(False)


class CircuitBreaker:
    """The breaker's state and rules; ``on_transition`` is called with each ``Transition`` as it happens."""

    def __init__(self, config: BreakerConfig = BreakerConfig(),
                 on_transition: Callable[[Transition], None] = lambda transition: None):
        self.config = config
        self._on_transition = on_transition
        self._state = CLOSED
        self._mode = AUTO
        self._open_reason: str | None = None
        self._opened_at = 0.0
        self._open_duration_s = config.open_duration_s  # the current open period (grows by backoff)
        self._reopenings = 0  # probe failures since the breaker last closed
        self._generation = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._consecutive_failures = 0
        self._window = OutcomeWindow(config.failure_window_s)
        self._calm = True  # the last pressure sample was below the close thresholds (none yet: calm)
        self._hot_samples = 0  # consecutive pressure samples at or above the open thresholds
        self._history: deque[Transition] = deque(maxlen=config.history_size)

    # ---- what callers read ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        """CLOSED, OPEN or HALF_OPEN, as of the last call (``advance(now)`` brings it up to date)."""
        return self._state

    @property
    def mode(self) -> str:
        """AUTO, FORCED_OPEN or FORCED_CLOSED."""
        return self._mode

    @property
    def open_reason(self) -> str | None:
        """Why the breaker last opened (PRESSURE, FAILURES, PROBE_FAILED or FORCED); None while closed."""
        return None if self._state == CLOSED else self._open_reason

    @property
    def reason(self) -> str | None:
        """The reason of the last transition, None before the first."""
        return self._history[-1].reason if self._history else None

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The last ``history_size`` transitions, oldest first."""
        return tuple(self._history)

    @property
    def open_duration_s(self) -> float:
        """How long the current (or last) open period lasts: ``open_duration_s`` grown by backoff, capped."""
        return self._open_duration_s

    @property
    def probes_in_flight(self) -> int:
        """Probes admitted in the current half-open period whose outcome is not in yet."""
        return self._probes_in_flight if self._state == HALF_OPEN else 0

    def retry_after_s(self, now: float) -> float:
        """How long a refused caller should wait: the rest of the open period, else one probe's worth."""
        self.advance(now)
        if self._state == OPEN and self._mode == AUTO:
            return max(1.0, self._opened_at + self._open_duration_s - now)
        if self._state == OPEN:
            return self._open_duration_s
        return 1.0

    # ---- admission -----------------------------------------------------------------------------

    def allow(self, now: float, request_class: str) -> Admission:
        """May a ``read`` or ``write`` reach the DB now? A HALF_OPEN admission carries a ``Probe``."""
        if request_class not in REQUEST_CLASSES:
            raise ValueError(f"request_class must be one of {REQUEST_CLASSES}, got {request_class!r}")
        self.advance(now)
        if self._state == CLOSED:
            return ADMITTED
        if self._state == OPEN:
            return ADMITTED if request_class == WRITE and self._open_reason == PRESSURE else REFUSED
        if request_class == BACKGROUND:
            return REFUSED
        probe = self.try_acquire_probe(now)
        return REFUSED if probe is None else Admission(True, probe)

    def try_acquire_probe(self, now: float) -> Probe | None:
        """A probe slot when HALF_OPEN has one free, else None."""
        self.advance(now)
        if self._state != HALF_OPEN:  # HALF_OPEN only ever happens in automatic mode
            return None
        if self._probes_in_flight >= self.config.half_open_max_probes:
            return None
        self._probes_in_flight += 1
        return Probe(self._generation)

    def probe_succeeded(self, now: float, probe: Probe) -> None:
        """A probe reached the DB and it answered; closes the breaker if enough did and pressure is low."""
        if self._release(now, probe):
            self._probe_successes += 1
            self._maybe_recover(now)

    def probe_failed(self, now: float, probe: Probe, kind: str) -> None:
        """A probe met a connection error or timeout (``kind``): reopen."""
        if self._release(now, probe):
            self._move(now, OPEN, PROBE_FAILED, kind)

    def probe_abandoned(self, now: float, probe: Probe) -> None:
        """A probe ended without reaching a verdict (cancelled, withdrawn): free its slot only."""
        self._release(now, probe)

    def _release(self, now: float, probe: Probe) -> bool:
        self.advance(now)
        current = self._state == HALF_OPEN and probe.generation == self._generation
        if current:
            self._probes_in_flight -= 1
        return current

    # ---- signals -------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Apply the timer: OPEN → HALF_OPEN once ``open_duration_s`` has passed (automatic mode only)."""
        if self._state == OPEN and self._mode == AUTO and now >= self._opened_at + self._open_duration_s:
            self._move(now, HALF_OPEN, COOLDOWN)

    def observe_pressure(self, now: float, in_use: int, size: int, waiting: int) -> None:
        """Take one pool sample: opens on high pressure, lets HALF_OPEN close once pressure is low."""
        self.advance(now)
        config = self.config
        usage = 100.0 * in_use / size if size >= config.min_pool_size_for_usage else 0.0
        hot = usage >= config.open_usage_percent or waiting >= config.open_waiting
        self._hot_samples = self._hot_samples + 1 if hot else 0
        self._calm = usage < config.close_usage_percent and waiting < config.close_waiting
        if self._mode != AUTO:
            return
        sustained = self._hot_samples >= config.open_after_hot_samples
        if hot and (self._state == HALF_OPEN or (self._state == CLOSED and sustained)):
            self._move(now, OPEN, PRESSURE)
        else:
            self._maybe_recover(now)

    def record_success(self, now: float) -> None:
        """The DB answered an interaction (counted only while CLOSED: probes report on their own)."""
        self.advance(now)
        if self._state == CLOSED and self._mode == AUTO:
            self._consecutive_failures = 0
            self._window.add(now, failed=False)

    def record_failure(self, now: float, kind: str) -> None:
        """An interaction met a connection error or timeout (``kind``); may open the breaker on FAILURES."""
        self.advance(now)
        if self._state != CLOSED or self._mode != AUTO:
            return
        self._consecutive_failures += 1
        self._window.add(now, failed=True)
        calls, failures = self._window.totals(now)
        by_rate = calls >= self.config.failure_min_calls and failures >= self.config.failure_rate * calls
        if self._consecutive_failures >= self.config.consecutive_failures or by_rate:
            self._move(now, OPEN, FAILURES, kind)

    def trip(self, now: float, kind: str) -> None:
        """Open now on FAILURES of ``kind`` (automatic mode, CLOSED only): the caller has conclusive evidence."""
        self.advance(now)
        if self._state == CLOSED and self._mode == AUTO:
            self._move(now, OPEN, FAILURES, kind)

    # ---- operator modes ------------------------------------------------------------------------

    def force_open(self, now: float) -> None:
        """Refuse every call, whatever the signals, until ``auto``."""
        self._mode = FORCED_OPEN
        self._open_reason = FORCED
        self._move(now, OPEN, FORCED)

    def force_closed(self, now: float) -> None:
        """Admit every call, whatever the signals, until ``auto``."""
        self._mode = FORCED_CLOSED
        self._move(now, CLOSED, FORCED)

    def auto(self, now: float) -> None:
        """Hand control back to the rules from the current state (a forced-open breaker starts its timer)."""
        if self._mode == AUTO:
            return
        self._mode = AUTO
        self._opened_at = now
        self._consecutive_failures = 0
        self._window.clear()

    # ---- internals -----------------------------------------------------------------------------

    def _maybe_recover(self, now: float) -> None:
        if (self._state == HALF_OPEN and self._calm
                and self._probe_successes >= self.config.half_open_successes_to_close):
            self._move(now, CLOSED, RECOVERED)

    def _move(self, now: float, to_state: str, reason: str, detail: str = "") -> None:
        from_state = self._state
        if from_state == to_state:
            return
        self._state = to_state
        if to_state == OPEN:
            self._opened_at = now
            self._open_reason = reason
            self._reopenings = self._reopenings + 1 if reason == PROBE_FAILED else 0
            self._open_duration_s = self._backed_off_open_duration()
        elif to_state == HALF_OPEN:
            self._generation += 1
            self._probes_in_flight = 0
            self._probe_successes = 0
        else:
            self._consecutive_failures = 0
            self._window.clear()
            self._reopenings = 0
        transition = Transition(now, from_state, to_state, reason, detail)
        self._history.append(transition)
        self._on_transition(transition)

    def _backed_off_open_duration(self) -> float:
        config = self.config
        cap = config.open_duration_s if config.open_duration_max_s is None else config.open_duration_max_s
        duration = config.open_duration_s
        for _ in range(self._reopenings):  # stops at the cap: a few steps at most, never an overflow
            if duration >= cap or config.open_backoff_factor == 1:
                break
            duration *= config.open_backoff_factor
        return min(cap, duration)


def retry_after_header_s(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(seconds))
