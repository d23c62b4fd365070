"""runtime.bounded on a Clock: timeouts that stop the work, waits that stop waiting, late results dropped."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tenantsvc.runtime.bounded import on_timeout, wait_at_most, with_timeout


class GaveUp(Exception):
    pass


def outcome(deferred: Deferred) -> list[object]:
    seen: list[object] = []
    deferred.addBoth(seen.append)
    return seen


def test_with_timeout_cancels_work_that_does_not_fire_in_time():
    clock, work = Clock(), Deferred()
    seen = outcome(with_timeout(clock, work, 2.0))
    clock.advance(1.9)
    assert seen == []
    clock.advance(0.1)
    assert isinstance(seen[0], Failure) and seen[0].check(CancelledError)


def test_work_that_fires_in_time_stops_the_timer():
    clock, work = Clock(), Deferred()
    timeout = on_timeout(clock, work, 2.0)
    work.callback("answer")
    assert clock.getDelayedCalls() == [] and not timeout.expired
    assert outcome(work) == ["answer"]


def test_a_custom_expiry_runs_instead_of_cancel_and_callbacks_see_expired():
    clock, work = Clock(), Deferred()
    reasons: list[str] = []
    timeout = on_timeout(clock, work, 1.0, lambda: (reasons.append("timeout"), work.errback(GaveUp())))
    seen: list[bool] = []
    work.addErrback(lambda failure: seen.append(timeout.expired))
    clock.advance(1.0)
    assert reasons == ["timeout"] and seen == [True]


def test_wait_at_most_relays_an_answer_in_time():
    clock, work = Clock(), Deferred()
    seen = outcome(wait_at_most(clock, work, 3.0, GaveUp))
    work.callback(42)
    assert seen == [42] and clock.getDelayedCalls() == []


def test_wait_at_most_gives_up_without_cancelling_the_work_and_hands_its_late_result_over():
    clock, work = Clock(), Deferred(lambda _: pytest.fail("the work must not be cancelled"))
    late: list[object] = []
    given_up: list[int] = []

    def give_up() -> BaseException:
        given_up.append(1)
        return GaveUp()

    seen = outcome(wait_at_most(clock, work, 3.0, give_up, late.append))
    clock.advance(3.0)
    assert isinstance(seen[0], Failure) and seen[0].check(GaveUp) and given_up == [1]
    work.errback(RuntimeError("finished at last"))  # no unhandled failure is left behind
    assert len(late) == 1 and isinstance(late[0], Failure) and late[0].check(RuntimeError)
    assert work.result is None


def test_cancelling_the_waiter_cancels_the_work_and_never_gives_up_later():
    clock, work = Clock(), Deferred()
    late: list[object] = []
    waiter = wait_at_most(clock, work, 3.0, lambda: pytest.fail("gave up after a cancel"), late.append)
    seen = outcome(waiter)
    waiter.cancel()
    clock.advance(5.0)
    assert isinstance(seen[0], Failure) and seen[0].check(CancelledError)
    assert work.result is None and late == []  # the work's CancelledError was dropped, not late


def test_no_limit_never_gives_up():
    clock, work = Clock(), Deferred()
    seen = outcome(wait_at_most(clock, work, None, lambda: pytest.fail("gave up")))
    clock.advance(10_000)
    assert seen == [] and clock.getDelayedCalls() == []
    work.callback("eventually")
    assert seen == ["eventually"]
