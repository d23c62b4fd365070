"""Players over HTTP: registration, login sessions (cookie, fixation, expiry, tenants), CSRF and rate limits."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie

import pytest
from twisted.internet.defer import ensureDeferred

from tests.support.web_harness import WebHarness, fired

PASSWORD = "correct horse battery"


def register(harness: WebHarness, username: str = "alice", tenant: str = "acme", password: str = PASSWORD):
    """POST register with JSON."""
    return harness.request("POST", f"/{tenant}/api/auth/register", json={"username": username, "password": password})


def login(harness: WebHarness, username: str = "alice", password: str = PASSWORD, tenant: str = "acme",
          remember: bool = False, cookie: str | None = None):
    """POST login with JSON (and optionally a cookie the client already holds)."""
    headers = {"Cookie": f"tsid={cookie}"} if cookie else None
    return harness.request("POST", f"/{tenant}/api/auth/login", headers=headers,
                           json={"username": username, "password": password, "remember": remember})


def session_cookie(response) -> SimpleCookie:
    """The parsed ``tsid`` Set-Cookie of a response."""
    cookie = SimpleCookie()
    cookie.load(response.header("Set-Cookie"))
    return cookie


def sid(response) -> str:
    """The session id a login response set."""
    return session_cookie(response)["tsid"].value


def me(harness: WebHarness, session_id: str | None, tenant: str = "acme"):
    """GET /me with the session cookie."""
    headers = {"Cookie": f"tsid={session_id}"} if session_id is not None else None
    return harness.get(f"/{tenant}/api/me", headers=headers)


def session_count(harness: WebHarness) -> int:
    """Live sessions in the (in-process) store."""
    return fired(ensureDeferred(harness.components.players.sessions.count()))


@pytest.fixture
def acme(harness: WebHarness) -> WebHarness:
    """Tenant acme with player alice registered."""
    harness.create_tenant("acme")
    assert register(harness).status == 201
    return harness


def test_registration_opens_a_wallet_with_the_default_balance(harness):
    harness.create_tenant("acme")
    response = register(harness)
    assert response.status == 201 and response.json() == {"username": "alice", "balance_cents": 100000}


@pytest.mark.parametrize("body,field", [
    ({"username": "al", "password": PASSWORD}, "username"),
    ({"username": "a b c", "password": PASSWORD}, "username"),
    ({"username": "alice", "password": "short"}, "password"),
    ({"username": "alice", "password": "x" * 1025}, "password"),
])
def test_invalid_registrations_are_422_per_field(harness, body, field):
    harness.create_tenant("acme")
    response = harness.request("POST", "/acme/api/auth/register", json=body)
    assert response.status == 422 and field in response.json()["fields"]


def test_duplicate_username_is_409_and_unknown_tenant_404(acme):
    assert register(acme).status == 409
    assert register(acme, tenant="nosuch").status == 404


def test_login_sets_a_tenant_scoped_httponly_lax_cookie(acme):
    response = login(acme)
    assert response.status == 200 and response.json() == {"username": "alice"}
    morsel = session_cookie(response)["tsid"]
    assert morsel["path"] == "/acme/" and morsel["httponly"] and morsel["samesite"].lower() == "lax"
    assert not morsel["secure"], "development: not Secure"
    assert not morsel["max-age"], "without remember me the cookie ends with the browser session"
    assert len(morsel.value) == 43


def test_outside_development_the_cookie_is_secure(make_harness):
    harness = make_harness(env={"ENVIRONMENT": "staging", "GOALSERVE_API_KEY": "feed-key"})
    harness.create_tenant("acme")
    register(harness)
    assert session_cookie(login(harness))["tsid"]["secure"]


def test_remember_me_cookie_lives_a_day(acme):
    assert session_cookie(login(acme, remember=True))["tsid"]["max-age"] == "86400"


def test_unknown_user_and_wrong_password_get_the_same_401(acme):
    wrong = login(acme, password="wrong password!")
    unknown = login(acme, username="mallory")
    assert wrong.status == unknown.status == 401 and wrong.body == unknown.body
    assert wrong.header("Set-Cookie") is None


def test_me_shows_the_player_and_balance(acme):
    response = me(acme, sid(login(acme)))
    assert response.status == 200 and response.json() == {"username": "alice", "balance_cents": 100000}


def test_session_fixation_a_cookie_brought_to_login_is_not_the_one_after(acme):
    first = sid(login(acme))
    second = sid(login(acme, cookie=first))
    assert second != first
    assert me(acme, first).status == 401, "the pre-login session is destroyed"
    assert me(acme, second).status == 200


@pytest.mark.parametrize("cookie", ["", "abc", "x" * 43, "x" * 500, "A" * 42 + "!", "é" * 43])
def test_tampered_truncated_or_oversized_cookies_are_anonymous_and_never_reach_the_store(acme, cookie):
    real = sid(login(acme))
    before = session_count(acme)
    response = me(acme, cookie)
    assert response.status == 401 and response.json()["error"] == "unauthenticated"
    assert session_count(acme) == before
    assert me(acme, real[:-1]).status == 401


def test_a_session_is_bound_to_its_tenant(acme, eliot_logger):
    acme.create_tenant("other")
    session_id = sid(login(acme))
    assert me(acme, session_id, tenant="other").status == 401
    events = [m for m in eliot_logger.messages if m.get("message_type") == "tenantsvc:security:event"]
    assert any(e["event"] == "cross_tenant_session" and e["tenant"] == "other" for e in events)
    assert me(acme, session_id).status == 200, "still valid at home"


def test_logout_ends_the_session_and_clears_the_cookie(acme):
    session_id = sid(login(acme))
    response = acme.request("POST", "/acme/api/auth/logout", headers={"Cookie": f"tsid={session_id}",
                                                                      "Content-Type": "application/json"})
    assert response.status == 204
    assert session_cookie(response)["tsid"]["max-age"] == "0"
    assert me(acme, session_id).status == 401, "replaying the cookie after logout fails"


def test_logout_all_ends_every_session_of_the_user(acme):
    phone, laptop = sid(login(acme)), sid(login(acme))
    response = acme.request("POST", "/acme/api/auth/logout-all", headers={"Cookie": f"tsid={phone}",
                                                                          "Content-Type": "application/json"})
    assert response.status == 204
    assert me(acme, phone).status == 401 and me(acme, laptop).status == 401


def test_idle_sessions_expire_and_use_renews_them(acme):
    session_id = sid(login(acme))
    for _ in range(3):
        acme.clock.advance(3000)
        assert me(acme, session_id).status == 200, "each use slides the idle expiry"
    acme.clock.advance(3601)
    assert me(acme, session_id).status == 401


def test_absolute_lifetime_ends_even_a_busy_session(make_harness):
    harness = make_harness(env={"SESSION_ABSOLUTE_LIFETIME": "7200"})
    harness.create_tenant("acme")
    register(harness)
    session_id = sid(login(harness, remember=True))
    harness.clock.advance(3500)
    assert me(harness, session_id).status == 200
    harness.clock.advance(3500)
    assert me(harness, session_id).status == 200
    harness.clock.advance(300)
    assert me(harness, session_id).status == 401


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_csrf_state_changing_routes_take_only_json(acme, content_type):
    session_id = sid(login(acme))
    headers = {"Cookie": f"tsid={session_id}"}
    if content_type:
        headers["Content-Type"] = content_type
    assert acme.request("POST", "/acme/api/auth/logout", headers=headers).status == 415
    form_login = acme.request("POST", "/acme/api/auth/login", headers={"Content-Type": content_type or "text/plain"},
                              body=b"username=alice&password=x")
    assert form_login.status == 415
    assert me(acme, session_id).status == 200, "the refused logout did nothing"


def test_login_brute_force_is_stopped_by_the_per_username_limit(make_harness, eliot_logger):
    harness = make_harness(env={"RATE_LIMIT_LOGIN_USER": "3/0.01"})
    harness.create_tenant("acme")
    register(harness)
    answers = [login(harness, password=f"guess number {n}") for n in range(4)]
    assert [a.status for a in answers] == [401, 401, 401, 429]
    limited = answers[-1]
    assert int(limited.header("Retry-After")) >= 1 and limited.json()["retry_after"] == int(limited.header("Retry-After"))
    assert limited.json()["error"] == "rate_limited"
    assert login(harness).status == 429, "even the right password waits from this client: the bucket is per username and client"
    assert limited.json()["scope"] == "client" and limited.json()["bucket"] == "login_user"
    logged = json.dumps(eliot_logger.messages, default=str)
    assert "guess number" not in logged and PASSWORD not in logged


def test_limited_routes_carry_rate_limit_headers(acme):
    response = me(acme, sid(login(acme)))
    assert int(response.header("X-Rate-Limit-Remaining")) == 119  # this client's bucket: the tightest level
    assert int(response.header("X-Rate-Limit-Reset")) >= 1
    assert response.header("RateLimit-Policy") == '"read_client";q=120;w=24, "read";q=3000;w=10'
    assert response.header("RateLimit").startswith('"read_client";r=119;t=')


def test_over_the_public_limit_the_cached_theme_is_still_served(make_harness):
    harness = make_harness(env={"RATE_LIMIT_PUBLIC": "2/0.001"})
    harness.create_tenant("acme")
    assert harness.admin("PUT", "/admin/api/tenants/acme/theme", json={"primaryColor": "#ABCDEF"}).status == 200
    first, second, limited = (harness.get("/acme/api/public/load-theme") for _ in range(3))
    assert first.header("X-Rate-Limited") is None and second.header("X-Rate-Limit-Remaining") == "0"
    calls = dict(harness.components.db.calls)
    harness.clock.advance(400)  # stale now: an allowed request would start a refresh
    limited = harness.get("/acme/api/public/load-theme")
    assert limited.status == 200 and limited.header("X-Rate-Limited") == "true"
    assert limited.json()["primaryColor"] == "#ABCDEF"
    assert limited.header("Cache-Control") == "public, max-age=30, stale-while-revalidate=60"
    assert dict(harness.components.db.calls) == calls, "a limited request starts no refresh"


def test_health_and_metrics_are_never_limited(make_harness):
    harness = make_harness(env={"RATE_LIMIT_PUBLIC": "1/0.01"})
    for path in ["/healthz", "/readyz", "/metrics"] * 5:
        response = harness.get(path)
        assert response.status in (200, 503) and response.header("X-Rate-Limit-Remaining") is None


def test_rate_limit_decisions_are_counted(acme):
    before = acme.metric("ratelimit_decisions_total", endpoint_class="read", outcome="allowed", scope="none")
    me(acme, sid(login(acme)))
    assert acme.metric("ratelimit_decisions_total", endpoint_class="read", outcome="allowed", scope="none") == before + 1


def test_session_ids_never_reach_the_logs(acme, eliot_logger):
    session_id = sid(login(acme))
    me(acme, session_id)
    assert session_id not in json.dumps(eliot_logger.messages, default=str)


def test_health_detailed_counts_sessions(acme):
    login(acme)
    (check,) = acme.get("/health/detailed").json()["checks"]["sessions:count"]
    assert check["observedValue"] == 1 and check["status"] == "pass"
