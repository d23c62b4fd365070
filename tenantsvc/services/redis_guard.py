"""The Redis circuit breaker on the reactor: every Redis call of this process goes through it.

``RedisBreaker`` wraps the pure ``tenantsvc.core.breaker.CircuitBreaker`` with an injected clock and
guards a ``RedisClient`` (``protect``). It sees every call's verdict (``adapters.redis.verdict``: a
timeout or a connection error is a failure, any reply — a script error included — a success) and opens
after ``consecutive_failures`` of them in a row (or the failure rate over the window). While it is not
closed, every call fails at once with ``RedisCircuitOpen`` (a ``RedisUnavailable`` carrying the rest of
the open period as ``retry_after_s``), so nothing waits on a Redis that does not answer:

- session-backed routes answer 503 + Retry-After at once, the fleet rate limiters fail open to their
  local buckets at once, the theme cache skips L2 at once, theme publishes wait for their retry;
- when it opens, the calls still waiting on Redis are failed the same way instead of waiting out their
  own timeouts, so a request never waits on Redis longer than about one ``REDIS_TIMEOUT``.

Recovery is a dedicated probe, never a player's request: once the open period is over the breaker goes
half-open and sends one PING at a time outside the guard (``RedisClient.check``) with its own timeout,
so a hung connection cannot leave it stuck. ``half_open_successes_to_close`` PINGs in a row,
``probe_interval_s`` apart, close it (hysteresis); a failed one reopens it for a longer period
(``open_backoff_factor``, capped at ``open_duration_max_s``, reset on close), so a long outage costs one
PING per open period. This is HikariCP's connection validation (a cheap query with its own timeout before
trusting the connection again) driven by resilience4j's breaker (consecutive/rate thresholds, a fixed
number of half-open calls, an exponentially growing wait in the open state).

Visible as ``circuit_breaker_state{breaker_name="redis"}``, ``circuit_breaker_transitions_total``,
``circuit_breaker_rejections_total{request_class=<Redis command>}`` (calls refused unsent),
``redis_call_failures_total{kind}``, eliot ``tenantsvc:breaker:transition`` and ``tenantsvc:redis:probe``
messages, and the ``redis:circuitBreaker`` check of ``/health/detailed`` (``describe``).
"""

from __future__ import annotations

from typing import Any

from eliot import MessageType, fields
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from tenantsvc.adapters.redis import SUCCESS, RedisCircuitOpen, RedisClient
from tenantsvc.core.breaker import (
    CLOSED,
    CONNECTION_ERROR,
    HALF_OPEN,
    OPEN,
    STATE_CODES,
    TIMEOUT,
    BreakerConfig,
    CircuitBreaker,
    Probe,
    Transition,
    retry_after_header_s,
)
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.breaker_view import describe_machine, record_transition, zero_openings

BREAKER_NAME = "redis"
PROBE_INTERVAL_S = 0.1
# A hung Redis costs every caller a full timeout, so open after three in a row; probe after 1 s, doubling
# to at most 5 s while it stays down; close after three PINGs in a row answer.
DEFAULT_CONSECUTIVE_FAILURES = 3
DEFAULT_OPEN_S = 1.0
DEFAULT_OPEN_MAX_S = 5.0
OPEN_BACKOFF_FACTOR = 2.0
SUCCESSES_TO_CLOSE = 3

PROBED = MessageType(
    "tenantsvc:redis:probe", fields(verdict=str, elapsed_ms=float, state=str),
    "A half-open Redis breaker sent one PING; verdict success, timeout, connection_error or abandoned, and the "
    "breaker's state after it.")
RELEASED = MessageType(
    "tenantsvc:redis:released", fields(calls=int),
    "The Redis breaker opened: the calls still waiting on Redis were failed at once instead of at their timeout.")


def redis_breaker_config(consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES, open_s: float = DEFAULT_OPEN_S,
                         open_max_s: float = DEFAULT_OPEN_MAX_S) -> BreakerConfig:
    """The Redis breaker's rules: one probe at a time, ``SUCCESSES_TO_CLOSE`` to close, a backed-off open period."""
    return BreakerConfig(consecutive_failures=consecutive_failures, open_duration_s=open_s,
                         open_backoff_factor=OPEN_BACKOFF_FACTOR, open_duration_max_s=max(open_s, open_max_s),
                         half_open_max_probes=1, half_open_successes_to_close=SUCCESSES_TO_CLOSE)


class RedisBreaker(Service):
    """The per-process Redis circuit breaker: the ``CallGuard`` of one ``RedisClient`` and its prober.

    It works from construction on; ``stopService`` cancels its timers and any probe in flight and stops probing.
    """

    name = "redis_breaker"  # type: ignore[assignment]  # Twisted declares Service.name = None

    def __init__(self, clock: Any, metrics: Metrics, *, probe_timeout_s: float,
                 config: BreakerConfig | None = None, probe_interval_s: float = PROBE_INTERVAL_S):
        if probe_timeout_s <= 0 or probe_interval_s < 0:
            raise ValueError("probe_timeout_s must be positive and probe_interval_s not negative")
        self._clock = clock
        self._metrics = metrics
        self.probe_timeout_s = probe_timeout_s
        self._probe_interval_s = probe_interval_s
        self._check: Any = None  # RedisClient.check of the protected client
        self._waiting: dict[Deferred, str] = {}  # calls sent and not finished → their command
        self._cooldown: Any = None  # IDelayedCall: the end of the open period
        self._next_probe: Any = None  # IDelayedCall
        self._probing: Deferred | None = None
        self._stopped = False
        self.machine = CircuitBreaker(config or redis_breaker_config(), self._transitioned)
        metrics.breaker_state.labels(BREAKER_NAME).set(STATE_CODES[self.machine.state])
        zero(metrics.redis_call_failures, [(TIMEOUT,), (CONNECTION_ERROR,)])
        zero_openings(metrics, BREAKER_NAME)

    def protect(self, client: RedisClient) -> None:
        """Guard every call of ``client`` and probe Redis through its ``check``."""
        client.guard = self
        self._check = client.check

    # ---- the CallGuard of the client -------------------------------------------------------------

    def refusal(self, command: str) -> RedisCircuitOpen | None:
        """None while closed; else the error the call fails with at once (counted as a rejection)."""
        refused = self.refusing(command)
        if refused is not None:
            self._metrics.breaker_rejections.labels(BREAKER_NAME, command).inc()
        return refused

    def refusing(self, command: str = "any call") -> RedisCircuitOpen | None:
        """None while closed; else the error a call would fail with now (nothing counted)."""
        self.machine.advance(self._clock.seconds())
        if self.machine.state == CLOSED:
            return None
        return RedisCircuitOpen(command, self.retry_after_s())

    def sent(self, waiter: Deferred, command: str) -> None:
        """Remember a call in flight, to fail it at once if the breaker opens before it ends."""
        self._waiting[waiter] = command

    def finished(self, waiter: Deferred, verdict: str | None) -> None:
        """Feed one call's verdict to the breaker (failures are counted in ``redis_call_failures_total``)."""
        self._waiting.pop(waiter, None)
        now = self._clock.seconds()
        if verdict == SUCCESS:
            self.machine.record_success(now)
        elif verdict in (TIMEOUT, CONNECTION_ERROR):
            self._metrics.redis_call_failures.labels(verdict).inc()
            self.machine.record_failure(now, verdict)

    # ---- what others read ------------------------------------------------------------------------

    def retry_after_s(self) -> int:
        """Whole seconds a refused caller should wait: the rest of the open period (at least 1)."""
        return retry_after_header_s(self.machine.retry_after_s(self._clock.seconds()))

    def describe(self) -> dict[str, Any]:
        """The breaker for ``/health/detailed``: state, open reason and period, Retry-After, probes, transitions."""
        described = describe_machine(BREAKER_NAME, self.machine, self._clock.seconds())
        described["open_duration_s"] = self.machine.open_duration_s
        described["retry_after_s"] = None if self.machine.state == CLOSED else self.retry_after_s()
        return described

    # ---- service life ----------------------------------------------------------------------------

    def startService(self) -> None:
        """Probe again if it was stopped while not closed."""
        super().startService()
        self._stopped = False
        self.machine.advance(self._clock.seconds())
        if self.machine.state == OPEN:
            self._schedule_cooldown(self.machine.transitions[-1].at)
        elif self.machine.state == HALF_OPEN:
            self._schedule_probe(0.0)

    def stopService(self) -> Any:
        """Cancel the timers and any probe in flight; stop probing."""
        super().stopService()
        self._stopped = True
        for timer in (self._cooldown, self._next_probe):
            if timer is not None and timer.active():
                timer.cancel()
        self._cooldown = self._next_probe = None
        if self._probing is not None:
            self._probing.cancel()
        return None

    # ---- transitions and probes ------------------------------------------------------------------

    def _transitioned(self, transition: Transition) -> None:
        record_transition(self._metrics, BREAKER_NAME, transition)
        if transition.to_state == OPEN:
            self._release_waiting()
            self._schedule_cooldown(transition.at)
        elif transition.to_state == HALF_OPEN:
            self._schedule_probe(0.0)

    def _release_waiting(self) -> None:
        """Fail every call still waiting on Redis now: it would only wait out its timeout."""
        waiting, self._waiting = self._waiting, {}
        retry_after_s = self.retry_after_s()
        released = 0
        for waiter, command in waiting.items():
            if not waiter.called:
                released += 1
                waiter.errback(RedisCircuitOpen(command, retry_after_s))
        if released:
            RELEASED.log(calls=released)

    def _schedule_cooldown(self, opened_at: float) -> None:
        if self._stopped:
            return
        if self._cooldown is not None and self._cooldown.active():
            self._cooldown.cancel()
        ends_at = opened_at + self.machine.open_duration_s
        self._cooldown = self._clock.callLater(max(0.0, ends_at - self._clock.seconds()), self._end_cooldown)

    def _end_cooldown(self) -> None:
        self._cooldown = None
        self.machine.advance(self._clock.seconds())  # → HALF_OPEN, which schedules the first probe

    def _schedule_probe(self, delay_s: float) -> None:
        if self._stopped or self._check is None or (self._next_probe is not None and self._next_probe.active()):
            return
        self._next_probe = self._clock.callLater(delay_s, self._probe)

    def _probe(self) -> None:
        self._next_probe = None
        probe = self.machine.try_acquire_probe(self._clock.seconds())
        if probe is None or self._stopped:
            if probe is not None:
                self.machine.probe_abandoned(self._clock.seconds(), probe)
            return
        started = self._clock.seconds()
        probing = self._probing = self._check(self.probe_timeout_s)
        probing.addCallback(self._probed, probe, started)

    def _probed(self, verdict: str | None, probe: Probe, started: float) -> None:
        self._probing = None
        now = self._clock.seconds()
        if verdict == SUCCESS:
            self.machine.probe_succeeded(now, probe)
        elif verdict in (TIMEOUT, CONNECTION_ERROR):
            self._metrics.redis_call_failures.labels(verdict).inc()
            self.machine.probe_failed(now, probe, verdict)
        else:
            self.machine.probe_abandoned(now, probe)
        PROBED.log(verdict=verdict or "abandoned", elapsed_ms=round((now - started) * 1000, 3),
                   state=self.machine.state)
        if self.machine.state == HALF_OPEN:  # not closed yet: the next PING, a little later
            self._schedule_probe(self._probe_interval_s)
