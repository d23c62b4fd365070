"""Small Deferred helpers shared by adapters and services."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


def shield(inner: "Deferred[T]") -> "Deferred[T]":
    """Return a Deferred for ``inner``'s result whose cancellation does not cancel ``inner``.

    Used for work that must finish even when a waiter goes away (a client disconnecting from a DB
    write, one caller of a shared refresh giving up).
    """
    outer: "Deferred[T]" = Deferred()

    def relay(result: object) -> None:
        if outer.called:  # the waiter cancelled: the result is dropped, never left unhandled
            return None
        if isinstance(result, Failure):
            outer.errback(result)
        else:
            outer.callback(result)  # type: ignore[arg-type]
        return None

    inner.addBoth(relay)
    return outer


def with_timeout(clock: Any, deferred: Deferred, seconds: float) -> Deferred:
    """Cancel ``deferred`` if it has not fired after ``seconds`` (callers then see CancelledError)."""
    timer = clock.callLater(seconds, deferred.cancel)

    def stop_timer(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    return deferred.addBoth(stop_timer)
