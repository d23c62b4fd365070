"""The operations listener and token over HTTP (issue 11, item 5): who serves /metrics and /health/detailed, and to whom.

With ``OPS_LISTEN`` the main listener keeps ``/healthz`` and ``/readyz`` and answers a JSON 404 for
``/metrics`` and ``/health/detailed``; the operations listener serves all four and nothing else. With
``OPS_TOKEN`` the two sensitive routes need ``Authorization: Bearer <token>`` wherever they are served.
"""

from __future__ import annotations

import pytest

OPS = {"OPS_LISTEN": "tcp:0:interface=127.0.0.1"}
TOKEN = "ops-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/metrics", "/health/detailed"])
def test_with_an_operations_listener_the_main_one_answers_404_for_the_sensitive_routes(make_harness, path):
    harness = make_harness(env=OPS)
    hidden = harness.get(path)
    assert (hidden.status, hidden.json()) == (404, {"error": "not_found", "message": "no such route"})
    assert harness.ops().get(path).status == 200


def test_both_listeners_answer_the_probes_from_one_readiness(make_harness):
    harness = make_harness(env=OPS)
    ops = harness.ops()
    assert harness.get("/healthz").status == ops.get("/healthz").status == 200
    assert harness.get("/readyz").json() == ops.get("/readyz").json() == {"status": "starting"}
    harness.web.readiness.started = True
    assert harness.get("/readyz").status == ops.get("/readyz").status == 200


def test_the_operations_listener_serves_nothing_of_the_api(make_harness):
    ops = make_harness(env=OPS).ops()
    for method, path in (("GET", "/demo/api/public/load-theme"), ("GET", "/admin/api/tenants"),
                         ("POST", "/demo/api/auth/login")):
        answer = ops.request(method, path, admin=True)
        assert answer.status == 404 and "operations listener" in answer.json()["message"], (path, answer.body)


def test_without_an_operations_listener_there_is_no_second_root(harness):
    assert harness.web.ops is None
    assert harness.get("/metrics").status == 200


@pytest.mark.parametrize("env", [{"OPS_TOKEN": TOKEN}, {"OPS_TOKEN": TOKEN, **OPS}], ids=["main", "ops"])
@pytest.mark.parametrize("path", ["/metrics", "/health/detailed"])
def test_with_a_token_the_sensitive_routes_need_it_wherever_they_are_served(make_harness, env, path):
    harness = make_harness(env=env)
    serving = harness.ops() if "OPS_LISTEN" in env else harness
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        refused = serving.get(path, headers=headers)
        assert (refused.status, refused.json()["error"]) == (401, "unauthorized"), headers
        assert refused.header("WWW-Authenticate") == 'Bearer realm="tenantsvc-operations"'
        assert TOKEN not in refused.body.decode()
    assert serving.get(path, headers=BEARER).status == 200
    assert serving.get(path, headers={"Authorization": f"bearer  {TOKEN} "}).status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_token_never_guards_the_probes(make_harness, path):
    harness = make_harness(env={"OPS_TOKEN": TOKEN})
    assert harness.get(path).status in (200, 503)
    assert harness.get(path).header("WWW-Authenticate") is None


def test_refused_scrapes_are_counted_and_never_probe_the_database(make_harness):
    harness = make_harness(env={"OPS_TOKEN": TOKEN})
    before = harness.pool.interactions
    for _ in range(5):
        harness.get("/health/detailed")
    assert harness.pool.interactions == before
    assert harness.metric("http_requests_total", endpoint="/health/detailed", status="401") == 5
