"""Fair rate limits over HTTP (issue 11 item 6), on a Clock: each client spends its own bucket under the tenant's
ceiling, so one client's flood never answers 429 to another; login is limited per (username, client) and per
client, so guesses from some addresses never lock the real player out from theirs. Clients are told apart by
``X-Forwarded-For`` (``TRUSTED_PROXY_HEADER``), as behind Fly's proxy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.web_harness import WebHarness

PASSWORD = "correct horse battery"
PROXIED = {"TRUSTED_PROXY_HEADER": "X-Forwarded-For"}


def from_client(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def login(harness: WebHarness, address: str, password: str = PASSWORD, username: str = "alice") -> Any:
    return harness.request("POST", "/acme/api/auth/login", headers=from_client(address),
                           json={"username": username, "password": password})


def me(harness: WebHarness, address: str, session: str) -> Any:
    return harness.get("/acme/api/me", headers=from_client(address, Cookie=f"tsid={session}"))


def odds(harness: WebHarness, address: str) -> Any:
    return harness.get("/acme/api/public/odds/soccer", headers=from_client(address))


def session_of(answer: Any) -> str:
    assert answer.status == 200, answer.body
    return answer.header("Set-Cookie").split(";", 1)[0].removeprefix("tsid=")


@pytest.fixture
def acme(make_harness: Any) -> WebHarness:
    harness = make_harness(env=PROXIED)
    harness.create_tenant("acme")
    assert harness.request("POST", "/acme/api/auth/register", headers=from_client("10.1.0.1"),
                           json={"username": "alice", "password": PASSWORD}).status == 201
    return harness


def test_one_clients_odds_flood_is_limited_and_another_clients_me_is_not(acme):
    session = session_of(login(acme, "10.1.0.1"))
    flood = [odds(acme, "10.66.0.1") for _ in range(300)]  # no time passes: far beyond the client's 120
    statuses = [answer.status for answer in flood]
    assert statuses.count(429) == 300 - 120 and set(statuses) - {429} <= {200}
    refused = flood[-1]
    assert refused.json()["scope"] == "client" and refused.json()["bucket"] == "read_client"
    assert int(refused.header("Retry-After")) == refused.json()["retry_after"] >= 1
    assert me(acme, "10.1.0.1", session).status == 200
    assert odds(acme, "10.1.0.1").status == 200
    assert acme.metric("ratelimit_decisions_total", endpoint_class="read", outcome="limited", scope="client") == 180
    assert acme.metric("ratelimit_decisions_total", endpoint_class="read", outcome="limited", scope="tenant") == 0


def test_the_tenant_ceiling_still_limits_many_clients_together_and_says_so(make_harness):
    harness = make_harness(env={**PROXIED, "RATE_LIMIT_READ": "5/0.001"})
    harness.create_tenant("acme")
    answers = [odds(harness, f"10.2.0.{n}") for n in range(8)]
    assert [a.status for a in answers] == [200] * 5 + [429] * 3
    assert answers[-1].json()["scope"] == "tenant" and answers[-1].json()["bucket"] == "read"
    assert harness.metric("ratelimit_decisions_total", endpoint_class="read", outcome="limited", scope="tenant") == 3


def test_guesses_from_five_addresses_leave_the_real_players_login_from_a_sixth(acme):
    answers = [login(acme, f"10.66.0.{n % 5 + 1}", password=f"guess {n}") for n in range(150)]
    statuses = [answer.status for answer in answers]
    assert statuses.count(401) == 5 * 10  # ten tries at alice from each address (RATE_LIMIT_LOGIN_USER)
    assert statuses.count(429) == 100 and set(statuses) == {401, 429}
    assert {answer.json()["bucket"] for answer in answers if answer.status == 429} == {"login_user"}
    assert login(acme, "10.66.0.1").status == 429  # the right password from an attacker's address still waits
    real = login(acme, "10.1.0.9")
    assert real.status == 200, real.body
    assert me(acme, "10.1.0.9", session_of(real)).status == 200


def test_one_address_trying_many_accounts_is_stopped_by_its_own_auth_bucket(acme):
    answers = [login(acme, "10.66.0.1", username=f"user{n:03d}", password="guess") for n in range(40)]
    statuses = [answer.status for answer in answers]
    assert statuses == [401] * 30 + [429] * 10  # RATE_LIMIT_AUTH_CLIENT: 30, then one every 2 s
    assert answers[-1].json()["bucket"] == "auth_client" and answers[-1].json()["scope"] == "client"
    assert login(acme, "10.1.0.9").status == 200
