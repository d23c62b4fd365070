"""A real ``twistd tenantsvc`` whose reactor is blocked: ``/readyz`` says 503 ``lagging``, ``/healthz`` still
answers, the lag is in ``/metrics``, and readiness comes back once the reactor has been on time again.

The block is injected through the test-only launcher ``tests.e2e.reactor_blocker`` (SIGUSR2 → a 2 s
``time.sleep`` on the reactor thread). While the reactor is blocked nothing answers, so every check
happens after it: the recovery period (8 s) is long enough for them on a loaded machine, and each wait
is bounded.
"""

from __future__ import annotations

import signal

import pytest

from tests.e2e.reactor_blocker import BLOCK_SECONDS_VARIABLE, LAUNCHER
from tests.support.tenantsvc_process import http, service_env
from tests.support.metrics import scraped_total
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

BLOCK_S, THRESHOLD_S, RECOVERY_S = 2.0, 0.5, 8.0


def is_lagging(message: dict) -> bool:
    """The monitor's message for a tick late by about the injected block (not a start-up hiccup)."""
    return message.get("message_type") == "tenantsvc:reactor:lagging" and message["lag_s"] >= BLOCK_S - 0.2


def test_a_blocked_reactor_makes_readyz_503_until_it_has_been_on_time_again_while_healthz_answers(
        start_tenantsvc):
    service = start_tenantsvc(
        "--demo", "--role", "web", "--listen", "tcp:0:interface=127.0.0.1", launcher=LAUNCHER,
        env=service_env(**{BLOCK_SECONDS_VARIABLE: str(BLOCK_S), "REACTOR_LAG_READY_THRESHOLD": str(THRESHOLD_S),
                           "REACTOR_LAG_READY_RECOVERY": str(RECOVERY_S)}))
    service.wait_for_message(lambda m: m.get("message_type") == "tenantsvc:web:ready", "start-up work done")
    assert http("GET", service.url("/readyz")).status == 200
    before = http("GET", service.url("/metrics")).body.decode()

    service.process.send_signal(signal.SIGUSR2)
    lagging = service.wait_for_message(is_lagging, "the monitor to see the blocked reactor")

    readyz = http("GET", service.url("/readyz"))
    assert readyz.status == 503, readyz.body
    body = readyz.json()
    assert (body["status"], body["reason"], body["threshold_seconds"], body["recovery_seconds"]) == (
        "lagging", "reactor_lag", THRESHOLD_S, RECOVERY_S)
    assert body["reactor_lag_seconds"] >= BLOCK_S - 0.2
    assert http("GET", service.url("/healthz")).status == 200, "liveness must not fail for lag"
    after = http("GET", service.url("/metrics")).body.decode()
    late_ticks = (scraped_total(after, "reactor_lag_seconds_count") - scraped_total(after, "reactor_lag_seconds_bucket",
                                                                                    le="1.0"))
    assert late_ticks - (scraped_total(before, "reactor_lag_seconds_count")
                         - scraped_total(before, "reactor_lag_seconds_bucket", le="1.0")) >= 1
    assert scraped_total(after, "reactor_lag_max_seconds") >= BLOCK_S - 0.2
    assert scraped_total(after, "reactor_lag_episodes_total") > scraped_total(before, "reactor_lag_episodes_total")

    def ready_again() -> bool:
        return http("GET", service.url("/readyz")).status == 200

    wait_until(ready_again, "/readyz to answer 200 again", timeout_s=RECOVERY_S + 30)
    caught_up = service.wait_for_message(
        lambda m: m.get("message_type") == "tenantsvc:reactor:caught_up" and m["worst_lag_s"] >= lagging["lag_s"],
        "the monitor to log the recovery")
    assert caught_up["unready_s"] >= RECOVERY_S + BLOCK_S - 0.2
    print(f"\nFIGURES reactor blocked {BLOCK_S:g} s: late tick {lagging['lag_s']:.3f} s, /readyz 503 for "
          f"{caught_up['unready_s']:.2f} s from the start of the stall (recovery {RECOVERY_S:g} s), /healthz 200")
    assert service.terminate() == 0
