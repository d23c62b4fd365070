"""Property: for random bets and random results, settlement pays exactly what the rules say, exactly once.

Each example builds a fresh SQLite database (threadless pool, so every interaction completes at once),
saves odds for a few matches, places random bets through the real placement transaction, serves random
results as a Goalserve results document from an in-memory feed, and runs two settlement cycles. Then:
every bet's status is what ``core.settlement.decide`` says; each settled bet has exactly one settlement
ledger row of the right amount; every wallet equals the sum of its ledger rows; the second cycle changes
nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet.defer import ensureDeferred, succeed
from twisted.internet.task import Clock

from tenantsvc.adapters.db import bet_store, odds_store, tenant_store
from tenantsvc.adapters.db.pool import Database
from tenantsvc.config import load_settings
from tenantsvc.core.bets import bet_fingerprint
from tenantsvc.core.odds import BetRequest, FeedMatch, OddsSnapshot, Price
from tenantsvc.core.goalserve_results import parse_results_document
from tenantsvc.core.settlement import SETTLED_OUTCOMES, WON, SettlementPolicy, credit_cents, decide
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.settlement import SettlementService
from tests.support.databases import migrate
from tests.support.web_harness import ThreadlessConnectionPool, fired

KICKOFF = datetime(2030, 3, 1, 15, 0, tzinfo=timezone.utc)
PLACED_AT = KICKOFF - timedelta(hours=3)
SETTLED_AT = KICKOFF + timedelta(hours=4)  # same day: results page "home"
OPENING = 100_000
MATCH_IDS = ("p1", "p2", "p3")
PRICES = (
    Price("1x2", None, "home", Decimal("2.10")), Price("1x2", None, "draw", Decimal("3.30")),
    Price("1x2", None, "away", Decimal("3.75")),
    Price("double_chance", None, "home_draw", Decimal("1.25")),
    Price("double_chance", None, "home_away", Decimal("1.33")),
    Price("double_chance", None, "draw_away", Decimal("1.80")),
    Price("btts", None, "yes", Decimal("1.72")), Price("btts", None, "no", Decimal("2.05")),
    Price("over_under", "2.5", "over", Decimal("1.95")), Price("over_under", "2.5", "under", Decimal("1.85")),
    Price("over_under", "3", "over", Decimal("2.40")), Price("over_under", "3", "under", Decimal("1.55")),
)
STATUSES = ("FT", "AET", "Pen.", "Cancl.", "Postp.", "HT", "67", "Weird")

results_strategy = st.fixed_dictionaries({
    match_id: st.one_of(st.none(), st.tuples(st.sampled_from(STATUSES), st.integers(0, 5), st.integers(0, 5)))
    for match_id in MATCH_IDS
})
bets_strategy = st.lists(
    st.tuples(st.sampled_from(MATCH_IDS), st.sampled_from(PRICES), st.integers(100, 20_000), st.integers(0, 2)),
    min_size=1, max_size=25,
)


class ResultsFeed:
    """An in-memory results feed: one document for page ``home``, empty pages otherwise."""

    def __init__(self, results: dict[str, Any]):
        matches = []
        for match_id, result in results.items():
            if result is None:
                continue  # not in the feed at all
            status, home, away = result
            match = {"@id": match_id, "@status": status, "localteam": {"@name": "H", "@goals": str(home)},
                     "visitorteam": {"@name": "A", "@goals": str(away)}}
            if status in ("AET", "Pen."):
                match["ft"] = {"@score": f"{home}-{away}"}
                match["localteam"]["@goals"], match["visitorteam"]["@goals"] = str(home + 1), str(away)
            matches.append(match)
        self._home = json.dumps({"scores": {"category": {"@name": "L", "@id": "1", "matches": {"match": matches}}}})
        self.fetches = 0

    def fetch_results(self, sport: str, page: str) -> Any:
        """The page's document."""
        self.fetches += 1
        return succeed(self._home.encode() if page == "home" else b'{"scores": {}}')


def open_database(path: str) -> Database:
    """A migrated SQLite database on a threadless pool."""
    db = Database(load_settings({"DATABASE_URL": path}, role="web"), Clock(), pool_factory=ThreadlessConnectionPool)
    fired(migrate(db))
    return db


def clock_at(moment: datetime) -> Clock:
    """A Clock reading ``moment``."""
    clock = Clock()
    clock.advance(moment.timestamp())
    return clock


def run(db: Database, fn: Any, *args: Any) -> Any:
    """Run one interaction synchronously."""
    return fired(db.run_interaction(fn.__name__, fn, *args))


def settlement_rows_txn(txn: Any) -> dict[int, list[tuple[str, int]]]:
    """Settlement ledger rows (payouts and refunds) by bet."""
    rows: dict[int, list[tuple[str, int]]] = {}
    for row in txn.all("SELECT bet_id, kind, amount_cents FROM ledger WHERE kind IN ('bet_payout', 'bet_refund')"):
        rows.setdefault(int(row["bet_id"]), []).append((row["kind"], int(row["amount_cents"])))
    return rows


def wallets_match_ledger_txn(txn: Any) -> bool:
    """Every wallet equals the sum of its ledger rows."""
    rows = txn.all("SELECT w.balance_cents, (SELECT COALESCE(SUM(amount_cents), 0) FROM ledger l"
                   " WHERE l.user_id = w.user_id) AS total FROM wallets w")
    return all(int(r["balance_cents"]) == int(r["total"]) for r in rows)


def bets_txn(txn: Any) -> list[dict[str, Any]]:
    """Every bet with what settlement needs to be checked."""
    return txn.all("SELECT id, match_id, market, line, selection, stake_cents, odds, status, payout_cents FROM bets")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results=results_strategy, bets=bets_strategy)
def test_random_bets_and_results_settle_exactly_as_the_rules_say_and_once(results, bets):
    with tempfile.TemporaryDirectory() as directory:
        db = open_database(os.path.join(directory, "book.sqlite3"))
        try:
            run(db, tenant_store.insert_tenant_txn, "acme", "Acme")
            users = [run(db, tenant_store.create_user_txn, "acme", f"p{i}", "hash")["user_id"] for i in range(3)]
            matches = tuple(FeedMatch(m, "L", "H", "A", KICKOFF, "Not Started", PRICES) for m in MATCH_IDS)
            run(db, odds_store.save_odds_txn, OddsSnapshot("soccer", 1, matches), PLACED_AT)
            for n, (match_id, price, stake, player) in enumerate(bets):
                request = BetRequest(match_id, price.market, price.line, price.selection, stake, price.odds)
                try:
                    run(db, bet_store.place_bet_txn, "acme", users[player], request, f"k{n}",
                        bet_fingerprint(request), PLACED_AT, 3600.0)
                except bet_store.BetRejected as rejected:
                    assert rejected.code == "insufficient_funds"
            feed = ResultsFeed(results)
            service = SettlementService(feed, db, clock_at(SETTLED_AT), lambda fn, *a: succeed(fn(*a)),
                                        policy=SettlementPolicy(), metrics=Metrics(CollectorRegistry(), "all"))
            fired(ensureDeferred(service.run_cycle()))
            after_first = run(db, bets_txn)
            fired(ensureDeferred(service.run_cycle()))
            assert run(db, bets_txn) == after_first, "a second cycle changes nothing"

            parsed = {r.match_id: r for r in parse_results_document(feed._home.encode())}
            ledger = run(db, settlement_rows_txn)
            for bet in after_first:
                decision = decide(bet["market"], bet["line"] or None, bet["selection"], parsed.get(bet["match_id"]),
                                  kickoff=KICKOFF, now=SETTLED_AT)
                expected_status = decision.outcome if decision.outcome in SETTLED_OUTCOMES else "pending"
                assert bet["status"] == expected_status, (bet, decision)
                if expected_status == "pending":
                    assert int(bet["id"]) not in ledger
                    continue
                odds = Decimal(str(bet["odds"]))
                credit = credit_cents(expected_status, int(bet["stake_cents"]), odds)
                expected_rows = [] if credit == 0 else [("bet_payout" if expected_status == WON else "bet_refund", credit)]
                assert ledger.get(int(bet["id"]), []) == expected_rows
            assert run(db, wallets_match_ledger_txn)
        finally:
            db.close()
