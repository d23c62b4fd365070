"""SingleFlight: shared execution, independent waiters, errors delivered to all and never cached."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, Deferred

from tenantsvc.runtime.singleflight import SingleFlight


def _work_counter():
    """Work functions that return Deferreds we fire by hand, counting executions."""
    started: list[Deferred] = []

    def work() -> Deferred:
        d: Deferred = Deferred()
        started.append(d)
        return d

    return work, started


def test_concurrent_callers_share_one_execution_and_each_gets_its_own_deferred():
    flight: SingleFlight[str] = SingleFlight()
    work, started = _work_counter()
    waiters = [flight.run("k", work) for _ in range(50)]
    assert len(started) == 1
    assert len({id(w) for w in waiters}) == 50
    assert flight.shared == 49
    started[0].callback("theme")
    assert [w.result for w in waiters] == ["theme"] * 50


def test_cancelling_one_waiter_does_not_cancel_the_shared_work():
    flight: SingleFlight[str] = SingleFlight()
    work, started = _work_counter()
    first, second = flight.run("k", work), flight.run("k", work)
    first.cancel()
    assert not started[0].called
    assert isinstance(first.result.value, CancelledError)
    first.addErrback(lambda f: None)
    started[0].callback("done")
    assert second.result == "done"


def test_error_reaches_every_current_waiter_and_is_not_cached():
    flight: SingleFlight[str] = SingleFlight()
    work, started = _work_counter()
    waiters = [flight.run("k", work) for _ in range(3)]
    started[0].errback(RuntimeError("db down"))
    for waiter in waiters:
        assert isinstance(waiter.result.value, RuntimeError)
        waiter.addErrback(lambda f: None)
    assert not flight.in_flight("k")
    retry = flight.run("k", work)
    assert len(started) == 2, "the failure must not be cached: a new call starts new work"
    started[1].callback("ok")
    assert retry.result == "ok"


def test_entry_removed_when_work_ends_so_later_calls_run_again():
    flight: SingleFlight[int] = SingleFlight()
    calls = []

    def work() -> int:
        calls.append(1)
        return len(calls)

    assert flight.run("k", work).result == 1
    assert flight.run("k", work).result == 2
    assert not flight.in_flight("k")


def test_different_keys_run_independently():
    flight: SingleFlight[str] = SingleFlight()
    work, started = _work_counter()
    a, b = flight.run("a", work), flight.run("b", work)
    assert len(started) == 2
    started[1].callback("b")
    assert b.result == "b" and not a.called


@pytest.mark.parametrize("raises", [True, False])
def test_synchronous_and_coroutine_work_are_supported(raises):
    flight: SingleFlight[str] = SingleFlight()

    async def work() -> str:
        if raises:
            raise ValueError("bad")
        return "value"

    result = flight.run("k", work)
    if raises:
        assert isinstance(result.result.value, ValueError)
        result.addErrback(lambda f: None)
    else:
        assert result.result == "value"
