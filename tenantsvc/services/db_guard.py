"""The DB circuit breaker on the reactor: fed by the pool, visible in metrics and logs, and the way
services reach the DB by request class.

``DbBreaker`` wraps the pure ``tenantsvc.core.breaker.CircuitBreaker`` with an injected clock. It is
fed by the ``Database``: every finished interaction (an observer: connection errors and statement
timeouts are failures, any other answer from the DB is a success) and a pool sample every 0.25 s
(pressure). ``run(request_class, name, fn, *args)`` admits or refuses the call (``BreakerOpen``) and,
for a ``write``, bounds the wait for a connection: a write still waiting after ``conn_timeout_s`` is
withdrawn — it never runs later — and ``PoolTimeout`` is raised.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

from eliot import MessageType, fields, write_failure
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from tenantsvc.adapters.db.errors import DatabaseUnavailable, InteractionAbandoned, StatementTimeout
from tenantsvc.adapters.db.pool import PendingInteraction, PoolSnapshot
from tenantsvc.core.breaker import (
    CONNECTION_ERROR,
    REQUEST_CLASSES,
    STATE_CODES,
    TIMEOUT,
    WRITE,
    Admission,
    BreakerConfig,
    CircuitBreaker,
    Transition,
    retry_after_header_s,
)
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.errors import BreakerOpen, PoolTimeout

T = TypeVar("T")

BREAKER_NAME = "db_pool"
SAMPLE_INTERVAL_S = 0.25
POOL_TIMEOUT_RETRY_AFTER_S = 2
SUCCESS = "success"
MODES = ("open", "closed", "auto")

BREAKER_TRANSITION = MessageType(
    "tenantsvc:breaker:transition",
    fields(breaker_name=str, from_state=str, to_state=str, reason=str, detail=str),
    "The circuit breaker changed state; detail is the failure kind when failures caused it.",
)
BREAKER_MODE = MessageType(
    "tenantsvc:breaker:mode", fields(breaker_name=str, mode=str), "An operator set the breaker mode.",
)


class GuardedDatabase(Protocol):
    """What the breaker needs from ``tenantsvc.adapters.db.pool.Database``."""

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args)`` in one transaction."""

    def submit_interaction(self, name: str, fn: Callable[..., Any], *args: Any) -> PendingInteraction:
        """Like ``run_interaction``, returning a handle that can be withdrawn while it waits."""

    def snapshot(self) -> PoolSnapshot:
        """Pool size, connections in use and interactions waiting."""

    def add_observer(self, observer: Callable[[str, float, float, Failure | None], None]) -> None:
        """Be told ``(name, wait_s, hold_s, failure)`` after each interaction."""


def verdict(error: BaseException | None) -> str | None:
    """What an interaction's outcome says about the DB's health.

    SUCCESS when the DB answered (including refusals such as constraint violations or errors of the
    interaction's own logic), CONNECTION_ERROR or TIMEOUT when it failed, None when the interaction
    never reached it (withdrawn, abandoned, cancelled): no verdict.
    """
    if isinstance(error, DatabaseUnavailable):
        return CONNECTION_ERROR
    if isinstance(error, StatementTimeout):
        return TIMEOUT
    if isinstance(error, (InteractionAbandoned, CancelledError, PoolTimeout)):
        return None
    return SUCCESS


class DbBreaker(Service):
    """The per-process DB circuit breaker: a Service whose sampling loop runs while it is started."""

    name = "db_breaker"

    def __init__(self, db: GuardedDatabase, clock: Any, metrics: Metrics, *, conn_timeout_s: float,
                 config: BreakerConfig = BreakerConfig(), sample_interval_s: float = SAMPLE_INTERVAL_S):
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._conn_timeout_s = conn_timeout_s
        self._sample_interval_s = sample_interval_s
        self._loop: LoopingCall | None = None
        self.machine = CircuitBreaker(config, self._transitioned)
        metrics.breaker_state.labels(BREAKER_NAME).set(STATE_CODES[self.machine.state])
        db.add_observer(self._observe)

    # ---- service life --------------------------------------------------------------------------

    def startService(self) -> None:
        """Start sampling pool pressure."""
        super().startService()
        self._loop = LoopingCall(self.sample)
        self._loop.clock = self._clock
        self._loop.start(self._sample_interval_s, now=True)

    def stopService(self) -> Any:
        """Stop sampling."""
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        return None

    def sample(self) -> None:
        """Feed one pool sample to the breaker (the loop body: never raises, logs and counts instead)."""
        try:
            pool = self._db.snapshot()
            self.machine.observe_pressure(self._clock.seconds(), pool.in_use, pool.size, pool.waiting)
        except Exception:
            write_failure(Failure())
            self._metrics.worker_ticks.labels("db_breaker_sampler", "error").inc()

    # ---- callers -------------------------------------------------------------------------------

    async def run(self, request_class: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` as interaction ``name`` if the breaker admits ``request_class``.

        Raises ``BreakerOpen`` when refused; for a ``write``, ``PoolTimeout`` when no connection came
        within ``conn_timeout_s`` (the write was withdrawn and never runs). Cancelling the call cancels
        the interaction with ``Database`` semantics (not run if it had not begun); callers that must
        finish a write whatever happens to their own caller ``shield`` it.
        """
        admission = self._admit(request_class)
        try:
            if request_class == WRITE:
                result = await self._bounded(self._db.submit_interaction(name, fn, *args))
            else:
                result = await self._db.run_interaction(name, fn, *args)
        except BaseException as error:  # re-raised: only the probe's outcome is noted
            self._report_probe(admission, error)
            raise
        self._report_probe(admission, None)
        return result

    def runner(self, request_class: str) -> "ClassifiedRunner":
        """A drop-in ``InteractionRunner`` whose every interaction goes through ``run`` as ``request_class``."""
        if request_class not in REQUEST_CLASSES:
            raise ValueError(f"request_class must be one of {REQUEST_CLASSES}, got {request_class!r}")
        return ClassifiedRunner(self, request_class)

    def _admit(self, request_class: str) -> Admission:
        """Admit ``request_class`` now or raise ``BreakerOpen`` (counted); ``run`` reports any probe back."""
        now = self._clock.seconds()
        admission = self.machine.allow(now, request_class)
        if not admission:
            self._metrics.breaker_rejections.labels(BREAKER_NAME, request_class).inc()
            raise BreakerOpen(retry_after_header_s(self.machine.retry_after_s(now)), self.machine.open_reason)
        return admission

    async def _bounded(self, pending: PendingInteraction) -> Any:
        withdrawn = False

        def give_up() -> None:
            nonlocal withdrawn
            withdrawn = True  # set first: a successful withdraw() fails the Deferred, resuming us, at once
            withdrawn = pending.withdraw()

        timer = self._clock.callLater(self._conn_timeout_s, give_up)
        try:
            return await pending.deferred
        except CancelledError:
            if not withdrawn:
                raise
            self._metrics.db_pool_timeouts.labels(pending.name).inc()
            raise PoolTimeout(POOL_TIMEOUT_RETRY_AFTER_S, self._conn_timeout_s) from None
        finally:
            if timer.active():
                timer.cancel()

    def _report_probe(self, admission: Admission, error: BaseException | None) -> None:
        probe = admission.probe
        if probe is None:
            return
        now, outcome = self._clock.seconds(), verdict(error)
        if outcome == SUCCESS:
            self.machine.probe_succeeded(now, probe)
        elif outcome is None:
            self.machine.probe_abandoned(now, probe)
        else:
            self.machine.probe_failed(now, probe, outcome)

    # ---- operators -----------------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """``open`` / ``closed`` pin the breaker until ``auto`` hands it back to the rules."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        now = self._clock.seconds()
        {"open": self.machine.force_open, "closed": self.machine.force_closed, "auto": self.machine.auto}[mode](now)
        BREAKER_MODE.log(breaker_name=BREAKER_NAME, mode=mode)

    def describe(self) -> dict[str, Any]:
        """The breaker for ``/health/detailed``: state, mode, open reason, probes and last transitions."""
        machine = self.machine
        machine.advance(self._clock.seconds())
        return {
            "name": BREAKER_NAME,
            "state": machine.state,
            "mode": machine.mode,
            "open_reason": machine.open_reason,
            "probes_in_flight": machine.probes_in_flight,
            "transitions": [
                {"at": t.at, "from": t.from_state, "to": t.to_state, "reason": t.reason, "detail": t.detail}
                for t in machine.transitions
            ],
        }

    # ---- feeds ---------------------------------------------------------------------------------

    def _observe(self, name: str, wait_s: float, hold_s: float, failure: Failure | None) -> None:
        outcome = verdict(None if failure is None else failure.value)
        now = self._clock.seconds()
        if outcome == SUCCESS:
            self.machine.record_success(now)
        elif outcome is not None:
            self.machine.record_failure(now, outcome)

    def _transitioned(self, transition: Transition) -> None:
        self._metrics.breaker_state.labels(BREAKER_NAME).set(STATE_CODES[transition.to_state])
        self._metrics.breaker_transitions.labels(
            BREAKER_NAME, transition.from_state, transition.to_state, transition.reason).inc()
        BREAKER_TRANSITION.log(breaker_name=BREAKER_NAME, from_state=transition.from_state,
                               to_state=transition.to_state, reason=transition.reason, detail=transition.detail)


class ClassifiedRunner:
    """``run_interaction`` through a ``DbBreaker`` as one request class, for services written against
    ``tenantsvc.adapters.db.pool.InteractionRunner``."""

    def __init__(self, breaker: DbBreaker, request_class: str):
        self._breaker = breaker
        self.request_class = request_class

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """``DbBreaker.run(request_class, name, fn, *args)`` as a Deferred."""
        return ensureDeferred(self._breaker.run(self.request_class, name, fn, *args))
