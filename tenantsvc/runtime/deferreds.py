"""Deferred helpers: relay a result into a waiter that may have fired already, shield work from cancellation.

Timers against Deferreds (timeouts, bounded waits) are in ``tenantsvc.runtime.bounded``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Coroutine, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

T = TypeVar("T")


def relay(result: object, waiter: Deferred) -> None:
    """Fire ``waiter`` with ``result`` (a value or a ``Failure``) unless it has fired already.

    A waiter that fired first was cancelled or timed out: the late result is dropped. Returns None, so
    used as the last callback of a source chain it leaves no unhandled failure behind.
    """
    if waiter.called:
        return None
    if isinstance(result, Failure):
        waiter.errback(result)
    else:
        waiter.callback(result)
    return None


def shield(inner: "Deferred[T]") -> "Deferred[T]":
    """Return a Deferred for ``inner``'s result whose cancellation does not cancel ``inner``.

    Used for work that must finish even when a waiter goes away (a client disconnecting from a DB
    write, one caller of a shared refresh giving up).
    """
    outer: "Deferred[T]" = Deferred()
    inner.addBoth(relay, outer)
    return outer


def as_deferred(awaitable: Awaitable[T]) -> "Deferred[T]":
    """``awaitable`` (a Deferred, a coroutine or any other awaitable) as a Deferred of its result."""
    if isinstance(awaitable, Deferred):
        return awaitable
    if isinstance(awaitable, Coroutine):
        return ensureDeferred(awaitable)
    return ensureDeferred(_awaited(awaitable))


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
