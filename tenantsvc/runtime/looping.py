"""Fixed-period loops whose tick can never kill them: a failing tick is logged, reported and survived.

``GuardedLoop`` is the one LoopingCall of the service: it runs ``tick()`` every ``interval_s`` on the
injected clock, a tick still running (its Deferred unfired) delays the next one, and ``stopService`` waits
for a tick in progress. Each tick's outcome goes to ``on_outcome(failure_or_None)``; a failure is written to
the eliot log first, with its traceback, unless it is one of the ``expected`` errors (a database refusing
background work): those are one ``tenantsvc:loop:tick_refused`` message. ``LoopingWorker`` is that loop as a background worker: each tick one
``tenantsvc:worker:tick`` action, counted in ``worker_ticks_total`` with its last success timed.

Loops whose next run depends on how the last one went (backoff, jitter: ``workers.odds_poller``,
``services.redis_guard``) schedule themselves with ``callLater`` instead: a LoopingCall's period is fixed.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from eliot import Field, MessageType, start_action, write_failure
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from tenantsvc.runtime.actions import traced
from tenantsvc.obs.metrics import Metrics


TICK_REFUSED = MessageType(
    "tenantsvc:loop:tick_refused",
    [Field.for_types("loop", [str], "the loop's name"), Field.for_types("error", [str], "the exception type"),
     Field.for_types("reason", [str], "its message")],
    "A tick failed with an expected error (e.g. the database refused it): counted as a failure, no traceback.",
)

class GuardedLoop(Service):
    """Runs ``tick()`` (plain or returning a Deferred or awaitable) every ``interval_s`` on ``clock``."""

    def __init__(self, name: str, tick: Callable[[], Any], *, clock: Any, interval_s: float, run_now: bool = True,
                 on_outcome: Callable[[Failure | None], None] | None = None,
                 expected: tuple[type[BaseException], ...] = ()):
        self.setName(name)
        self._expected = expected  # failures that are a known degradation: one log line, no traceback
        self.loop_name = name  # ``name`` itself is typed Optional by Service
        self._tick = tick
        self._clock = clock
        self._interval_s = interval_s
        self._run_now = run_now
        self._on_outcome = on_outcome
        self._loop: LoopingCall | None = None
        self._stopped: Deferred | None = None  # fires when the loop has stopped
        self.ticks = 0

    @property
    def looping(self) -> bool:
        """True while the loop is scheduled (started and not stopped)."""
        return self._loop is not None and self._loop.running

    def startService(self) -> None:
        """Start the loop (its first tick now unless ``run_now`` is False)."""
        super().startService()
        self._loop = LoopingCall(self._guarded_tick)
        self._loop.clock = self._clock
        self._stopped = self._loop.start(self._interval_s, now=self._run_now)

    def stopService(self) -> Deferred | None:
        """Stop the loop; the Deferred fires once a tick in progress has finished."""
        super().stopService()
        loop, self._loop = self._loop, None
        stopped, self._stopped = self._stopped, None
        if loop is not None and loop.running:
            loop.stop()
            return stopped
        return None

    def _guarded_tick(self) -> Deferred:
        self.ticks += 1
        return maybeDeferred(self._tick).addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, _: object) -> None:
        if self._on_outcome is not None:
            self._on_outcome(None)

    def _failed(self, failure: Failure) -> None:
        if self._expected and failure.check(*self._expected):
            TICK_REFUSED.log(loop=self.loop_name, error=type(failure.value).__name__, reason=str(failure.value))
        else:
            write_failure(failure)
        if self._on_outcome is not None:
            self._on_outcome(failure)


class LoopingWorker(GuardedLoop):
    """A background worker: ``tick()`` every ``interval_s`` as one ``tenantsvc:worker:tick`` action.

    Its series exist from construction (``Metrics.worker_built``); each tick counts in
    ``worker_ticks_total`` by outcome, and a success moves ``worker_last_success_timestamp_seconds``.
    """

    def __init__(self, name: str, tick: Callable[[], Awaitable[Any]], *, clock: Any, interval_s: float,
                 metrics: Metrics, run_now: bool = True, expected: tuple[type[BaseException], ...] = ()):
        super().__init__(name, self._traced_tick, clock=clock, interval_s=interval_s, run_now=run_now,
                         on_outcome=self._record, expected=expected)
        self._work = tick
        self._metrics = metrics
        metrics.worker_built(name, clock.seconds())

    def _traced_tick(self) -> Deferred:
        return traced(start_action(action_type="tenantsvc:worker:tick", worker=self.loop_name), self._work)

    def _record(self, failure: Failure | None) -> None:
        self._metrics.record_worker_tick(self.loop_name, failure is None, self._clock.seconds())
