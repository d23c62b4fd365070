"""The ordered service tree (start in order, stop in reverse, one at a time) and the start-up heap freeze."""

from __future__ import annotations

import gc
from typing import Callable

from eliot import write_failure
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure


class OrderedMultiService(MultiService):
    """Starts children in the order added and stops them one at a time in reverse, waiting for each.

    ``before_stop`` callables run first (e.g. readiness turning 503, so the load balancer stops
    sending traffic before anything else stops).
    """

    def __init__(self) -> None:
        super().__init__()
        self.before_stop: list[Callable[[], object]] = []

    def stopService(self) -> Deferred:
        """Run ``before_stop``, then stop children last-to-first, each after the previous one stopped."""
        super(MultiService, self).stopService()
        for hook in self.before_stop:
            hook()
        return ensureDeferred(self._stop_in_reverse())

    async def _stop_in_reverse(self) -> None:
        for child in reversed(list(self)):
            try:
                stopping = child.stopService()
                if isinstance(stopping, Deferred):
                    await stopping
            except Exception:
                write_failure(Failure())


def freeze_start_up_heap(result: object = None) -> object:
    """Move every object alive after start-up out of the garbage collector's sight (``gc.freeze``).

    Modules, routes, the warmed cache and the service tree live for the whole process; without this,
    each full collection triggered by per-request garbage walks them all again (DESIGN §8: p99 30 → 9 ms).
    """
    gc.collect()
    gc.freeze()
    return result
