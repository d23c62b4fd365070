"""``CachedProbe`` on a ``task.Clock``: one probe per period whatever the callers, shared while in flight, ages told."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from tenantsvc.services.probe_cache import CACHE, IN_FLIGHT, RUN, CachedProbe
from tests.support.web_harness import fired


class Probe:
    """A probe whose runs are counted; ``hold()`` makes the next runs wait until ``release()``."""

    def __init__(self) -> None:
        self.runs = 0
        self.pending: list[Deferred] = []
        self.holding = False

    def __call__(self) -> Deferred:
        self.runs += 1
        if self.holding:
            waiting: Deferred = Deferred()
            self.pending.append(waiting)
            return waiting
        return succeed(f"reading {self.runs}")

    def release(self) -> None:
        self.holding = False
        for waiting in self.pending:
            waiting.callback(f"reading {self.runs}")


def cached(max_age_s: float = 5.0) -> tuple[CachedProbe, Probe, Clock, list[str]]:
    clock, probe, sources = Clock(), Probe(), []
    clock.advance(100.0)
    return CachedProbe("database", clock, probe, max_age_s, sources.append), probe, clock, sources


def test_callers_within_the_period_get_the_cached_reading_with_its_age():
    cache, probe, clock, sources = cached()
    first = fired(cache.get())
    clock.advance(4.999)
    again = fired(cache.get())
    assert probe.runs == 1 and again is first
    assert (again.value, again.taken_at, again.age_s(clock.seconds())) == ("reading 1", 100.0, pytest.approx(4.999))
    assert sources == [RUN, CACHE]


def test_the_first_caller_after_the_period_runs_a_new_probe():
    cache, probe, clock, _ = cached()
    fired(cache.get())
    clock.advance(5.0)
    assert fired(cache.get()).value == "reading 2"
    assert probe.runs == 2


def test_a_thousand_calls_over_ten_seconds_cost_two_probes():
    cache, probe, clock, sources = cached()
    for _ in range(1000):
        fired(cache.get())
        clock.advance(0.01)
    assert probe.runs == 2
    assert sources.count(RUN) == 2 and sources.count(CACHE) == 998


def test_concurrent_callers_share_the_probe_in_flight_and_one_cancelling_changes_nothing():
    cache, probe, clock, sources = cached()
    probe.holding = True
    waiters = [cache.get() for _ in range(50)]
    assert probe.runs == 1 and sources == [RUN] + [IN_FLIGHT] * 49
    waiters[0].cancel()
    waiters[0].addErrback(lambda failure: None)
    clock.advance(1.0)
    probe.release()
    readings = [fired(waiter) for waiter in waiters[1:]]
    assert {reading.value for reading in readings} == {"reading 1"}
    assert readings[0].taken_at == 101.0, "a reading is dated when the probe answered"
    assert fired(cache.get()) is readings[0]


def test_a_probe_that_raises_reaches_its_callers_and_is_not_cached():
    clock, runs = Clock(), []

    def broken() -> Deferred:
        runs.append(1)
        raise RuntimeError("probe bug")

    cache: CachedProbe[Any] = CachedProbe("redis", clock, broken, 5.0)
    with pytest.raises(RuntimeError):
        fired(cache.get())
    with pytest.raises(RuntimeError):
        fired(cache.get())
    assert len(runs) == 2


def test_a_clock_step_backwards_makes_the_reading_stale_not_eternal():
    cache, probe, clock, _ = cached()
    fired(cache.get())
    clock.rightNow -= 60.0
    assert fired(cache.get()).value == "reading 2"


def test_a_zero_period_probes_every_call_but_still_shares_one_in_flight():
    cache, probe, clock, _ = cached(max_age_s=0.0)
    fired(cache.get())
    fired(cache.get())
    assert probe.runs == 2
    probe.holding = True
    waiters = [cache.get(), cache.get()]
    assert probe.runs == 3
    probe.release()
    assert [fired(waiter).value for waiter in waiters] == ["reading 3"] * 2
