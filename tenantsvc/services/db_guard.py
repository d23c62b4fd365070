"""The DB circuit breaker on the reactor: fed by the pool, visible in metrics and logs, and the way
services reach the DB by request class.

``DbBreaker`` wraps the pure ``tenantsvc.core.breaker.CircuitBreaker`` with an injected clock. It is
fed by the ``Database``: every finished interaction (an observer: connection errors and statement
timeouts are failures, any other answer from the DB is a success) and a pool sample every 0.25 s
(pressure). ``run(request_class, name, fn, *args)`` admits or refuses the call (``BreakerOpen``) and
bounds how long its caller waits, whatever the DB does:

- the wait for a connection (reads and writes alike): an interaction still waiting after
  ``conn_timeout_s`` is withdrawn — it never runs later — and ``PoolTimeout`` is raised;
- the whole call: after ``conn_timeout_s + statement_timeout_s + deadline_margin_s`` the caller gets
  ``DatabaseTimeout`` even if the interaction is still running (a frozen Postgres answers nothing,
  so ``statement_timeout`` cannot fire and the socket just hangs). Such a timeout counts as a breaker
  failure (TIMEOUT), so a frozen DB opens the breaker.

Two checks of its own, each a trivial query (``SELECT 1``) bounded by ``probe_timeout_s``:

- slow calls (resilience4j's slow-call rule, counted while they run): each sample names the
  interactions that have held a connection for ``slow_call_threshold_s`` or more; each counts once as a
  SLOW_CALL failure, and the first of them sends a *liveness check* (PgBouncer's ``server_check_query``).
  If the database does not answer it either, it is unresponsive (frozen, partitioned) and the breaker
  opens at once, within about one threshold plus one probe timeout; if it answers, the slow call was
  just slow and the check's success resets the count of consecutive failures;
- half-open: the breaker sends its own *probe* with the first sample after it goes half-open, and one
  per sample after that until it closes (or a probe fails), so recovery never waits for traffic and is
  never judged by background work (which is refused while half-open; see ``core.breaker``).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

from eliot import MessageType, fields
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.python.failure import Failure

from tenantsvc.core.storage_errors import DatabaseUnavailable, InteractionAbandoned, StatementTimeout
from tenantsvc.adapters.db.pool import PendingInteraction, PoolSnapshot, select_one_txn
from tenantsvc.core.breaker import (
    CLOSED,
    CONNECTION_ERROR,
    REQUEST_CLASSES,
    SLOW_CALL,
    STATE_CODES,
    TIMEOUT,
    UNRESPONSIVE,
    Admission,
    BreakerConfig,
    CircuitBreaker,
    Transition,
    retry_after_header_s,
)
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.runtime.bounded import on_timeout, wait_at_most
from tenantsvc.runtime.looping import GuardedLoop
from tenantsvc.services.breaker_view import describe_machine, record_transition, zero_openings
from tenantsvc.services.errors import BreakerOpen, DatabaseTimeout, PoolTimeout

T = TypeVar("T")

BREAKER_NAME = "db_pool"
SAMPLE_INTERVAL_S = 0.25
POOL_TIMEOUT_RETRY_AFTER_S = 2
DEADLINE_RETRY_AFTER_S = 2
DEADLINE_MARGIN_S = 0.5  # on top of conn wait + statement timeout: the error's way back, the rollback
DEFAULT_PROBE_TIMEOUT_S = 1.0  # the breaker's own checks, when slow-call detection is off
LIVENESS_CHECK, PROBE = "db_liveness_check", "db_breaker_probe"  # interaction names of the two checks
SAMPLER = "db_breaker_sampler"  # its worker label in worker_ticks_total (failed pool samples)
SUCCESS = "success"
MODES = ("open", "closed", "auto")

LATE_RESULT = MessageType(
    "tenantsvc:db:late_result",
    fields(name=str, outcome=str, elapsed_s=float),
    "An interaction finished after its caller had been answered DatabaseTimeout; its result was dropped.",
)
BREAKER_CHECK = MessageType(
    "tenantsvc:breaker:check",
    fields(breaker_name=str, check=str, outcome=str, slow_calls=list),
    "The breaker's own trivial query: a liveness check sent because calls were slow, or a half-open probe; "
    "outcome is answered, unanswered (timeout or connection error) or no_connection (pool busy).",
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

    def overdue(self, threshold_s: float) -> list[str]:
        """Names of running interactions that have held a connection ``threshold_s`` or more (each once)."""


def verdict(error: BaseException | None) -> str | None:
    """What an interaction's outcome says about the DB's health.

    SUCCESS when the DB answered (including refusals such as constraint violations or errors of the
    interaction's own logic), CONNECTION_ERROR or TIMEOUT when it failed, None when the interaction
    never reached it (withdrawn, abandoned, cancelled): no verdict.
    """
    if isinstance(error, DatabaseUnavailable):
        return CONNECTION_ERROR
    if isinstance(error, (StatementTimeout, DatabaseTimeout)):
        return TIMEOUT
    if isinstance(error, (InteractionAbandoned, CancelledError, PoolTimeout)):
        return None
    return SUCCESS


class DbBreaker(Service):
    """The per-process DB circuit breaker: a Service whose sampling loop runs while it is started."""

    def __init__(self, db: GuardedDatabase, clock: Any, metrics: Metrics, *, conn_timeout_s: float,
                 statement_timeout_s: float = 3.0, deadline_margin_s: float = DEADLINE_MARGIN_S,
                 config: BreakerConfig = BreakerConfig(), sample_interval_s: float = SAMPLE_INTERVAL_S,
                 slow_call_threshold_s: float = 0.0):
        if conn_timeout_s <= 0 or statement_timeout_s < 0 or deadline_margin_s < 0 or slow_call_threshold_s < 0:
            raise ValueError("conn_timeout_s must be positive, statement_timeout_s, deadline_margin_s and "
                             "slow_call_threshold_s >= 0")
        self.setName("db_breaker")
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._conn_timeout_s = conn_timeout_s
        # DB_STATEMENT_TIMEOUT=0 disables Postgres's statement_timeout: nothing bounds a statement, so
        # nothing bounds the call either (the connection wait stays bounded).
        self.deadline_s: float | None = (
            conn_timeout_s + statement_timeout_s + deadline_margin_s if statement_timeout_s > 0 else None)
        # 0 turns slow-call detection (and so the liveness check) off.
        self._slow_s: float | None = slow_call_threshold_s or None
        self.probe_timeout_s = slow_call_threshold_s or DEFAULT_PROBE_TIMEOUT_S
        self._checking = self._probing = False  # one liveness check and one dedicated probe at a time
        self.sampler = GuardedLoop(SAMPLER, self.sample, clock=clock, interval_s=sample_interval_s,
                                   on_outcome=self._sampled)
        self.machine = CircuitBreaker(config, self._transitioned)
        metrics.breaker_state.labels(BREAKER_NAME).set(STATE_CODES[self.machine.state])
        zero(metrics.breaker_checks, [(BREAKER_NAME, check, outcome) for check in (LIVENESS_CHECK, PROBE)
                                      for outcome in ("answered", "unanswered", "no_connection")])
        zero(metrics.breaker_rejections, [(BREAKER_NAME, request_class) for request_class in REQUEST_CLASSES])
        zero(metrics.worker_ticks, [(SAMPLER, "error")])
        zero_openings(metrics, BREAKER_NAME)  # only failed samples are counted
        db.add_observer(self._observe)

    # ---- service life --------------------------------------------------------------------------

    def startService(self) -> None:
        """Start sampling pool pressure (a first sample now, then every ``sample_interval_s``)."""
        super().startService()
        self.sampler.startService()

    def stopService(self) -> Any:
        """Stop sampling."""
        super().stopService()
        self.sampler.stopService()
        return None

    def sample(self) -> None:
        """One tick of ``sampler``: feed a pool sample, count new slow calls, send a half-open probe if due.

        The loop survives a failing tick: it is logged and counted in ``worker_ticks_total`` (``_sampled``).
        """
        now = self._clock.seconds()
        pool = self._db.snapshot()
        self.machine.observe_pressure(now, pool.in_use, pool.size, pool.waiting)
        self._count_slow_calls(now)
        self._probe_if_half_open()

    def _sampled(self, failure: Failure | None) -> None:
        """Only failed samples are counted (a success every 0.25 s would say nothing)."""
        if failure is not None:
            self._metrics.worker_ticks.labels(SAMPLER, "error").inc()

    def _count_slow_calls(self, now: float) -> None:
        """Each call newly past the slow-call threshold is a failure; the first ones send a liveness check."""
        if self._slow_s is None:
            return
        slow = self._db.overdue(self._slow_s)
        for name in slow:
            self._metrics.db_slow_calls.labels(name).inc()
            self.machine.record_failure(now, SLOW_CALL)
        if slow and not self._checking and self.machine.state == CLOSED:
            self._checking = True
            self._check(LIVENESS_CHECK, slow).addCallback(self._liveness_answered)

    def _liveness_answered(self, outcome: str) -> None:
        self._checking = False
        if outcome == "unanswered":
            self.machine.trip(self._clock.seconds(), UNRESPONSIVE)

    def _probe_if_half_open(self) -> None:
        """While half-open, keep one dedicated probe in flight (if a probe slot is free)."""
        if self._probing or not self.running:
            return
        probe = self.machine.try_acquire_probe(self._clock.seconds())
        if probe is None:
            return
        self._probing = True

        def answered(outcome_and_error: tuple[str, BaseException | None]) -> None:
            self._probing = False  # the next one goes with the next sample, not at once: never a tight loop
            self._report_probe(Admission(True, probe), outcome_and_error[1])

        self._check(PROBE, [], with_error=True).addCallback(answered)

    def _check(self, name: str, slow_calls: list[str], *, with_error: bool = False) -> Deferred:
        """Send the breaker's own ``SELECT 1`` bounded by ``probe_timeout_s``; fires with its outcome
        (answered, unanswered or no_connection) — and the error, with ``with_error``. Never fails."""

        async def ask() -> Any:
            pending = self._db.submit_interaction(name, select_one_txn)
            error: BaseException | None = None
            try:
                await self._bounded(pending, self.probe_timeout_s, self.probe_timeout_s)
                outcome = "answered"
            except Exception as failed:  # the outcome is the answer; nothing waits on this but the breaker
                error = failed
                outcome = "no_connection" if verdict(failed) is None else (
                    "answered" if verdict(failed) == SUCCESS else "unanswered")
            self._metrics.breaker_checks.labels(BREAKER_NAME, name, outcome).inc()
            BREAKER_CHECK.log(breaker_name=BREAKER_NAME, check=name, outcome=outcome, slow_calls=slow_calls)
            return (outcome, error) if with_error else outcome

        return ensureDeferred(ask())

    # ---- callers -------------------------------------------------------------------------------

    async def run(self, request_class: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(txn, *args)`` as interaction ``name`` if the breaker admits ``request_class``.

        Raises ``BreakerOpen`` when refused; ``PoolTimeout`` when no connection came within
        ``conn_timeout_s`` (the interaction was withdrawn and never runs); ``DatabaseTimeout`` when the
        interaction began but the DB had not answered by ``deadline_s`` after the call. In that last
        case the interaction cannot be interrupted in its pool thread: it finishes in the background,
        its late result is dropped (logged as ``tenantsvc:db:late_result``), and a write may commit
        after its caller was told 503. That is safe because write callers carry idempotency keys: the
        client's retry with the same key replays the committed result instead of applying it twice.

        Cancelling the call cancels the interaction with ``Database`` semantics (not run if it had not
        begun); callers that must finish a write whatever happens to their own caller ``shield`` it.
        """
        admission = self._admit(request_class)
        try:
            result = await self._bounded(self._db.submit_interaction(name, fn, *args), self._conn_timeout_s,
                                         self.deadline_s)
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

    def _bounded(self, pending: PendingInteraction, conn_timeout_s: float, deadline_s: float | None) -> Deferred:
        """What the caller awaits for ``pending``: its result, or ``PoolTimeout`` (no connection within
        ``conn_timeout_s``: withdrawn, it never runs) / ``DatabaseTimeout`` (no answer within ``deadline_s``;
        None: unbounded; the interaction runs on and its late result is logged, then dropped)."""
        clock, submitted_at = self._clock, self._clock.seconds()
        withdrawn = False

        def give_up_waiting() -> None:
            nonlocal withdrawn
            withdrawn = True  # set first: a successful withdraw() fails the Deferred at once
            withdrawn = pending.withdraw()

        def as_pool_timeout(failure: Failure) -> Failure:
            if withdrawn and failure.check(CancelledError):
                self._metrics.db_pool_timeouts.labels(pending.name).inc()
                return Failure(PoolTimeout(POOL_TIMEOUT_RETRY_AFTER_S, conn_timeout_s))
            return failure

        def past_deadline() -> BaseException:
            self._metrics.db_deadline_timeouts.labels(pending.name).inc()
            self.machine.record_failure(clock.seconds(), TIMEOUT)  # the observer only hears of it when it ends
            return DatabaseTimeout(DEADLINE_RETRY_AFTER_S, deadline_s or 0.0)

        def late(result: object) -> None:
            outcome = "success" if not isinstance(result, Failure) else type(result.value).__name__
            LATE_RESULT.log(name=pending.name, outcome=outcome, elapsed_s=round(clock.seconds() - submitted_at, 3))

        answer = pending.deferred
        on_timeout(clock, answer, conn_timeout_s, give_up_waiting)  # set before the deadline: fires first on a tie
        answer.addErrback(as_pool_timeout)
        return wait_at_most(clock, answer, deadline_s, past_deadline, late)

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
        """The breaker for ``/health/detailed``: state, mode, open reason, probes, open period, slow-call
        threshold and last transitions."""
        return {**describe_machine(BREAKER_NAME, self.machine, self._clock.seconds()),
                "slow_call_threshold_s": self._slow_s}

    # ---- feeds ---------------------------------------------------------------------------------

    def _observe(self, name: str, wait_s: float, hold_s: float, failure: Failure | None) -> None:
        outcome = verdict(None if failure is None else failure.value)
        now = self._clock.seconds()
        if outcome == SUCCESS:
            if self._slow_s is not None and hold_s >= self._slow_s:
                return  # a slow call is no proof of health (it was counted as slow while it ran)
            self.machine.record_success(now)
        elif outcome is not None:
            self.machine.record_failure(now, outcome)

    def _transitioned(self, transition: Transition) -> None:
        record_transition(self._metrics, BREAKER_NAME, transition)


class ClassifiedRunner:
    """``run_interaction`` through a ``DbBreaker`` as one request class, for services written against
    ``tenantsvc.adapters.db.pool.InteractionRunner``."""

    def __init__(self, breaker: DbBreaker, request_class: str):
        self._breaker = breaker
        self.request_class = request_class

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """``DbBreaker.run(request_class, name, fn, *args)`` as a Deferred."""
        return ensureDeferred(self._breaker.run(self.request_class, name, fn, *args))
