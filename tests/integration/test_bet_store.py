"""The bet store on real SQLite and Postgres: placement checks, idempotency, listing, settlement, review.

``open_book``, ``place``, ``place_or_replay`` and ``ledger_consistency_txn`` are reused by
``test_settlement_races``. ``ledger_consistency_txn`` is the money invariant every test ends with:
each wallet equals the sum of its ledger rows, and each bet has exactly the ledger rows its status implies.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tenantsvc.adapters.db import bet_store, odds_store, tenant_store
from tenantsvc.adapters.db.bet_store import BetRejected, IdempotencyConflict, PendingBet, PendingMatch, Settlement
from tenantsvc.core.storage_errors import IntegrityViolation
from tenantsvc.adapters.db.odds_store import SaveSummary
from tenantsvc.core.odds import BetRequest, payout_cents
from tests.integration.test_odds_store import T0, feed_match, run, snapshot
from tests.support.databases import migrate
from tests.support.interactions import Gate

pytestmark = pytest.mark.integration

NOW = T0
KICKOFF = T0 + timedelta(hours=2)
FETCHED = T0 - timedelta(seconds=10)
MAX_AGE_S = 60.0
OPENING = 100_000  # the tenants table's default opening balance
D = Decimal


def home_bet(stake_cents: int = 1_000, **changes: Any) -> BetRequest:
    """A bet on the home side of m1 at its current price (1.76), with ``changes`` applied."""
    return replace(BetRequest("m1", "1x2", None, "home", stake_cents, D("1.76")), **changes)


async def open_book(db: Any, usernames: tuple[str, ...] = ("alice",), slug: str = "acme",
                    match_ids: tuple[str, ...] = ("m1",)) -> dict[str, int]:
    """A tenant with players (username → user id) and odds on ``match_ids`` kicking off at ``KICKOFF``."""
    await run(db, tenant_store.insert_tenant_txn, slug, slug.title())
    users = {name: (await run(db, tenant_store.create_user_txn, slug, name, "hash"))["user_id"] for name in usernames}
    await run(db, odds_store.save_odds_txn, snapshot(*(feed_match(m, KICKOFF) for m in match_ids)), FETCHED)
    return users


def place(db: Any, user_id: int, bet: BetRequest, key: str, *, fingerprint: str | None = None,
          now: datetime = NOW, slug: str = "acme") -> Deferred:
    """Place ``bet`` with idempotency ``key`` (fingerprint defaults to one derived from the bet)."""
    return run(db, bet_store.place_bet_txn, slug, user_id, bet, key, fingerprint or fingerprint_of(bet), now, MAX_AGE_S)


async def place_or_replay(db: Any, user_id: int, bet: BetRequest, key: str) -> bet_store.PlacedBet:
    """What the betting service does: place, and after losing a concurrent duplicate, replay in a new transaction."""
    try:
        return await place(db, user_id, bet, key)
    except IntegrityViolation as violation:
        assert violation.kind == "unique"
        replayed = await run(db, bet_store.replay_bet_txn, user_id, key, fingerprint_of(bet))
        assert replayed is not None
        return replayed


def fingerprint_of(bet: BetRequest) -> str:
    """A stand-in request fingerprint (64 characters) derived from the bet."""
    return f"{bet.match_id}|{bet.market}|{bet.line}|{bet.selection}|{bet.stake_cents}|{bet.odds}".ljust(64)[:64]


def balance_txn(txn: Any, user_id: int) -> int:
    """The wallet balance of ``user_id``."""
    row = txn.one("SELECT balance_cents FROM wallets WHERE user_id = %s", (user_id,))
    assert row is not None
    return int(row["balance_cents"])


def count_txn(txn: Any, table: str, where: str = "1 = 1", params: tuple = ()) -> int:
    """Rows of ``table`` matching ``where``."""
    row = txn.one(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", params)
    return int(row["n"]) if row else 0


def _wallet_problems(txn: Any) -> list[str]:
    rows = txn.all(
        "SELECT w.user_id, w.balance_cents, COALESCE(SUM(l.amount_cents), 0) AS total"
        " FROM wallets w LEFT JOIN ledger l ON l.user_id = w.user_id GROUP BY w.user_id, w.balance_cents")
    return [f"user {r['user_id']}: balance {r['balance_cents']} != ledger {r['total']}"
            for r in rows if int(r["balance_cents"]) != int(r["total"]) or int(r["balance_cents"]) < 0]


def _expected_bet_rows(bet: dict[str, Any]) -> list[tuple[str, int]]:
    rows = [("bet_stake", -int(bet["stake_cents"]))]
    if bet["status"] == "won":
        rows.append(("bet_payout", int(bet["potential_payout_cents"])))
    if bet["status"] == "void":
        rows.append(("bet_refund", int(bet["stake_cents"])))
    return rows


def _bet_problems(txn: Any) -> list[str]:
    bets = txn.all("SELECT id, tenant_id, status, stake_cents, potential_payout_cents, payout_cents FROM bets")
    entries: dict[int, list[tuple[str, int]]] = {}
    for row in txn.all("SELECT bet_id, kind, amount_cents, tenant_id FROM ledger WHERE bet_id IS NOT NULL ORDER BY id"):
        entries.setdefault(int(row["bet_id"]), []).append((row["kind"], int(row["amount_cents"])))
    problems = []
    for bet in bets:
        expected = _expected_bet_rows(bet)
        if entries.get(int(bet["id"]), []) != expected:
            problems.append(f"bet {bet['id']} ({bet['status']}): ledger {entries.get(int(bet['id']))} != {expected}")
        credited = sum(amount for kind, amount in expected if kind != "bet_stake")
        if bet["status"] != "pending" and int(bet["payout_cents"]) != credited:
            problems.append(f"bet {bet['id']}: payout_cents {bet['payout_cents']} != credited {credited}")
    return problems


def _tenant_problems(txn: Any) -> list[str]:
    rows = txn.all("SELECT l.id FROM ledger l JOIN users u ON u.id = l.user_id WHERE l.tenant_id <> u.tenant_id")
    return [f"ledger row {r['id']} carries another tenant's id" for r in rows]


def ledger_consistency_txn(txn: Any) -> list[str]:
    """Every way the money does not add up (empty when it does): a wallet that differs from the sum of its
    ledger rows or is negative; a bet without exactly one stake row and the one credit row its status
    implies (won → potential payout, void → stake); ``payout_cents`` disagreeing; a ledger row of another tenant.
    """
    return _wallet_problems(txn) + _bet_problems(txn) + _tenant_problems(txn)


async def assert_money_adds_up(db: Any) -> None:
    """Fail with the list of problems unless ``ledger_consistency_txn`` finds none."""
    assert await run(db, ledger_consistency_txn) == []


async def _rejection(deferred: Deferred) -> BetRejected:
    with pytest.raises(BetRejected) as caught:
        await deferred
    return caught.value


# ---- placing -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_bet_at_the_current_price_is_placed_and_its_stake_debited(database):
    users = await open_book(database)
    placed = await place(database, users["alice"], home_bet(2_500), "k1")
    assert placed.replayed is False and placed.balance_cents == OPENING - 2_500
    bet = placed.bet
    assert {k: bet[k] for k in ("match_id", "sport", "home", "away", "market", "line", "selection", "odds",
                                "stake_cents", "potential_payout_cents", "status", "payout_cents", "settled_at")} == {
        "match_id": "m1", "sport": "soccer", "home": "m1-home", "away": "m1-away", "market": "1x2", "line": None,
        "selection": "home", "odds": "1.76", "stake_cents": 2_500, "potential_payout_cents": 4_400,
        "status": "pending", "payout_cents": None, "settled_at": None}
    assert bet["kickoff"] == "2030-01-01T14:00:00Z" and bet["created_at"] == "2030-01-01T12:00:00Z"
    assert await run(database, balance_txn, users["alice"]) == OPENING - 2_500
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_a_line_bet_keeps_its_line_and_payout_rounds_down(database):
    users = await open_book(database)
    bet = BetRequest("m1", "over_under", "2.5", "over", 333, D("1.90"))
    placed = await place(database, users["alice"], bet, "k1")
    assert (placed.bet["line"], placed.bet["odds"]) == ("2.5", "1.90")
    assert placed.bet["potential_payout_cents"] == payout_cents(333, D("1.9")) == 632
    away = await place(database, users["alice"], home_bet(selection="away", odds=D("4.5")), "k2")
    assert away.bet["odds"] == "4.50"


REJECTIONS = [
    ("unknown_match", dict(bet=home_bet(match_id="nope"))),
    ("match_started", dict(now=KICKOFF)),
    ("market_closed", dict(bet=home_bet(selection="draw", market="btts"))),
    ("market_closed", dict(bet=BetRequest("m1", "over_under", "2.5", "under", 1_000, D("1.95")))),  # suspended
    ("market_closed", dict(bet=BetRequest("m1", "over_under", "3.5", "over", 1_000, D("1.9")))),  # no such line
    ("stale_price", dict(now=FETCHED + timedelta(seconds=MAX_AGE_S + 1))),
    ("price_changed", dict(bet=home_bet(odds=D("1.80")))),
    ("stake_too_low", dict(bet=home_bet(99))),
    ("stake_too_high", dict(bet=home_bet(1_000_001))),
    ("insufficient_funds", dict(bet=home_bet(OPENING + 1))),
    ("unknown_user", dict(user_id=999_999)),
    ("unknown_user", dict(slug="betco")),  # alice is not a player of betco
]


@pytest.mark.parametrize("code, changes", REJECTIONS, ids=[f"{code}-{n}" for n, (code, _) in enumerate(REJECTIONS)])
@pytest_twisted.ensureDeferred
async def test_a_refused_bet_writes_nothing(database, code, changes):
    users = await open_book(database)
    await run(database, tenant_store.insert_tenant_txn, "betco", "Betco")
    call = {"user_id": users["alice"], "bet": home_bet(), "now": NOW, "slug": "acme", **changes}
    rejected = await _rejection(place(database, call["user_id"], call["bet"], "k1", now=call["now"], slug=call["slug"]))
    assert rejected.code == code and rejected.message
    assert await run(database, count_txn, "bets") == 0
    assert await run(database, balance_txn, users["alice"]) == OPENING
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_price_changed_tells_the_current_odds(database):
    users = await open_book(database)
    rejected = await _rejection(place(database, users["alice"], home_bet(odds=D("1.7")), "k1"))
    assert rejected.current_odds == D("1.76")
    same_value = await place(database, users["alice"], home_bet(odds=D("1.7600")), "k2")
    assert same_value.bet["odds"] == "1.76"


def _home_price_updated_at_txn(txn: Any) -> datetime:
    row = txn.one("SELECT updated_at FROM odds WHERE match_id = 'm1' AND market = '1x2' AND selection = 'home'")
    assert row is not None
    return odds_store.from_db_timestamp(row["updated_at"])


@pytest_twisted.ensureDeferred
async def test_freshness_is_the_sports_last_save_not_the_price_rows_age(database):
    users = await open_book(database)
    late = FETCHED + timedelta(seconds=MAX_AGE_S + 1)
    stale = await _rejection(place(database, users["alice"], home_bet(), "k1", now=late))
    assert stale.code == "stale_price"
    unchanged = await run(database, odds_store.save_odds_txn, snapshot(feed_match("m1", KICKOFF)), late)
    assert unchanged == SaveSummary(matches=0, prices=0, suspended=0)
    assert await run(database, _home_price_updated_at_txn) == FETCHED  # the row was not rewritten...
    placed = await place(database, users["alice"], home_bet(), "k2", now=late)  # ...yet the feed confirmed it
    assert placed.replayed is False and placed.bet["odds"] == "1.76"
    much_later = late + timedelta(seconds=MAX_AGE_S + 1)
    assert (await _rejection(place(database, users["alice"], home_bet(), "k3", now=much_later))).code == "stale_price"
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_only_the_sports_own_save_confirms_its_prices(database):
    users = await open_book(database)
    late = FETCHED + timedelta(seconds=MAX_AGE_S + 1)
    await run(database, odds_store.save_odds_txn, snapshot(feed_match("t1", KICKOFF), sport="tennis"), late)
    assert (await _rejection(place(database, users["alice"], home_bet(), "k1", now=late))).code == "stale_price"

    def forget_soccer_txn(txn: Any) -> None:
        txn.execute("DELETE FROM feed_status WHERE sport = 'soccer'")

    await run(database, forget_soccer_txn)  # prices no save of their sport ever confirmed are never fresh
    assert (await _rejection(place(database, users["alice"], home_bet(), "k2"))).code == "stale_price"
    assert await run(database, count_txn, "bets") == 0


@pytest.fixture
def postgres_pools(database_factory: Any) -> tuple[Any, Any]:
    """Two migrated ``Database`` pools (separate connections) on one fresh Postgres database."""
    url = database_factory.new_url("postgres")
    first, second = (database_factory.open(url=url) for _ in range(2))
    pytest_twisted.blockon(migrate(first))
    return first, second


def _place_then_hold_txn(txn: Any, gate: Gate, *args: Any) -> bet_store.PlacedBet:
    """Place a bet, then keep its transaction (and its ``FOR SHARE`` row locks) open until the gate opens."""
    placed = bet_store.place_bet_txn(txn, *args)
    gate.hold_txn(txn)
    return placed


@pytest_twisted.ensureDeferred
async def test_an_unchanged_odds_save_does_not_wait_for_a_bet_in_progress(postgres_pools):
    first, second = postgres_pools
    users = await open_book(first)
    gate = Gate()
    held = first.run_interaction("place_then_hold", _place_then_hold_txn, gate, "acme", users["alice"], home_bet(),
                                 "k1", fingerprint_of(home_bet()), NOW, MAX_AGE_S)
    await gate.entered
    try:  # were the save to write m1's rows it would wait for the bet's locks: the gate would time out
        saved = await run(second, odds_store.save_odds_txn, snapshot(feed_match("m1", KICKOFF)), NOW)
    finally:
        gate.open()
    assert saved == SaveSummary(matches=0, prices=0, suspended=0)
    assert (await held).balance_cents == OPENING - 1_000
    assert await run(first, odds_store.feed_ages_txn) == {"soccer": NOW}
    await assert_money_adds_up(first)


@pytest_twisted.ensureDeferred
async def test_payout_above_the_tenant_limit_is_refused(database):
    users = await open_book(database)

    def limit_txn(txn: Any) -> None:
        txn.execute("UPDATE tenants SET max_payout_cents = 1759 WHERE slug = 'acme'")

    await run(database, limit_txn)
    assert (await _rejection(place(database, users["alice"], home_bet(1_000), "k1"))).code == "payout_too_high"
    placed = await place(database, users["alice"], home_bet(999), "k2")  # 999 × 1.76 = 1758.24 → 1758
    assert placed.bet["potential_payout_cents"] == 1_758


@pytest_twisted.ensureDeferred
async def test_the_same_key_replays_the_first_bet_and_debits_once(database):
    users = await open_book(database)
    first = await place(database, users["alice"], home_bet(1_000), "k1")
    await place(database, users["alice"], home_bet(500), "k2")
    again = await place(database, users["alice"], home_bet(1_000), "k1", now=KICKOFF + timedelta(days=1))
    assert again == replace(first, replayed=True)
    assert await run(database, balance_txn, users["alice"]) == OPENING - 1_500
    assert await run(database, count_txn, "bets") == 2
    replayed = await run(database, bet_store.replay_bet_txn, users["alice"], "k1", fingerprint_of(home_bet(1_000)))
    assert replayed == again
    assert await run(database, bet_store.replay_bet_txn, users["alice"], "unused", "fp") is None


@pytest_twisted.ensureDeferred
async def test_the_same_key_for_another_bet_is_a_conflict(database):
    users = await open_book(database, ("alice", "bob"))
    await place(database, users["alice"], home_bet(1_000), "k1")
    with pytest.raises(IdempotencyConflict):
        await place(database, users["alice"], home_bet(2_000), "k1")
    with pytest.raises(IdempotencyConflict):
        await run(database, bet_store.replay_bet_txn, users["alice"], "k1", "other")
    bobs = await place(database, users["bob"], home_bet(2_000), "k1")  # keys are per player
    assert bobs.replayed is False
    assert await run(database, count_txn, "bets") == 2


# ---- listing -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_players_bets_list_newest_first_in_pages_within_the_tenant(database):
    users = await open_book(database, ("alice", "bob"))
    ids = [(await place(database, users["alice"], home_bet(100 + n), f"k{n}")).bet["id"] for n in range(5)]
    await place(database, users["bob"], home_bet(), "k")
    first_page = await run(database, bet_store.list_bets_txn, "acme", users["alice"], limit=2)
    assert [b["id"] for b in first_page] == ids[:-3:-1]
    rest = await run(database, bet_store.list_bets_txn, "acme", users["alice"], before_id=first_page[-1]["id"])
    assert [b["id"] for b in rest] == ids[2::-1]
    await run(database, tenant_store.insert_tenant_txn, "betco", "Betco")
    assert await run(database, bet_store.list_bets_txn, "betco", users["alice"]) == []


# ---- settlement --------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome, credited", [("won", 1_760), ("lost", 0), ("void", 1_000)])
@pytest_twisted.ensureDeferred
async def test_settling_credits_the_payout_the_stake_or_nothing(database, outcome, credited):
    users = await open_book(database)
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    settled = await run(database, bet_store.settle_bet_txn, bet["id"], outcome, "FT 2-1")
    assert settled == Settlement(bet["id"], outcome, credited, settled=True)
    assert await run(database, balance_txn, users["alice"]) == OPENING - 1_000 + credited
    [listed] = await run(database, bet_store.list_bets_txn, "acme", users["alice"])
    assert (listed["status"], listed["payout_cents"]) == (outcome, credited)
    assert listed["settled_at"].endswith("Z")
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_settling_twice_credits_once(database):
    users = await open_book(database)
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    await run(database, bet_store.settle_bet_txn, bet["id"], "won", "FT 2-1")
    again = await run(database, bet_store.settle_bet_txn, bet["id"], "void", "FT 2-1")
    assert again == Settlement(bet["id"], "void", 0, settled=False)
    assert await run(database, balance_txn, users["alice"]) == OPENING - 1_000 + 1_760
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_the_ledger_refuses_a_second_payout_row_for_a_bet(database):
    users = await open_book(database)
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    await run(database, bet_store.settle_bet_txn, bet["id"], "won", "FT")

    def second_payout_txn(txn: Any) -> None:
        txn.execute("INSERT INTO ledger (tenant_id, user_id, bet_id, kind, amount_cents, balance_before_cents,"
                    " balance_after_cents) SELECT tenant_id, user_id, id, 'bet_payout', 1, 0, 1 FROM bets"
                    " WHERE id = %s",
                    (bet["id"],))

    with pytest.raises(IntegrityViolation) as caught:
        await run(database, second_payout_txn)
    assert caught.value.kind == "unique"


@pytest_twisted.ensureDeferred
async def test_settling_within_a_tenant_ignores_other_tenants_bets(database):
    users = await open_book(database)
    await run(database, tenant_store.insert_tenant_txn, "betco", "Betco")
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    elsewhere = await run(database, bet_store.settle_bet_txn, bet["id"], "void", "admin", tenant="betco")
    assert elsewhere.settled is False
    assert (await run(database, bet_store.settle_bet_txn, 999_999, "void", "admin")).settled is False
    here = await run(database, bet_store.settle_bet_txn, bet["id"], "void", "admin", tenant="acme")
    assert here == Settlement(bet["id"], "void", 1_000, settled=True)


@pytest_twisted.ensureDeferred
async def test_an_unknown_outcome_is_a_programming_error(database):
    users = await open_book(database)
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    with pytest.raises(ValueError):
        await run(database, bet_store.settle_bet_txn, bet["id"], "half_won", "?")


@pytest_twisted.ensureDeferred
async def test_matches_with_pending_bets_are_those_kicked_off(database):
    users = await open_book(database, match_ids=("m1", "m2", "m3"))
    later = snapshot(*(feed_match(m, KICKOFF) for m in ("m1", "m2", "m3")),  # a save suspends what it omits
                     feed_match("m4", KICKOFF + timedelta(hours=5)))
    await run(database, odds_store.save_odds_txn, later, FETCHED)
    for n, match in enumerate(("m1", "m2", "m4")):
        await place(database, users["alice"], home_bet(match_id=match), f"k{n}")
    settled = (await place(database, users["alice"], home_bet(match_id="m3"), "k3")).bet
    await run(database, bet_store.settle_bet_txn, settled["id"], "lost", "FT")
    assert await run(database, bet_store.matches_with_pending_bets_txn, NOW) == []
    due = await run(database, bet_store.matches_with_pending_bets_txn, KICKOFF)
    assert due == [PendingMatch("m1", "soccer", KICKOFF), PendingMatch("m2", "soccer", KICKOFF)]
    assert len(await run(database, bet_store.matches_with_pending_bets_txn, KICKOFF, 1)) == 1


@pytest_twisted.ensureDeferred
async def test_pending_bets_of_a_match_carry_what_settlement_needs(database):
    users = await open_book(database)
    first = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    line = BetRequest("m1", "over_under", "2.5", "over", 500, D("1.9"))
    second = (await place(database, users["alice"], line, "k2")).bet
    assert await run(database, bet_store.pending_bets_txn, "m1") == [
        PendingBet(first["id"], "acme", users["alice"], "1x2", None, "home", 1_000, D("1.76"), KICKOFF),
        PendingBet(second["id"], "acme", users["alice"], "over_under", "2.5", "over", 500, D("1.9"), KICKOFF)]
    assert await run(database, bet_store.pending_bets_txn, "nope") == []


@pytest_twisted.ensureDeferred
async def test_a_bet_under_review_stays_pending_until_settled(database):
    users = await open_book(database)
    bet = (await place(database, users["alice"], home_bet(1_000), "k1")).bet
    other = (await place(database, users["alice"], home_bet(500), "k2")).bet
    assert await run(database, bet_store.mark_review_txn, bet["id"], "unknown status 'Awarded'") is True
    assert await run(database, bet_store.mark_review_txn, bet["id"], "unknown status 'Awarded'") is False  # once
    [review] = await run(database, bet_store.bets_by_status_txn, "acme", "review")
    assert (review["id"], review["status"]) == (bet["id"], "pending")
    assert review["review_reason"] == "unknown status 'Awarded'"
    assert review["username"] == "alice" and review["user_id"] == users["alice"]
    assert [b["id"] for b in await run(database, bet_store.bets_by_status_txn, "acme", "pending")] == [other["id"]]
    pending = (await run(database, bet_store.pending_bets_txn, "m1"))[0]
    assert pending.review_reason == "unknown status 'Awarded'"
    await run(database, bet_store.settle_bet_txn, bet["id"], "void", "manual: awarded")
    assert await run(database, bet_store.bets_by_status_txn, "acme", "review") == []
    [void] = await run(database, bet_store.bets_by_status_txn, "acme", "void")
    assert (void["review_reason"], void["settle_reason"]) == (None, "manual: awarded")
    assert await run(database, bet_store.mark_review_txn, bet["id"], "too late") is False
    assert await run(database, bet_store.bet_status_txn, "acme", bet["id"]) == "void"
    assert await run(database, bet_store.bet_status_txn, "acme", other["id"]) == "pending"
    with pytest.raises(ValueError):
        await run(database, bet_store.bets_by_status_txn, "acme", "cashed_out")


@pytest_twisted.ensureDeferred
async def test_tenant_listings_stay_within_the_tenant(database):
    users = await open_book(database)
    await run(database, tenant_store.insert_tenant_txn, "betco", "Betco")
    bet = (await place(database, users["alice"], home_bet(), "k1")).bet
    assert await run(database, bet_store.bets_by_status_txn, "betco", "pending") == []
    assert await run(database, bet_store.bets_by_status_txn, "nobody", "pending") is None
    assert await run(database, bet_store.bet_status_txn, "betco", bet["id"]) is None
    assert await run(database, bet_store.bet_status_txn, "acme", 999_999) is None


def _deactivate_txn(txn: Any, table: str, where: str, value: Any) -> None:
    txn.execute(f"UPDATE {table} SET is_active = FALSE WHERE {where} = %s", (value,))


@pytest.mark.parametrize("table, where", [("users", "username"), ("tenants", "slug")])
@pytest_twisted.ensureDeferred
async def test_a_deactivated_player_or_sportsbook_cannot_bet(database, table, where):
    users = await open_book(database)
    await run(database, _deactivate_txn, table, where, "alice" if table == "users" else "acme")
    rejected = await _rejection(place(database, users["alice"], home_bet(), "k1"))
    assert rejected.code == "unknown_user"
    assert await run(database, balance_txn, users["alice"]) == OPENING
