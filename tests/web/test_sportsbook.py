"""The sportsbook over HTTP: the odds list, placing and listing bets, and operators settling reviewed bets.

Odds are saved with the real odds store (as the worker would), players register and log in through the
real routes, and every money movement is checked against the wallet and the ledger.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tenantsvc.adapters.db import bet_store, odds_store
from tenantsvc.core.odds import FeedMatch, OddsSnapshot, Price
from tests.support.web_harness import WebHarness
from tests.web.test_players import login, register, sid

OPENING_BALANCE = 100_000


def now_of(harness: WebHarness) -> datetime:
    """The harness clock as a UTC datetime."""
    return datetime.fromtimestamp(harness.clock.seconds(), tz=timezone.utc)


def football_match(harness: WebHarness, match_id: str = "m1", *, kickoff_in_s: float = 3600.0,
                   home_odds: str = "1.76", suspended: bool = False) -> FeedMatch:
    """A match kicking off ``kickoff_in_s`` after the harness clock, with 1X2 and over/under 2.5 prices."""
    prices = (
        Price("1x2", None, "home", Decimal(home_odds), suspended),
        Price("1x2", None, "draw", Decimal("3.40")),
        Price("1x2", None, "away", Decimal("4.50")),
        Price("over_under", "2.5", "over", Decimal("1.90")),
        Price("over_under", "2.5", "under", Decimal("1.95")),
    )
    return FeedMatch(match_id, "England: Premier League", "Arsenal", "Chelsea",
                     now_of(harness) + timedelta(seconds=kickoff_in_s), "Not Started", prices)


def save_odds(harness: WebHarness, *matches: FeedMatch, sport: str = "soccer") -> None:
    """Save matches as the odds worker would, fetched now."""
    harness.run_interaction(odds_store.save_odds_txn, OddsSnapshot(sport, int(harness.clock.seconds()), matches),
                            now_of(harness))


def bet_body(**changes: Any) -> dict[str, Any]:
    """A valid bet on m1's home price."""
    return {"match_id": "m1", "market": "1x2", "selection": "home", "line": None, "stake_cents": 1000,
            "odds": "1.76", **changes}


def place(harness: WebHarness, session_id: str, key: str | None = "key-1", tenant: str = "acme", **changes: Any):
    """POST a bet with the session cookie and an Idempotency-Key."""
    headers = {"Cookie": f"tsid={session_id}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return harness.request("POST", f"/{tenant}/api/bets", headers=headers, json=bet_body(**changes))


def balance(harness: WebHarness, session_id: str, tenant: str = "acme") -> int:
    """The player's balance from /me."""
    response = harness.get(f"/{tenant}/api/me", headers={"Cookie": f"tsid={session_id}"})
    assert response.status == 200, response.body
    return response.json()["balance_cents"]


def ledger_sums_match_balances(harness: WebHarness) -> bool:
    """Every wallet equals the sum of its ledger rows."""
    def check_txn(txn: Any) -> bool:
        rows = txn.all("SELECT w.balance_cents, (SELECT COALESCE(SUM(amount_cents), 0) FROM ledger l"
                       " WHERE l.user_id = w.user_id) AS total FROM wallets w")
        return all(int(row["balance_cents"]) == int(row["total"]) for row in rows)

    return harness.run_interaction(check_txn)


@pytest.fixture
def player(harness: WebHarness) -> str:
    """Tenant acme, odds for m1, and alice logged in: her session id."""
    harness.create_tenant("acme")
    save_odds(harness, football_match(harness))
    assert register(harness).status == 201
    return sid(login(harness))


# --- odds list --------------------------------------------------------------------------------------------


def test_the_odds_list_shows_upcoming_matches_with_their_markets(harness, player):
    save_odds(harness, football_match(harness), football_match(harness, "gone", kickoff_in_s=-60))
    response = harness.get("/acme/api/public/odds/soccer")
    assert response.status == 200
    body = response.json()
    assert body["sport"] == "soccer" and body["updated_at"] is not None
    (match,) = body["matches"]
    assert {k: match[k] for k in ("id", "league", "home", "away")} == {
        "id": "m1", "league": "England: Premier League", "home": "Arsenal", "away": "Chelsea"}
    assert match["markets"] == [
        {"market": "1x2", "line": None, "selections": [
            {"selection": "home", "odds": "1.76", "suspended": False},
            {"selection": "draw", "odds": "3.40", "suspended": False},
            {"selection": "away", "odds": "4.50", "suspended": False}]},
        {"market": "over_under", "line": "2.5", "selections": [
            {"selection": "over", "odds": "1.90", "suspended": False},
            {"selection": "under", "odds": "1.95", "suspended": False}]},
    ]
    assert response.header("Cache-Control") == "public, max-age=5"


def test_unknown_sports_and_tenants_are_404(harness, player):
    assert harness.get("/acme/api/public/odds/curling").status == 404
    assert harness.get("/nosuch/api/public/odds/soccer").status == 404


def test_the_odds_list_is_cached_briefly_and_revalidates_with_304(harness, player):
    first = harness.get("/acme/api/public/odds/soccer")
    save_odds(harness, football_match(harness, home_odds="1.80"))
    cached = harness.get("/acme/api/public/odds/soccer")
    assert cached.body == first.body, "within ODDS_CACHE_TTL the same answer is reused"
    assert harness.get("/acme/api/public/odds/soccer", headers={"If-None-Match": first.header("ETag")}).status == 304
    harness.clock.advance(6)
    fresh = harness.get("/acme/api/public/odds/soccer", headers={"If-None-Match": first.header("ETag")})
    assert fresh.status == 200 and '"1.80"' in fresh.body.decode()


def test_concurrent_odds_requests_share_one_database_read(harness, player):
    reads_before = harness.metric("db_interactions_total", name="upcoming_odds")
    pending = [harness.start_request("GET", "/acme/api/public/odds/soccer") for _ in range(5)]
    assert all(harness.finish(p).status == 200 for p in pending)
    assert harness.metric("db_interactions_total", name="upcoming_odds") - reads_before == 1


# --- placing bets -----------------------------------------------------------------------------------------


def test_a_bet_debits_the_stake_and_is_listed(harness, player):
    response = place(harness, player)
    assert response.status == 201, response.body
    bet = response.json()["bet"]
    assert {k: bet[k] for k in ("match_id", "market", "line", "selection", "odds", "stake_cents",
                                "potential_payout_cents", "status")} == {
        "match_id": "m1", "market": "1x2", "line": None, "selection": "home", "odds": "1.76",
        "stake_cents": 1000, "potential_payout_cents": 1760, "status": "pending"}
    assert response.json()["balance_cents"] == OPENING_BALANCE - 1000 == balance(harness, player)
    listed = harness.get("/acme/api/bets", headers={"Cookie": f"tsid={player}"})
    assert [b["id"] for b in listed.json()["bets"]] == [bet["id"]]
    assert ledger_sums_match_balances(harness)


def test_replaying_the_idempotency_key_returns_the_same_bet_without_a_second_debit(harness, player):
    first = place(harness, player)
    again = place(harness, player, odds="1.760")
    assert again.status == 201 and again.header("Idempotent-Replayed") == "true"
    assert again.json()["bet"] == first.json()["bet"]
    assert balance(harness, player) == OPENING_BALANCE - 1000


def test_reusing_the_key_for_a_different_bet_is_422(harness, player):
    place(harness, player)
    response = place(harness, player, stake_cents=2000)
    assert response.status == 422 and response.json()["error"] == "idempotency_key_reused"
    assert balance(harness, player) == OPENING_BALANCE - 1000


def test_a_bet_without_an_idempotency_key_is_400(harness, player):
    response = place(harness, player, key=None)
    assert response.status == 400 and response.json()["error"] == "idempotency_key_required"


def test_the_client_cannot_set_the_price(harness, player):
    response = place(harness, player, odds="5.00")
    assert response.status == 409
    assert response.json()["error"] == "price_changed" and response.json()["current_odds"] == "1.76"
    assert balance(harness, player) == OPENING_BALANCE


@pytest.mark.parametrize("setup,changes,status,code", [
    (lambda h: save_odds(h, football_match(h, kickoff_in_s=30)) or h.clock.advance(31), {}, 409, "match_started"),
    (lambda h: save_odds(h, football_match(h, suspended=True)), {}, 409, "market_closed"),
    (lambda h: h.clock.advance(901), {}, 409, "stale_price"),
    (lambda h: None, {"match_id": "nosuch"}, 422, "unknown_match"),
    (lambda h: None, {"stake_cents": 50}, 422, "stake_too_low"),
    (lambda h: None, {"stake_cents": 1_000_001}, 422, "stake_too_high"),
    (lambda h: None, {"stake_cents": 200_000}, 409, "insufficient_funds"),
    (lambda h: None, {"market": "over_under", "selection": "over", "line": "3.5", "odds": "1.90"}, 409,
     "market_closed"),
])
def test_server_side_checks_refuse_without_moving_money(harness, player, setup, changes, status, code):
    setup(harness)
    harness.clock.advance(0)
    response = place(harness, player, **changes)
    assert (response.status, response.json()["error"]) == (status, code), response.body
    assert harness.get("/acme/api/me", headers={"Cookie": f"tsid={player}"}).json()["balance_cents"] == OPENING_BALANCE


def test_payout_above_the_tenant_maximum_is_422(harness, player):
    save_odds(harness, football_match(harness, home_odds="900"))
    harness.admin("POST", "/admin/api/tenants/acme/users/alice/credit",
                  json={"amount_cents": 1_000_000, "reason": "high roller"})
    response = place(harness, player, stake_cents=20_000, odds="900")
    assert (response.status, response.json()["error"]) == (422, "payout_too_high")


def test_bad_bodies_are_422_per_field_and_anonymous_players_401(harness, player):
    response = place(harness, player, market="correct_score")
    assert response.status == 422 and "market" in response.json()["fields"]
    anonymous = harness.request("POST", "/acme/api/bets", headers={"Idempotency-Key": "k"}, json=bet_body())
    assert anonymous.status == 401
    assert harness.get("/acme/api/bets").status == 401


def test_a_session_of_another_tenant_cannot_bet_here(harness, player):
    harness.create_tenant("betco")
    response = place(harness, player, tenant="betco")
    assert response.status == 401
    assert balance(harness, player) == OPENING_BALANCE


# --- operators --------------------------------------------------------------------------------------------


def review_bet(harness: WebHarness, player: str) -> int:
    """A bet placed then marked for review by the settlement rules; its id."""
    bet_id = place(harness, player).json()["bet"]["id"]
    assert harness.run_interaction(bet_store.mark_review_txn, bet_id, "unknown status 'Weird'")
    return bet_id


def test_operators_list_bets_waiting_for_review(harness, player):
    bet_id = review_bet(harness, player)
    response = harness.admin("GET", "/admin/api/tenants/acme/bets?status=review")
    assert response.status == 200
    assert [(b["id"], b["review_reason"]) for b in response.json()["bets"]] == [(bet_id, "unknown status 'Weird'")]
    assert harness.admin("GET", "/admin/api/tenants/acme/bets?status=bogus").status == 422
    assert harness.admin("GET", "/admin/api/tenants/nosuch/bets").status == 404
    assert harness.get("/admin/api/tenants/acme/bets").status == 401


def test_an_operator_settles_a_reviewed_bet_exactly_once(harness, player):
    bet_id = review_bet(harness, player)
    path = f"/admin/api/tenants/acme/bets/{bet_id}/settle"
    won = harness.admin("POST", path, json={"outcome": "won", "reason": "checked the match report"})
    assert won.status == 200 and won.json() == {"bet_id": bet_id, "outcome": "won", "credited_cents": 1760}
    again = harness.admin("POST", path, json={"outcome": "void", "reason": "oops"})
    assert again.status == 409 and again.json()["error"] == "already_settled"
    assert balance(harness, player) == OPENING_BALANCE - 1000 + 1760
    assert ledger_sums_match_balances(harness)
    assert harness.admin("GET", "/admin/api/tenants/acme/bets?status=review").json()["bets"] == []


def test_an_operator_settles_only_within_the_tenant_and_with_a_reason(harness, player):
    bet_id = review_bet(harness, player)
    harness.create_tenant("betco")
    elsewhere = harness.admin("POST", f"/admin/api/tenants/betco/bets/{bet_id}/settle",
                              json={"outcome": "won", "reason": "x"})
    assert elsewhere.status == 404
    invalid = harness.admin("POST", f"/admin/api/tenants/acme/bets/{bet_id}/settle", json={"outcome": "lost"})
    assert invalid.status == 422 and set(invalid.json()["fields"]) == {"reason"}
    assert harness.admin("POST", f"/admin/api/tenants/acme/bets/{bet_id}/settle",
                         json={"outcome": "cashout", "reason": "x"}).status == 422
    assert balance(harness, player) == OPENING_BALANCE - 1000


def test_while_the_database_is_refused_the_last_odds_list_is_served_and_marked(harness, player):
    first = harness.get("/acme/api/public/odds/soccer")
    assert harness.admin("POST", "/admin/api/breaker", json={"mode": "open"}).status == 200
    harness.clock.advance(6)
    stale = harness.get("/acme/api/public/odds/soccer")
    assert stale.status == 200 and stale.body == first.body
    assert stale.header("Cache-Status") == "tenantsvc; hit; detail=db-refused"
    never_loaded = harness.get("/acme/api/public/odds/basketball")
    assert never_loaded.status == 503 and never_loaded.header("Retry-After")
