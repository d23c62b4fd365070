"""The pure DB circuit breaker: a table of transitions, the admission matrix, and hypothesis invariants."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tenantsvc.core.breaker import (
    AUTO,
    CLOSED,
    CONNECTION_ERROR,
    COOLDOWN,
    FAILURES,
    FORCED,
    FORCED_CLOSED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    PRESSURE,
    PROBE_FAILED,
    BACKGROUND,
    READ,
    RECOVERED,
    REQUEST_CLASSES,
    STATES,
    TIMEOUT,
    UNRESPONSIVE,
    WRITE,
    BreakerConfig,
    CircuitBreaker,
    Probe,
    Transition,
    retry_after_header_s,
)

CALM = (0, 20, 0)  # in_use, size, waiting: an idle pool of 20


def apply(breaker: CircuitBreaker, steps: list[tuple[Any, ...]]) -> list[Probe]:
    """Drive ``breaker`` through ``steps``; returns the probes still held (acquired, not reported).

    Steps: ("pressure", now, in_use, size, waiting), ("fail", now, kind), ("ok", now), ("at", now),
    ("probe", now) acquires one, ("probe_ok"|"probe_fail"|"probe_gone", now) reports the oldest held,
    ("force_open"|"force_closed"|"auto", now).
    """
    held: list[Probe] = []
    for op, now, *args in steps:
        if op == "pressure":
            breaker.observe_pressure(now, *args)
        elif op == "fail":
            breaker.record_failure(now, *args)
        elif op == "ok":
            breaker.record_success(now)
        elif op == "at":
            breaker.advance(now)
        elif op == "probe":
            probe = breaker.try_acquire_probe(now)
            assert probe is not None, f"no probe slot at {now}"
            held.append(probe)
        elif op == "probe_ok":
            breaker.probe_succeeded(now, held.pop(0))
        elif op == "probe_fail":
            breaker.probe_failed(now, held.pop(0), TIMEOUT)
        elif op == "probe_gone":
            breaker.probe_abandoned(now, held.pop(0))
        else:
            getattr(breaker, op)(now)
    return held


def fails(count: int, start: float = 0.0, kind: str = CONNECTION_ERROR) -> list[tuple[Any, ...]]:
    """``count`` failures, 10 ms apart from ``start``."""
    return [("fail", start + n / 100, kind) for n in range(count)]


def oks(count: int, start: float = 0.0) -> list[tuple[Any, ...]]:
    """``count`` successes, 10 ms apart from ``start``."""
    return [("ok", start + n / 100) for n in range(count)]


OPEN_ON_PRESSURE = [("pressure", 0.0, 17, 20, 0)]
OPEN_ON_FAILURES = fails(5)
HALF_OPEN_AFTER_PRESSURE = OPEN_ON_PRESSURE + [("pressure", 5.0, *CALM)]
RATE_ONLY = {"consecutive_failures": 1000}  # isolate the failure-rate rule

TRANSITIONS = [
    # id, config overrides, steps, expected state, expected reason of the last transition
    ("idle_stays_closed", {}, [("pressure", 0.0, *CALM)], CLOSED, None),
    ("just_below_both_thresholds_stays_closed", {}, [("pressure", 0.0, 16, 20, 4)], CLOSED, None),
    ("usage_at_85_percent_opens", {}, [("pressure", 0.0, 17, 20, 0)], OPEN, PRESSURE),
    ("five_waiting_opens", {}, [("pressure", 0.0, 0, 20, 5)], OPEN, PRESSURE),
    ("custom_thresholds_apply", {"open_usage_percent": 95.0}, [("pressure", 0.0, 18, 20, 0)], CLOSED, None),
    ("one_busy_connection_of_one_is_not_overload", {}, [("pressure", 0.0, 1, 1, 0)], CLOSED, None),
    ("tiny_pool_still_opens_on_waiters", {}, [("pressure", 0.0, 1, 1, 5)], OPEN, PRESSURE),
    ("consecutive_failures_open", {}, fails(5), OPEN, FAILURES),
    ("four_failures_do_not_open", {}, fails(4), CLOSED, None),
    ("a_success_resets_the_consecutive_count", {}, fails(4) + oks(1, 1) + fails(4, 2), CLOSED, None),
    ("timeouts_count_like_connection_errors", {}, fails(5, kind=TIMEOUT), OPEN, FAILURES),
    ("failure_rate_at_min_volume_opens", RATE_ONLY, oks(10) + fails(10, 1), OPEN, FAILURES),
    ("failure_rate_below_min_volume_does_not_open", RATE_ONLY, oks(9) + fails(10, 1), CLOSED, None),
    ("failure_rate_below_threshold_does_not_open", RATE_ONLY, oks(11) + fails(9, 1), CLOSED, None),
    ("failures_leave_the_window_as_it_slides", RATE_ONLY, fails(15) + oks(4, 11) + fails(1, 12), CLOSED, None),
    ("open_waits_its_duration", {}, OPEN_ON_PRESSURE + [("at", 4.99)], OPEN, PRESSURE),
    ("open_goes_half_open_after_its_duration", {}, OPEN_ON_PRESSURE + [("at", 5.0)], HALF_OPEN, COOLDOWN),
    ("half_open_closes_after_probes_succeed_under_low_pressure", {},
     HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe", 5.1), ("probe_ok", 5.2), ("probe_ok", 5.2)],
     CLOSED, RECOVERED),
    ("one_probe_success_is_not_enough", {},
     HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe_ok", 5.2)], HALF_OPEN, COOLDOWN),
    ("hysteresis_keeps_half_open_between_thresholds", {},
     HALF_OPEN_AFTER_PRESSURE + [("pressure", 5.05, 14, 20, 0), ("probe", 5.1), ("probe", 5.1),
                                 ("probe_ok", 5.2), ("probe_ok", 5.2)], HALF_OPEN, COOLDOWN),
    ("two_waiting_is_not_calm_enough_to_close", {},
     HALF_OPEN_AFTER_PRESSURE + [("pressure", 5.05, 0, 20, 2), ("probe", 5.1), ("probe", 5.1),
                                 ("probe_ok", 5.2), ("probe_ok", 5.2)], HALF_OPEN, COOLDOWN),
    ("a_calm_sample_after_successful_probes_closes", {},
     HALF_OPEN_AFTER_PRESSURE + [("pressure", 5.05, 14, 20, 0), ("probe", 5.1), ("probe", 5.1),
                                 ("probe_ok", 5.2), ("probe_ok", 5.2), ("pressure", 5.3, *CALM)], CLOSED, RECOVERED),
    ("a_failed_probe_reopens", {}, HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe_fail", 5.2)],
     OPEN, PROBE_FAILED),
    ("high_pressure_in_half_open_reopens", {}, HALF_OPEN_AFTER_PRESSURE + [("pressure", 5.1, 0, 20, 5)],
     OPEN, PRESSURE),
    ("an_abandoned_probe_decides_nothing", {}, HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe_gone", 5.2)],
     HALF_OPEN, COOLDOWN),
    ("successes_while_half_open_do_not_count_as_probes", {}, HALF_OPEN_AFTER_PRESSURE + oks(5, 5.1),
     HALF_OPEN, COOLDOWN),
    ("failures_while_half_open_only_count_from_probes", {}, HALF_OPEN_AFTER_PRESSURE + fails(10, 5.1),
     HALF_OPEN, COOLDOWN),
    ("failures_while_open_are_not_carried_into_closed", {},
     OPEN_ON_FAILURES + fails(10, 1) + [("at", 5.1), ("probe", 5.1), ("probe", 5.1), ("probe_ok", 5.2),
                                        ("probe_ok", 5.2)] + fails(4, 6), CLOSED, RECOVERED),
    ("force_open_from_closed", {}, [("force_open", 0.0)], OPEN, FORCED),
    ("forced_open_ignores_its_timer_and_calm", {}, [("force_open", 0.0), ("pressure", 60.0, *CALM)], OPEN, FORCED),
    ("forced_closed_ignores_pressure_and_failures", {},
     [("force_closed", 0.0), ("pressure", 1.0, 20, 20, 50)] + fails(50, 2), CLOSED, None),
    ("force_closed_from_open", {}, OPEN_ON_FAILURES + [("force_closed", 1.0)], CLOSED, FORCED),
    ("auto_after_force_open_restarts_the_timer", {},
     [("force_open", 0.0), ("auto", 100.0), ("at", 104.9)], OPEN, FORCED),
    ("auto_after_force_open_then_goes_half_open", {},
     [("force_open", 0.0), ("auto", 100.0), ("at", 105.0)], HALF_OPEN, COOLDOWN),
    ("auto_after_force_closed_obeys_pressure_again", {},
     [("force_closed", 0.0), ("auto", 1.0), ("pressure", 2.0, 0, 20, 5)], OPEN, PRESSURE),
    ("auto_when_already_automatic_changes_nothing", {}, OPEN_ON_PRESSURE + [("auto", 4.0), ("at", 5.0)],
     HALF_OPEN, COOLDOWN),
]


@pytest.mark.parametrize(("overrides", "steps", "state", "reason"),
                         [row[1:] for row in TRANSITIONS], ids=[row[0] for row in TRANSITIONS])
def test_transition_table(overrides, steps, state, reason):
    breaker = CircuitBreaker(BreakerConfig(**overrides))
    apply(breaker, steps)
    assert (breaker.state, breaker.reason) == (state, reason)


ADMISSIONS = [
    # id, steps, read admitted, write admitted (asked 0.1 s after the last step)
    ("closed_admits_everything", [], True, True),
    ("open_on_pressure_admits_critical_writes_only", OPEN_ON_PRESSURE, False, True),
    ("open_on_failures_fails_fast_for_everything", OPEN_ON_FAILURES, False, False),
    ("reopened_by_a_failed_probe_fails_fast", HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe_fail", 5.2)],
     False, False),
    ("reopened_by_pressure_in_half_open_admits_writes", HALF_OPEN_AFTER_PRESSURE + [("pressure", 5.1, 0, 20, 5)],
     False, True),
    ("forced_open_refuses_writes_too", [("force_open", 0.0)], False, False),
    ("forced_closed_admits_everything_after_failures", OPEN_ON_FAILURES + [("force_closed", 1.0)], True, True),
    ("half_open_with_free_slots_admits_as_probes", HALF_OPEN_AFTER_PRESSURE, True, True),
    ("half_open_with_every_slot_taken_refuses", HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe", 5.1)],
     False, False),
]


@pytest.mark.parametrize(("steps", "read", "write"), [row[1:] for row in ADMISSIONS],
                         ids=[row[0] for row in ADMISSIONS])
def test_admission_table(steps, read, write):
    now = max((step[1] for step in steps), default=0.0) + 0.1  # before any open period ends
    for request_class, expected in ((READ, read), (WRITE, write)):
        breaker = CircuitBreaker()
        apply(breaker, steps)
        admission = breaker.allow(now, request_class)
        assert bool(admission) is expected, request_class


@pytest.mark.parametrize(("steps", "admitted"), [
    ([], True),
    (OPEN_ON_PRESSURE, False),
    (OPEN_ON_FAILURES, False),
    (HALF_OPEN_AFTER_PRESSURE, False),
], ids=["closed", "open_on_pressure", "open_on_failures", "half_open_with_free_slots"])
def test_background_work_runs_only_while_closed_and_never_takes_a_probe_slot(steps, admitted):
    breaker = CircuitBreaker()
    apply(breaker, steps)
    now = max((step[1] for step in steps), default=0.0) + 0.1
    assert bool(breaker.allow(now, BACKGROUND)) is admitted
    assert breaker.probes_in_flight == 0


def test_pressure_reopening_half_open_does_not_lengthen_the_open_period():
    breaker = CircuitBreaker(BreakerConfig(open_duration_s=1.0, open_backoff_factor=2.0, open_duration_max_s=5.0))
    apply(breaker, [("pressure", 0.0, 20, 20, 0), ("at", 1.0), ("pressure", 1.1, 20, 20, 0)])
    assert (breaker.state, breaker.open_duration_s) == (OPEN, 1.0)


def test_trip_opens_a_closed_breaker_at_once_and_nothing_else():
    breaker = CircuitBreaker()
    breaker.trip(1.0, UNRESPONSIVE)
    assert (breaker.state, breaker.open_reason, breaker.transitions[-1].detail) == (OPEN, FAILURES, UNRESPONSIVE)
    assert not breaker.allow(1.1, WRITE)
    forced = CircuitBreaker()
    forced.force_closed(0.0)
    forced.trip(1.0, UNRESPONSIVE)
    assert forced.state == CLOSED


def test_half_open_admissions_are_probes_and_closed_ones_are_not():
    breaker = CircuitBreaker()
    assert breaker.allow(0.0, READ).probe is None
    apply(breaker, HALF_OPEN_AFTER_PRESSURE)
    first, second, third = (breaker.allow(5.1, WRITE) for _ in range(3))
    assert first.probe is not None and second.probe is not None
    assert not third and third.probe is None
    assert breaker.probes_in_flight == 2


def test_a_finished_probe_frees_its_slot():
    breaker = CircuitBreaker(BreakerConfig(half_open_max_probes=1))
    apply(breaker, HALF_OPEN_AFTER_PRESSURE)
    probe = breaker.try_acquire_probe(5.1)
    assert probe is not None and breaker.try_acquire_probe(5.1) is None
    breaker.probe_abandoned(5.2, probe)
    assert breaker.try_acquire_probe(5.3) is not None


def test_a_probe_from_an_earlier_half_open_period_is_ignored():
    breaker = CircuitBreaker()
    stale = apply(breaker, HALF_OPEN_AFTER_PRESSURE + [("probe", 5.1), ("probe", 5.1), ("probe_fail", 5.2)])[0]
    breaker.advance(10.2)
    assert breaker.state == HALF_OPEN
    breaker.probe_succeeded(10.3, stale)
    breaker.probe_succeeded(10.3, stale)
    assert (breaker.state, breaker.probes_in_flight) == (HALF_OPEN, 0)


def test_unknown_request_class_is_a_programming_error():
    with pytest.raises(ValueError, match="request_class"):
        CircuitBreaker().allow(0.0, "public")


def test_transitions_are_reported_and_kept_in_a_bounded_history():
    seen: list[Transition] = []
    breaker = CircuitBreaker(BreakerConfig(history_size=3), seen.append)
    apply(breaker, fails(5) + [("at", 5.0), ("probe", 5.1), ("probe_fail", 5.2), ("at", 10.2), ("force_open", 11.0)])
    assert [(t.from_state, t.to_state, t.reason) for t in seen] == [
        (CLOSED, OPEN, FAILURES), (OPEN, HALF_OPEN, COOLDOWN), (HALF_OPEN, OPEN, PROBE_FAILED),
        (OPEN, HALF_OPEN, COOLDOWN), (HALF_OPEN, OPEN, FORCED)]
    assert breaker.transitions == tuple(seen[-3:])
    assert seen[0] == Transition(0.04, CLOSED, OPEN, FAILURES, CONNECTION_ERROR)
    assert seen[2].detail == TIMEOUT


def test_open_reason_is_cleared_once_closed():
    breaker = CircuitBreaker()
    apply(breaker, OPEN_ON_PRESSURE)
    assert breaker.open_reason == PRESSURE
    apply(breaker, [("force_closed", 1.0)])
    assert breaker.open_reason is None


@pytest.mark.parametrize(("steps", "now", "expected"), [
    (OPEN_ON_PRESSURE, 1.0, 4.0),       # the rest of the open period
    (OPEN_ON_PRESSURE, 4.5, 1.0),       # never less than a second
    (HALF_OPEN_AFTER_PRESSURE, 5.1, 1.0),
    ([("force_open", 0.0)], 100.0, 5.0),  # forced: no timer, suggest one open period
])
def test_retry_after(steps, now, expected):
    breaker = CircuitBreaker()
    apply(breaker, steps)
    assert breaker.retry_after_s(now) == pytest.approx(expected)


@pytest.mark.parametrize(("seconds", "header"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (4.5, 5)])
def test_retry_after_header_rounds_up_to_whole_seconds(seconds, header):
    assert retry_after_header_s(seconds) == header


@pytest.mark.parametrize("overrides", [
    {"close_usage_percent": 90.0},
    {"close_waiting": 6},
    {"close_waiting": 0},
    {"failure_rate": 0.0},
    {"half_open_max_probes": 0},
    {"open_duration_s": 0.0},
])
def test_config_without_hysteresis_or_with_empty_budgets_is_refused(overrides):
    with pytest.raises(ValueError, match="invalid BreakerConfig"):
        BreakerConfig(**overrides)


# ---- properties --------------------------------------------------------------------------------

SMALL = BreakerConfig(open_duration_s=1.0, consecutive_failures=3, failure_min_calls=4,
                      half_open_max_probes=2, half_open_successes_to_close=2, history_size=5)


class BreakerMachine(RuleBasedStateMachine):
    """Random sequences of signals, admissions and operator commands on a breaker, with time moving on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Transition] = []
        self.breaker = CircuitBreaker(SMALL, self.seen.append)
        self.now = 0.0
        self.held: list[Probe] = []
        self.last_sample_calm = True

    def _step(self, action: Any) -> None:
        """Run ``action``; a forced breaker must not move on its own."""
        mode, before = self.breaker.mode, len(self.seen)
        action()
        if mode != AUTO:
            assert len(self.seen) == before, "a forced mode must override automatic transitions"
        for transition in self.seen[before:]:
            if transition.to_state == CLOSED and transition.reason != FORCED:
                assert transition.reason == RECOVERED and self.last_sample_calm

    @rule(dt=st.floats(min_value=0.0, max_value=1.5))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self._step(lambda: self.breaker.advance(self.now))

    @rule(in_use=st.integers(0, 10), waiting=st.integers(0, 8))
    def pool_sample(self, in_use: int, waiting: int) -> None:
        def sample() -> None:
            self.last_sample_calm = in_use * 10 < SMALL.close_usage_percent and waiting < SMALL.close_waiting
            self.breaker.observe_pressure(self.now, in_use, 10, waiting)

        self._step(sample)

    @rule(failed=st.booleans())
    def interaction_finished(self, failed: bool) -> None:
        if failed:
            self._step(lambda: self.breaker.record_failure(self.now, CONNECTION_ERROR))
        else:
            self._step(lambda: self.breaker.record_success(self.now))

    @rule(request_class=st.sampled_from(REQUEST_CLASSES))
    def caller_asks(self, request_class: str) -> None:
        self.breaker.advance(self.now)
        was_open, open_reason = self.breaker.state == OPEN, self.breaker.open_reason
        admission = self.breaker.allow(self.now, request_class)
        if was_open:
            assert bool(admission) == (request_class == WRITE and open_reason == PRESSURE)
        if admission.probe is not None:
            self.held.append(admission.probe)

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(["ok", "fail", "gone"]))
    def probe_reports(self, index: int, outcome: str) -> None:
        probe = self.held.pop(index % len(self.held))
        report = {"ok": lambda: self.breaker.probe_succeeded(self.now, probe),
                  "fail": lambda: self.breaker.probe_failed(self.now, probe, TIMEOUT),
                  "gone": lambda: self.breaker.probe_abandoned(self.now, probe)}[outcome]
        self._step(report)

    @rule(command=st.sampled_from(["force_open", "force_closed", "auto"]))
    def operator(self, command: str) -> None:
        getattr(self.breaker, command)(self.now)

    @invariant()
    def state_is_one_of_three(self) -> None:
        assert self.breaker.state in STATES

    @invariant()
    def never_more_probes_than_the_budget(self) -> None:
        assert 0 <= self.breaker.probes_in_flight <= SMALL.half_open_max_probes
        if self.breaker.state == HALF_OPEN and self.held:
            newest = max(probe.generation for probe in self.held)
            assert sum(probe.generation == newest for probe in self.held) <= SMALL.half_open_max_probes

    @invariant()
    def forced_modes_pin_the_state_and_the_answer(self) -> None:
        mode = self.breaker.mode
        if mode == FORCED_OPEN:
            assert self.breaker.state == OPEN
            assert not any(self.breaker.allow(self.now, c) for c in REQUEST_CLASSES)
        elif mode == FORCED_CLOSED:
            assert self.breaker.state == CLOSED
            assert all(self.breaker.allow(self.now, c) for c in REQUEST_CLASSES)
        elif self.breaker.state == HALF_OPEN:
            assert mode == AUTO

    @invariant()
    def history_is_a_bounded_consistent_chain(self) -> None:
        history = self.breaker.transitions
        assert len(history) <= SMALL.history_size
        assert list(history) == self.seen[-len(history):] if history else not self.seen
        for earlier, later in zip(self.seen, self.seen[1:]):
            assert earlier.to_state == later.from_state and earlier.at <= later.at
        assert all(t.from_state != t.to_state for t in self.seen)
        if self.seen:
            assert self.seen[-1].to_state == self.breaker.state


TestBreakerProperties = BreakerMachine.TestCase
TestBreakerProperties.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


def test_pressure_must_be_sustained_when_configured():
    breaker = CircuitBreaker(BreakerConfig(open_after_hot_samples=2))
    breaker.observe_pressure(0.0, 10, 10, 0)
    assert breaker.state == "closed", "one momentary peak does not open it"
    breaker.observe_pressure(0.25, 5, 10, 0)
    breaker.observe_pressure(0.5, 10, 10, 0)
    assert breaker.state == "closed", "hot samples must be consecutive"
    breaker.observe_pressure(0.75, 9, 10, 0)
    assert breaker.state == "open" and breaker.open_reason == "pressure"
