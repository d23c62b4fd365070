"""The odds poller: one independent, staggered loop per sport around an injected ``ingest(sport)``.

``ingest`` fetches a sport's odds (network, no connection held), parses them and saves them in one DB
interaction; this module only decides *when* each sport runs and records how it went. Each sport has its
own ``clock.callLater`` chain, so a slow or failing sport never delays another. (Not a
``runtime.looping.GuardedLoop``: a LoopingCall has one fixed period for all its runs, while each sport's
next delay is decided by how its last run went — jitter after a success, backoff and Retry-After after a
failure — and the sports start staggered.)

- start-up: sport ``i`` of ``n`` first runs ``i·period/n`` after ``startService`` (``stagger_offsets``);
- after a success: ``jittered(period_s)`` later (50–150 %);
- after a failure: ``retry_delay`` later — exponential backoff from ``backoff_base_s`` up to
  ``backoff_cap_s`` with 50–150 % jitter, never sooner than the feed's Retry-After (itself capped at an
  hour). Every failure backs off, whatever its kind: ``rate_limited`` (429) and ``rejected`` (the body
  said "no data" or carried a rate-limit/error message) because the feed asked us to slow down;
  ``server_error``, ``timeout`` and ``unreachable`` because retrying a struggling feed at full speed
  makes it worse; ``malformed`` (usually a truncated body) and ``http_error`` (other 4xx: a key or path
  problem) because an immediate retry would only repeat it; ``db_unavailable`` (the odds were fetched but
  the database refused or failed the save: breaker open, no connection, deadline) because the breaker is
  already shedding load; ``error`` (an unexpected exception, logged with its traceback) so a bug cannot
  turn into a hot loop. A ``FeedError`` whose ``retryable`` is
  False cannot heal by retrying soon, so it waits the full ``backoff_cap_s`` at once.

Metrics exist from construction, before the first run (the poller is built at start-up, even while the
migrations still wait for the database): ``feed_errors_total`` at 0 for every sport and kind,
``worker_ticks_total{worker="worker_odds"}`` (one tick per poll of one sport) and ``odds_age_seconds`` per
sport, which counts from construction until the sport's first success, so an alert on
``odds_age_seconds > ODDS_MAX_AGE`` fires for a sport whose feed never worked too.

A sport's next run is scheduled only when its previous run has finished, so runs of one sport never
overlap. ``stopService`` cancels the pending timers and waits for the runs in flight (it never cancels
them: ``ingest`` may be inside a DB write). The loop body never raises.
"""

from __future__ import annotations

import random as random_module
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from eliot import ActionType, fields, write_failure
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.python.failure import Failure

from tenantsvc.core.feed_errors import FEED_ERROR_KINDS, FeedError
from tenantsvc.core.odds import SPORTS
from tenantsvc.core.poll_schedule import jittered, retry_delay, stagger_offsets
from tenantsvc.runtime.actions import add_fields, traced
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.errors import DB_REFUSALS

POLL = ActionType(
    "tenantsvc:odds:poll", fields(sport=str), fields(outcome=str, consecutive_failures=int),
    "Fetch, parse and save one sport's odds; outcome is ok, a feed error kind, error, or stopped.",
)
UNEXPECTED = "error"
DB_UNAVAILABLE = "db_unavailable"  # the save was refused or failed: an expected degradation, no traceback
STOPPED = "stopped"
PERSISTENT_ATTEMPT = 64  # a backoff attempt large enough that the nominal delay is always the cap
WORKER_NAME = "worker_odds"  # the worker label of worker_ticks_total and worker_last_success_timestamp_seconds


def feed_error_kind(error: FeedError) -> str:
    """The bounded metric label of a feed error: its ``kind``, or ``error`` for a kind nobody declared."""
    kind = error.kind
    return kind if kind in FEED_ERROR_KINDS else UNEXPECTED


@dataclass
class _SportLoop:
    """One sport's timer, run in flight and health."""

    sport: str
    timer: Any = None  # IDelayedCall of the next run, or None while a run is in flight or when stopped
    in_flight: Deferred | None = None
    idle_waiters: list[Deferred] = field(default_factory=list)
    consecutive_failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    age_origin: float = 0.0  # the last success, or when the poller was built before the first


class OddsPoller(Service):
    """Polls every sport on its own staggered, jittered schedule with backoff; see the module docstring."""

    def __init__(self, sports: Sequence[str], ingest: Callable[[str], Awaitable[object]], *, clock: Any,
                 metrics: Metrics, period_s: float, backoff_base_s: float = 30, backoff_cap_s: float = 900,
                 random: Callable[[], float] = random_module.random):
        unknown = [sport for sport in sports if sport not in SPORTS]
        if unknown:
            raise ValueError(f"unknown sports (metric labels must stay bounded): {unknown!r}")
        self._offsets = stagger_offsets(sports, period_s)  # also refuses a sport named twice
        self.setName("odds-poller")
        self._ingest = ingest
        self._clock = clock
        self._metrics = metrics
        self._period_s = period_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._random = random
        built_at = clock.seconds()
        self._loops = {sport: _SportLoop(sport, age_origin=built_at) for sport in sports}
        metrics.worker_built(WORKER_NAME, built_at)
        zero(metrics.feed_errors, [(sport, kind) for sport in sports for kind in (*FEED_ERROR_KINDS, DB_UNAVAILABLE)])
        for sport, loop in self._loops.items():
            metrics.watch_odds_age(sport, self._age_of(loop))

    def _age_of(self, loop: _SportLoop) -> Callable[[], float]:
        """Seconds since ``loop``'s sport last succeeded (or since construction, before its first success)."""
        return lambda: self._clock.seconds() - loop.age_origin

    def startService(self) -> None:
        """Schedule each sport's first run at its stagger offset (the first sport at offset 0)."""
        super().startService()
        for sport, loop in self._loops.items():
            if loop.in_flight is None:  # a run left over from before a restart schedules its own successor
                self._schedule(loop, self._offsets[sport])

    def stopService(self) -> Deferred:
        """Cancel every pending run; the Deferred fires once the runs in flight have finished."""
        super().stopService()
        waiters = []
        for loop in self._loops.values():
            self._cancel_timer(loop)
            if loop.in_flight is not None:
                waiter: Deferred = Deferred()
                loop.idle_waiters.append(waiter)
                waiters.append(waiter)
        if not waiters:
            return succeed(None)
        return gatherResults(waiters).addCallback(lambda _: None)

    def describe(self) -> dict[str, dict[str, object]]:
        """Each sport's schedule and health, for /health/detailed.

        ``next_run_in_s`` (None while a run is in flight or the poller is stopped), ``in_flight``,
        ``consecutive_failures``, ``last_success`` (Unix time, or None before the first success) and
        ``last_error`` (the kind of the failure that ended the last run, None after a success).
        """
        now = self._clock.seconds()
        return {
            sport: {
                "next_run_in_s": loop.timer.getTime() - now if loop.timer is not None else None,
                "in_flight": loop.in_flight is not None,
                "consecutive_failures": loop.consecutive_failures,
                "last_success": loop.last_success,
                "last_error": loop.last_error,
            }
            for sport, loop in self._loops.items()
        }

    def _schedule(self, loop: _SportLoop, delay_s: float) -> None:
        """Make ``delay_s`` from now the sport's only pending run."""
        self._cancel_timer(loop)
        loop.timer = self._clock.callLater(delay_s, self._start_run, loop)

    @staticmethod
    def _cancel_timer(loop: _SportLoop) -> None:
        timer, loop.timer = loop.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _start_run(self, loop: _SportLoop) -> None:
        """Run the sport now unless its previous run is still in flight (that run schedules the next)."""
        loop.timer = None
        if loop.in_flight is not None:
            return
        run = traced(POLL(sport=loop.sport), lambda: self._run(loop))
        loop.in_flight = run
        run.addCallback(self._finish_run, loop).addErrback(write_failure)

    def _finish_run(self, next_delay_s: float | None, loop: _SportLoop) -> None:
        """Release the sport, wake a waiting ``stopService`` and, while running, schedule the next run."""
        loop.in_flight = None
        waiters, loop.idle_waiters = loop.idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self.running and next_delay_s is not None:
            self._schedule(loop, next_delay_s)

    async def _run(self, loop: _SportLoop) -> float | None:
        """One poll of one sport: never raises; returns the delay before the next run (None: do not rerun)."""
        started = self._clock.seconds()
        try:
            await self._ingest(loop.sport)
        except CancelledError:
            if not self.running:  # stopping: whoever cancelled meant it, and it is not a feed failure
                add_fields(outcome=STOPPED, consecutive_failures=loop.consecutive_failures)
                return None
            write_failure(Failure())
            delay = self._failed(loop, UNEXPECTED, None, retryable=True, started=started)
        except FeedError as error:
            delay = self._failed(loop, feed_error_kind(error), error.retry_after_s, retryable=error.retryable,
                                 started=started)
        except DB_REFUSALS:
            delay = self._failed(loop, DB_UNAVAILABLE, None, retryable=True, started=started)
        except Exception:
            write_failure(Failure())
            delay = self._failed(loop, UNEXPECTED, None, retryable=True, started=started)
        else:
            delay = self._succeeded(loop, started)
        add_fields(outcome=loop.last_error or "ok", consecutive_failures=loop.consecutive_failures)
        return delay

    def _succeeded(self, loop: _SportLoop, started: float) -> float:
        """Record a success; the next run comes one jittered period later."""
        now = self._clock.seconds()
        loop.consecutive_failures = 0
        loop.last_success = loop.age_origin = now
        loop.last_error = None
        self._metrics.feed_fetch_duration.labels(loop.sport).observe(now - started)
        self._metrics.odds_last_success.labels(loop.sport).set(now)
        self._metrics.record_worker_tick(WORKER_NAME, True, now)
        return jittered(self._period_s, self._random)

    def _failed(self, loop: _SportLoop, kind: str, retry_after_s: float | None, *, retryable: bool,
                started: float) -> float:
        """Record a failure; the next run comes after the backoff (and any Retry-After)."""
        loop.consecutive_failures += 1
        loop.last_error = kind
        self._metrics.feed_fetch_duration.labels(loop.sport).observe(self._clock.seconds() - started)
        self._metrics.feed_errors.labels(loop.sport, kind).inc()
        self._metrics.record_worker_tick(WORKER_NAME, False, self._clock.seconds())
        attempt = loop.consecutive_failures - 1 if retryable else PERSISTENT_ATTEMPT
        return retry_delay(attempt, retry_after_s, base_s=self._backoff_base_s, cap_s=self._backoff_cap_s,
                           random=self._random)
