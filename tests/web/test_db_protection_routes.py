"""Request classes at the HTTP level: the admin breaker switch, 503s with Retry-After, cached reads, health."""

from __future__ import annotations

import pytest

BREAKER = "/admin/api/breaker"
THEME = "/admin/api/tenants/acme/theme"


@pytest.fixture
def acme(harness):
    """A harness with tenant acme whose saved theme is cached."""
    harness.create_tenant("acme")
    assert harness.admin("PUT", THEME, json={"primaryColor": "#123456"}).status == 200
    return harness


def test_breaker_switch_requires_the_admin_token(acme):
    assert acme.request("POST", BREAKER, json={"mode": "open"}).status == 401
    assert acme.request("GET", BREAKER).status == 401


@pytest.mark.parametrize("body", [{"mode": "half-open"}, {"mode": 1}, {}, {"mode": "open", "extra": 1}])
def test_breaker_switch_validates_the_mode(acme, body):
    response = acme.admin("POST", BREAKER, json=body)
    assert response.status == 422 and "mode" in response.json()["fields"]


def test_forced_open_breaker_refuses_writes_with_503_and_retry_after(acme):
    opened = acme.admin("POST", BREAKER, json={"mode": "open"})
    assert opened.status == 200 and opened.json()["state"] == "open" and opened.json()["mode"] == "forced_open"
    before = acme.pool.interactions
    refused = acme.admin("PUT", THEME, json={"primaryColor": "#000000"})
    assert refused.status == 503
    assert refused.json()["error"] == "unavailable"
    assert int(refused.header("Retry-After")) >= 1 and refused.json()["retry_after"] == int(refused.header("Retry-After"))
    assert acme.pool.interactions == before, "a refused write never reaches the database"


def test_forced_open_breaker_serves_reads_from_the_cache_and_says_so(acme):
    acme.admin("POST", BREAKER, json={"mode": "open"})
    theme = acme.admin("GET", THEME)
    assert theme.status == 200 and theme.json()["primaryColor"] == "#123456"
    assert "db-refused" in theme.header("Cache-Status")
    assert acme.admin("GET", "/admin/api/tenants").status == 503, "nothing cached for the list: 503"


def test_public_path_is_untouched_by_an_open_breaker(acme):
    acme.admin("POST", BREAKER, json={"mode": "open"})
    answer = acme.get("/acme/api/public/load-theme")
    assert answer.status == 200 and answer.json()["primaryColor"] == "#123456"


def test_health_detailed_shows_the_breaker_and_its_transitions(acme):
    acme.admin("POST", BREAKER, json={"mode": "open"})
    report = acme.get("/health/detailed")
    (breaker,) = report.json()["checks"]["database:circuitBreaker"]
    assert breaker["status"] == "warn" and breaker["observedValue"] == "open"
    assert breaker["breaker"]["transitions"][-1]["to"] == "open"
    assert report.json()["status"] == "warn"


def test_closing_the_breaker_lets_writes_through_again(acme):
    acme.admin("POST", BREAKER, json={"mode": "open"})
    assert acme.admin("POST", BREAKER, json={"mode": "closed"}).json()["state"] == "closed"
    assert acme.admin("PUT", THEME, json={"primaryColor": "#000000"}).status == 200
    assert acme.admin("POST", BREAKER, json={"mode": "auto"}).json()["mode"] == "auto"


def test_unprocessable_answers_carry_a_real_reason_phrase(acme):
    from tenantsvc.web.errors import REASON_PHRASES

    assert REASON_PHRASES[422] == b"Unprocessable Content"
    assert acme.admin("PUT", THEME, json={"primaryColor": "red"}).status == 422
