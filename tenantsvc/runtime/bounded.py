"""Bounded waits on a clock: the one place a timer is set against a Deferred.

Two ways of not waiting forever, both stopping their timer as soon as the work fires:

- ``on_timeout`` / ``with_timeout``: *stop the work* — after ``seconds`` call ``expire`` (by default
  ``work.cancel``), and the work's own chain says what the caller sees (CancelledError, or whatever the
  caller translates it to, knowing from ``Timeout.expired`` that the timer did it);
- ``wait_at_most``: *stop waiting* — after ``seconds`` the caller's waiter fails with the error ``give_up()``
  returns while the work carries on; its late result goes to ``on_late`` and is then dropped (never left
  as an unhandled failure). For work that cannot be interrupted, such as an interaction in a pool thread.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred

from tenantsvc.runtime.deferreds import relay

T = TypeVar("T")


class Timeout:
    """A timer set against one Deferred: ``expired`` tells the work's callbacks whether it went off."""

    __slots__ = ("expired", "_call", "_expire")

    def __init__(self, clock: Any, work: Deferred, seconds: float, expire: Callable[[], object]):
        self.expired = False
        self._expire = expire
        self._call = clock.callLater(seconds, self._go_off)
        work.addBoth(self._stop)

    def _go_off(self) -> None:
        self.expired = True  # set first: ``expire`` usually fires the work, whose callbacks read it
        self._expire()

    def _stop(self, result: object) -> object:
        if self._call.active():
            self._call.cancel()
        return result


def on_timeout(clock: Any, work: Deferred, seconds: float, expire: Callable[[], object] | None = None) -> Timeout:
    """Call ``expire()`` (default: ``work.cancel()``) if ``work`` has not fired after ``seconds`` on ``clock``.

    Returns the ``Timeout``; callbacks added to ``work`` afterwards can read its ``expired``.
    """
    return Timeout(clock, work, seconds, work.cancel if expire is None else expire)


def with_timeout(clock: Any, deferred: "Deferred[T]", seconds: float) -> "Deferred[T]":
    """Cancel ``deferred`` if it has not fired after ``seconds`` (callers then see CancelledError); returns it."""
    on_timeout(clock, deferred, seconds)
    return deferred


def wait_at_most(clock: Any, work: "Deferred[T]", seconds: float | None, give_up: Callable[[], BaseException],
                 on_late: Callable[[object], None] | None = None) -> "Deferred[T]":
    """A fresh Deferred of ``work``'s result that fails with ``give_up()`` if ``work`` has not fired after
    ``seconds`` (None: never gives up).

    ``work`` is not cancelled when the waiter gives up: it runs on, and its result (a value or a Failure)
    is passed to ``on_late`` when it comes, then dropped. Cancelling the waiter cancels ``work``; a result
    arriving after that is dropped silently. ``give_up`` runs only if the waiter has not fired yet, so
    whatever it counts or records happens once, and only when the caller really is given up on.
    """
    expired = False
    waiter: "Deferred[T]" = Deferred(lambda _: work.cancel())

    def expire() -> None:
        nonlocal expired
        if waiter.called:
            return
        expired = True
        waiter.errback(give_up())

    def settle(result: object) -> None:
        if waiter.called:
            if expired and on_late is not None:
                on_late(result)
            return None
        return relay(result, waiter)

    if seconds is not None:
        Timeout(clock, work, seconds, expire)
    work.addBoth(settle)
    return waiter
