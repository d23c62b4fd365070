"""A LoopingCall-based worker whose tick can never kill the loop: errors are logged, counted and survived."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from eliot import start_action, write_failure
from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall

from tenantsvc.obs.metrics import Metrics


class LoopingWorker(Service):
    """Runs ``tick()`` every ``interval_s`` on ``clock``; a tick still running delays the next one."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[Any]], *, clock: Any, interval_s: float,
                 metrics: Metrics, run_now: bool = True):
        self.setName(name)
        self._tick = tick
        self._clock = clock
        self._interval_s = interval_s
        self._metrics = metrics
        self._run_now = run_now
        self._loop: LoopingCall | None = None
        self.ticks = 0
        metrics.worker_built(name, clock.seconds())

    def startService(self) -> None:
        """Start the loop."""
        super().startService()
        self._loop = LoopingCall(self._guarded_tick)
        self._loop.clock = self._clock
        self._loop.start(self._interval_s, now=self._run_now)

    async def _run(self) -> None:
        with start_action(action_type="tenantsvc:worker:tick", worker=self.name):
            await self._tick()

    def _guarded_tick(self) -> Any:
        self.ticks += 1

        def succeeded(_: object) -> None:
            self._metrics.record_worker_tick(self.name, True, self._clock.seconds())

        def failed(failure: Any) -> None:
            write_failure(failure)
            self._metrics.record_worker_tick(self.name, False, self._clock.seconds())

        return ensureDeferred(self._run()).addCallbacks(succeeded, failed)

    def stopService(self) -> Any:
        """Stop the loop; waits for a tick in progress to finish."""
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            deferred = loop.deferred
            loop.stop()
            return deferred
        return None
