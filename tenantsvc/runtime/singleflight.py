"""Per-process request coalescing on Deferreds: concurrent callers for one key share one execution.

Each caller gets its own Deferred, so one caller cancelling never cancels the shared work; an error
reaches every current waiter and is never cached; the key is forgotten as soon as the work ends.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, Hashable, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred

from tenantsvc.runtime.deferreds import as_deferred, relay

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Coalesces concurrent calls per key; ``shared`` counts callers that joined an execution in flight."""

    def __init__(self, on_shared: Callable[[], None] | None = None) -> None:
        self._waiters: dict[Hashable, list[Deferred]] = {}
        self._on_shared = on_shared
        self.executions = 0
        self.shared = 0

    def in_flight(self, key: Hashable) -> bool:
        """True while work for ``key`` is running."""
        return key in self._waiters

    def run(self, key: Hashable, work: Callable[[], Awaitable[T] | T]) -> "Deferred[T]":
        """Run ``work()`` unless an execution for ``key`` is already in flight; either way wait for its result."""
        waiter: Deferred = Deferred(self._forget_waiter(key))
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.append(waiter)
            self.shared += 1
            if self._on_shared is not None:
                self._on_shared()
            return waiter
        self._waiters[key] = [waiter]
        self.executions += 1
        shared_work = maybeDeferred(_start, work)
        shared_work.addBoth(self._deliver, key)
        return waiter

    def _forget_waiter(self, key: Hashable) -> Callable[[Deferred], None]:
        def cancel(waiter: Deferred) -> None:
            waiters = self._waiters.get(key)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

        return cancel

    def _deliver(self, result: Any, key: Hashable) -> None:
        for waiter in self._waiters.pop(key, []):
            relay(result, waiter)
        return None  # the shared Deferred ends here: its failure was delivered, not left unhandled


def _start(work: Callable[[], Any]) -> Any:
    result = work()
    return as_deferred(result) if hasattr(result, "__await__") else result
