"""The operations listener and token on a real ``twistd tenantsvc`` (issue 11, item 5).

``--ops-listen`` (or ``OPS_LISTEN``) on a second loopback port: the public listener answers 404 for
``/metrics`` and ``/health/detailed`` and keeps ``/healthz`` and ``/readyz``; the operations listener serves
those four (the sensitive two only with ``OPS_TOKEN``'s bearer token) and nothing of the API; both drain on
SIGTERM and the process exits 0. A port already taken (either listener) stops start-up with one line naming
the listener and exit status 1 (before, a main listener that could not bind left the process running).
"""

from __future__ import annotations

import socket

import pytest

from tests.support.tenantsvc_process import http, service_env
from tests.support.metrics import scraped_total
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

LISTEN = ("--listen", "tcp:0:interface=127.0.0.1")
TOKEN = "e2e-ops-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_the_public_listener_hides_metrics_and_the_operations_listener_serves_them_with_the_token(start_tenantsvc):
    service = start_tenantsvc("--demo", "--role", "web", *LISTEN, "--ops-listen", "tcp:0:interface=127.0.0.1",
                              env=service_env(OPS_TOKEN=TOKEN))
    ops = service.listening_port("ops")
    assert ops != service.port
    for path in ("/metrics", "/health/detailed"):
        hidden = http("GET", service.url(path), headers=BEARER)
        assert (hidden.status, hidden.json()) == (404, {"error": "not_found", "message": "no such route"}), path
        refused = http("GET", service.url(path, ops))
        assert (refused.status, refused.json()["error"]) == (401, "unauthorized"), path
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="tenantsvc-operations"'
        assert http("GET", service.url(path, ops), headers={"Authorization": "Bearer not-the-token"}).status == 401
    for port in (service.port, ops):
        assert http("GET", service.url("/healthz", port)).status == 200
        assert http("GET", service.url("/readyz", port)).json() == {"status": "ready"}
    scrape = http("GET", service.url("/metrics", ops), headers=BEARER)
    assert scrape.status == 200 and b"reactor_lag_seconds_bucket" in scrape.body
    assert scraped_total(scrape.body.decode(), "http_requests_total", endpoint="unmatched", status="404") == 2
    assert scraped_total(scrape.body.decode(), "http_requests_total", endpoint="/metrics", status="401") == 2
    detailed = http("GET", service.url("/health/detailed", ops), headers=BEARER)
    assert detailed.status == 200 and detailed.json()["status"] == "pass"
    assert http("GET", service.url("/demo/api/public/load-theme", ops)).status == 404
    assert http("GET", service.url("/demo/api/public/load-theme")).status == 200
    assert service.terminate() == 0
    drained = [m.get("listener") for m in service.messages() if m.get("message_type") == "tenantsvc:web:drained"]
    assert drained == ["web", "ops"], "both listeners drained, the main one first"


def test_ops_listen_from_the_environment_and_no_token_leaves_the_routes_open_on_it(start_tenantsvc):
    service = start_tenantsvc("--demo", "--role", "worker_odds", *LISTEN,
                              env=service_env(OPS_LISTEN="tcp:0:interface=127.0.0.1"))
    ops = service.listening_port("ops")
    assert http("GET", service.url("/metrics")).status == 404
    assert http("GET", service.url("/metrics", ops)).status == 200
    assert "odds:feed" in http("GET", service.url("/health/detailed", ops)).json()["checks"]


@pytest.mark.parametrize(("listener", "what"), [
    ("ops", "the operations listener (--ops-listen/OPS_LISTEN)"), ("web", "the main listener (--listen/PORT)")])
def test_a_port_already_taken_stops_start_up_with_one_line_naming_the_listener_and_status_1(
        start_tenantsvc, listener, what):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        if listener == "ops":
            service = start_tenantsvc("--demo", *LISTEN, env=service_env(OPS_LISTEN=endpoint), ready=False)
        else:
            service = start_tenantsvc("--demo", "--listen", endpoint, ready=False)
        wait_until(lambda: service.process.poll() is not None, "tenantsvc to stop", timeout_s=30)
    errors = [line for line in service.stderr().splitlines() if line.startswith("tenantsvc:")]
    assert errors == [f"tenantsvc: cannot listen on {endpoint} for {what}: "
                      f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."], service.stderr()
    assert service.process.returncode == 1
    assert "Traceback" not in service.stderr()
    (logged,) = [m for m in service.messages() if m.get("message_type") == "tenantsvc:web:cannot_listen"]
    assert (logged["listener"], logged["endpoint"]) == (listener, endpoint)
    assert not [m for m in service.messages() if m.get("message_type") == "eliot:traceback"]
