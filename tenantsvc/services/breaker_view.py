"""What every circuit breaker on the reactor shows of its ``tenantsvc.core.breaker.CircuitBreaker``: each
transition in metrics and in the log, and a description for ``/health/detailed``.

Shared by the breakers (``services.db_guard``, ``services.redis_guard``) so that they look the same to
operators.
"""

from __future__ import annotations

from typing import Any

from eliot import MessageType, fields

from tenantsvc.core.breaker import AUTOMATIC_OPENINGS, STATE_CODES, CircuitBreaker, Transition
from tenantsvc.obs.metrics import Metrics, zero

BREAKER_TRANSITION = MessageType(
    "tenantsvc:breaker:transition",
    fields(breaker_name=str, from_state=str, to_state=str, reason=str, detail=str),
    "A circuit breaker changed state; detail is the failure kind when failures caused it.",
)


def zero_openings(metrics: Metrics, breaker_name: str) -> None:
    """Create the breaker's automatic-opening series of ``circuit_breaker_transitions_total`` at 0, so its
    first opening shows as an increase (an alert on openings would miss a series born at 1)."""
    zero(metrics.breaker_transitions, [(breaker_name, *opening) for opening in AUTOMATIC_OPENINGS])


def record_transition(metrics: Metrics, breaker_name: str, transition: Transition) -> None:
    """``circuit_breaker_state`` and ``circuit_breaker_transitions_total``, and a ``tenantsvc:breaker:transition``."""
    metrics.breaker_state.labels(breaker_name).set(STATE_CODES[transition.to_state])
    metrics.breaker_transitions.labels(
        breaker_name, transition.from_state, transition.to_state, transition.reason).inc()
    BREAKER_TRANSITION.log(breaker_name=breaker_name, from_state=transition.from_state,
                           to_state=transition.to_state, reason=transition.reason, detail=transition.detail)


def describe_machine(breaker_name: str, machine: CircuitBreaker, now: float) -> dict[str, Any]:
    """Name, state, mode, open reason, probes in flight, the open period and the last transitions, as of ``now``."""
    machine.advance(now)
    return {
        "name": breaker_name,
        "state": machine.state,
        "mode": machine.mode,
        "open_reason": machine.open_reason,
        "probes_in_flight": machine.probes_in_flight,
        "open_duration_s": machine.open_duration_s,
        "transitions": [
            {"at": t.at, "from": t.from_state, "to": t.to_state, "reason": t.reason, "detail": t.detail}
            for t in machine.transitions
        ],
    }
