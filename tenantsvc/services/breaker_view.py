"""What every circuit breaker on the reactor shows of its ``tenantsvc.core.breaker.CircuitBreaker``: each
transition in metrics and in the log, and a description for ``/health/detailed``.

Shared by the breakers so that they look the same to operators (``services.redis_guard`` uses it;
``services.db_guard`` has the same code inline and can call these instead).
"""

from __future__ import annotations

from typing import Any

from tenantsvc.core.breaker import STATE_CODES, CircuitBreaker, Transition
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.db_guard import BREAKER_TRANSITION


def record_transition(metrics: Metrics, breaker_name: str, transition: Transition) -> None:
    """``circuit_breaker_state`` and ``circuit_breaker_transitions_total``, and a ``tenantsvc:breaker:transition``."""
    metrics.breaker_state.labels(breaker_name).set(STATE_CODES[transition.to_state])
    metrics.breaker_transitions.labels(
        breaker_name, transition.from_state, transition.to_state, transition.reason).inc()
    BREAKER_TRANSITION.log(breaker_name=breaker_name, from_state=transition.from_state,
                           to_state=transition.to_state, reason=transition.reason, detail=transition.detail)


def describe_machine(breaker_name: str, machine: CircuitBreaker, now: float) -> dict[str, Any]:
    """Name, state, mode, open reason, probes in flight and the last transitions, as of ``now``."""
    machine.advance(now)
    return {
        "name": breaker_name,
        "state": machine.state,
        "mode": machine.mode,
        "open_reason": machine.open_reason,
        "probes_in_flight": machine.probes_in_flight,
        "transitions": [
            {"at": t.at, "from": t.from_state, "to": t.to_state, "reason": t.reason, "detail": t.detail}
            for t in machine.transitions
        ],
    }
