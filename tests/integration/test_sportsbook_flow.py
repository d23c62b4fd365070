"""The sportsbook's workers end to end: a fake Goalserve on loopback, the real client, real databases.

Odds ingest (fetch → parse → one transaction, no connection held while fetching), then bets placed at
those prices, then settlement cycles reading the fake's results pages: FT, AET (regulation score),
postponed (void only after the wait), a failing page (bets stay pending, never "no result"), a second
cycle that changes nothing, and two settlers running at once on Postgres.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults, succeed
from twisted.internet.task import Clock

from tenantsvc.adapters.db import bet_store, odds_store
from tenantsvc.core.bets import bet_fingerprint
from tenantsvc.core.odds import BetRequest
from tenantsvc.core.settlement import SettlementPolicy
from tenantsvc.obs.metrics import Metrics
from prometheus_client import CollectorRegistry
from tenantsvc.services.odds_ingest import OddsIngest
from tenantsvc.services.settlement import SettlementService
from tenantsvc.adapters.db import tenant_store
from tests.integration.test_bet_store import assert_money_adds_up, balance_txn
from tests.support.fake_goalserve import fake_goalserve  # noqa: F401 - fixture
from tests.support.logs import eliot_messages  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

BEFORE_KICKOFFS = datetime(2030, 1, 10, 12, 0, tzinfo=timezone.utc)
# 6001001/6001002 kicked off on 12 Jan (results page d-1), 6001004 on 13 Jan 20:00 (page home).
AFTER_KICKOFFS = datetime(2030, 1, 13, 23, 0, tzinfo=timezone.utc)
ONE_WEEK_LATER = datetime(2030, 1, 20, 23, 0, tzinfo=timezone.utc)
OPENING = 100_000
D = __import__("decimal").Decimal


def clock_at(moment: datetime) -> Clock:
    """A Clock reading ``moment``."""
    clock = Clock()
    clock.advance(moment.timestamp())
    return clock


def synchronous(fn: Any, *args: Any) -> Any:
    """``run_in_thread`` for tests: run at once (the parse is pure)."""
    return succeed(fn(*args))


def metrics() -> Metrics:
    """Metrics on a private registry."""
    return Metrics(CollectorRegistry(), "all")


async def ingest_soccer(db: Any, server: Any, clock: Clock) -> odds_store.SaveSummary:
    """Poll the fake's soccer odds once into ``db``."""
    return await OddsIngest(server.client(reactor, clock=clock), db, clock, synchronous).ingest("soccer")


def settlement(db: Any, server: Any, clock: Clock, *, postponed_void_after_s: float = 48 * 3600) -> SettlementService:
    """A settlement service reading the fake's results into ``db``."""
    return SettlementService(server.client(reactor, clock=clock), db, clock, synchronous,
                             policy=SettlementPolicy(postponed_void_after_s=postponed_void_after_s),
                             metrics=metrics())


async def bet(db: Any, user_id: int, key: str, match_id: str, market: str, selection: str, odds: str,
              line: str | None = None, stake_cents: int = 1_000) -> int:
    """Place a bet at ``odds`` before the kick-offs; its id."""
    request = BetRequest(match_id, market, line, selection, stake_cents, D(odds))
    placed = await db.run_interaction("place", bet_store.place_bet_txn, "acme", user_id, request, key,
                                      bet_fingerprint(request), BEFORE_KICKOFFS, 10 ** 9)
    return int(placed.bet["id"])


async def open_book(db: Any, usernames: tuple[str, ...] = ("alice",)) -> list[int]:
    """Tenant acme with players; their user ids."""
    await db.run_interaction("tenant", tenant_store.insert_tenant_txn, "acme", "Acme")
    return [(await db.run_interaction("user", tenant_store.create_user_txn, "acme", name, "hash"))["user_id"]
            for name in usernames]


def statuses_txn(txn: Any) -> dict[int, tuple[str, int | None]]:
    """Every bet's status and payout."""
    return {int(r["id"]): (r["status"], r["payout_cents"]) for r in txn.all("SELECT id, status, payout_cents FROM bets")}


@pytest_twisted.ensureDeferred
async def test_ingest_saves_the_feed_in_one_transaction_after_fetching_and_parsing(database, fake_goalserve,
                                                                                   eliot_messages):
    summary = await ingest_soccer(database, fake_goalserve, clock_at(BEFORE_KICKOFFS))
    assert (summary.matches, summary.prices) == (4, 22)
    odds = await database.run_interaction("read", odds_store.upcoming_odds_txn, "soccer", BEFORE_KICKOFFS)
    assert [m.id for m in odds.matches] == ["6001001", "6001002", "6001003", "6001004"]
    (task,) = {m["task_uuid"] for m in eliot_messages if m.get("action_type") == "tenantsvc:odds:ingest"}
    order = [m.get("message_type") or f'{m["action_type"]}:{m["action_status"]}' for m in eliot_messages
             if m["task_uuid"] == task and m.get("action_type") != "tenantsvc:odds:ingest"]
    assert order == ["tenantsvc:feed:fetch:started", "tenantsvc:feed:fetch:succeeded", "tenantsvc:odds:fetched",
                     "tenantsvc:odds:parsed", "tenantsvc:db:interaction:started",
                     "tenantsvc:db:interaction:succeeded", "tenantsvc:odds:saved"]
    assert fake_goalserve.api_key not in repr(eliot_messages)


@pytest_twisted.ensureDeferred
async def test_no_connection_is_held_while_the_feed_is_slow(database, fake_goalserve):
    gate = fake_goalserve.fake.hold("getodds/soccer")
    polling = ensureDeferred(ingest_soccer(database, fake_goalserve, clock_at(BEFORE_KICKOFFS)))
    await fake_goalserve.fake.arrived("getodds/soccer")
    assert database.snapshot().in_use == 0
    gate.release()
    assert (await polling).matches == 4


@pytest_twisted.ensureDeferred
async def test_settlement_pays_by_the_rules_once_and_waits_where_it_must(database, fake_goalserve):
    await ingest_soccer(database, fake_goalserve, clock_at(BEFORE_KICKOFFS))
    (alice,) = await open_book(database)
    won_home = await bet(database, alice, "k1", "6001001", "1x2", "home", "2.10")          # FT 2-1
    lost_over = await bet(database, alice, "k2", "6001001", "over_under", "under", "1.90", "2.5")  # 3 goals
    aet_draw = await bet(database, alice, "k3", "6001002", "double_chance", "home_draw", "1.08")  # AET, 2-2 at 90'
    postponed = await bet(database, alice, "k4", "6001004", "1x2", "home", "1.55")          # Postp.
    fake_goalserve.fake.serve_fixture("soccernew/d-1", "results_soccer_home.json")

    clock = clock_at(AFTER_KICKOFFS)
    report = await settlement(database, fake_goalserve, clock).run_cycle()
    statuses = await database.run_interaction("statuses", statuses_txn)
    assert statuses == {won_home: ("won", 2100), lost_over: ("lost", 0), aet_draw: ("won", 1080),
                        postponed: ("pending", None)}
    assert report.pages_fetched == 2 and report.pending == 1
    assert await database.run_interaction("balance", balance_txn, alice) == OPENING - 4_000 + 2_100 + 1_080
    assert len(fake_goalserve.fake.requests_for("soccernew/d-1")) == 1, "each page once per cycle"

    again = await settlement(database, fake_goalserve, clock).run_cycle()
    assert sum(again.settled.values()) == 0 and again.matches == 1
    assert await database.run_interaction("statuses", statuses_txn) == statuses

    fake_goalserve.fake.serve_fixture("soccernew/d-7", "results_soccer_home.json")  # the 13th, seen a week on
    week_later = await settlement(database, fake_goalserve, clock_at(ONE_WEEK_LATER)).run_cycle()
    assert week_later.settled["void"] == 1
    assert (await database.run_interaction("statuses", statuses_txn))[postponed] == ("void", 1_000)
    await assert_money_adds_up(database)


@pytest_twisted.ensureDeferred
async def test_a_failing_results_page_leaves_its_bets_pending(database, fake_goalserve):
    await ingest_soccer(database, fake_goalserve, clock_at(BEFORE_KICKOFFS))
    (alice,) = await open_book(database)
    await bet(database, alice, "k1", "6001001", "1x2", "home", "2.10")
    fake_goalserve.fake.serve_status("soccernew/d-4", 500)
    # Past the review deadline (kick-off + 72 h): a failed page must still not count as "no result".
    report = await settlement(database, fake_goalserve, clock_at(datetime(2030, 1, 16, 23, 0, tzinfo=timezone.utc))).run_cycle()
    assert (report.pages_failed, report.reviewed, sum(report.settled.values())) == (1, 0, 0)
    review = await database.run_interaction("review", bet_store.bets_by_status_txn, "acme", "review")
    assert review == []


@pytest_twisted.ensureDeferred
async def test_unknown_statuses_go_to_review_not_to_lost(database, fake_goalserve):
    await ingest_soccer(database, fake_goalserve, clock_at(BEFORE_KICKOFFS))
    (alice,) = await open_book(database)
    bet_id = await bet(database, alice, "k1", "6001001", "1x2", "home", "2.10")
    fake_goalserve.fake.serve_bytes(
        "soccernew/d-1",
        b'{"scores": {"category": {"@name": "x", "@id": "1", "matches": {"match": '
        b'{"@id": "6001001", "@status": "Weird", "localteam": {"@name": "A", "@goals": "1"},'
        b' "visitorteam": {"@name": "B", "@goals": "0"}}}}}}')
    report = await settlement(database, fake_goalserve, clock_at(AFTER_KICKOFFS)).run_cycle()
    assert report.reviewed == 1
    (waiting,) = await database.run_interaction("review", bet_store.bets_by_status_txn, "acme", "review")
    assert waiting["id"] == bet_id and "Weird" in waiting["review_reason"] and waiting["status"] == "pending"


@pytest_twisted.ensureDeferred
async def test_two_settlers_running_at_once_pay_every_bet_exactly_once(database_factory, fake_goalserve):
    url = database_factory.new_url("postgres")
    first, second = database_factory.open(url=url), database_factory.open(url=url)
    from tests.support.databases import migrate

    await migrate(first)
    await ingest_soccer(first, fake_goalserve, clock_at(BEFORE_KICKOFFS))
    players = await open_book(first, tuple(f"p{i}" for i in range(20)))
    choices = [("6001001", "1x2", "home", "2.10", None), ("6001001", "over_under", "over", "1.90", "2.5"),
               ("6001002", "double_chance", "home_draw", "1.08", None),
               ("6001001", "double_chance", "draw_away", "1.72", None)]
    for n in range(120):
        match_id, market, selection, odds, line = choices[n % len(choices)]
        await bet(first, players[n % len(players)], f"k{n}", match_id, market, selection, odds, line, 500)
    fake_goalserve.fake.serve_fixture("soccernew/d-1", "results_soccer_home.json")
    clock = clock_at(AFTER_KICKOFFS)
    reports = await gatherResults([ensureDeferred(settlement(db, fake_goalserve, clock).run_cycle())
                                   for db in (first, second)])
    assert sum(sum(r.settled.values()) for r in reports) == 120
    statuses = await first.run_interaction("statuses", statuses_txn)
    assert all(status in ("won", "lost") for status, _ in statuses.values())
    await assert_money_adds_up(first)


@pytest_twisted.ensureDeferred
async def test_the_poller_waits_for_the_feeds_retry_after_on_a_429(database, fake_goalserve):
    from twisted.internet.defer import Deferred

    from tenantsvc.workers.odds_poller import OddsPoller

    clock = clock_at(BEFORE_KICKOFFS)
    ingest = OddsIngest(fake_goalserve.client(reactor, clock=clock), database, clock, synchronous)
    runs: list[Deferred] = []

    def observed_ingest(sport: str) -> Deferred:
        run = ensureDeferred(ingest.ingest(sport))
        runs.append(run)
        return run

    fake_goalserve.fake.serve_status("getodds/soccer", 429, retry_after="700")
    registry_metrics = metrics()
    poller = OddsPoller(["soccer"], observed_ingest, clock=clock, metrics=registry_metrics, period_s=300,
                        backoff_base_s=300, backoff_cap_s=1800, random=lambda: 0.0)
    poller.startService()
    try:
        clock.advance(0)
        await runs[0].addErrback(lambda failure: None)
        state = poller.describe()["soccer"]
        assert (state["last_error"], state["consecutive_failures"]) == ("rate_limited", 1)
        assert 700 <= state["next_run_in_s"], "backoff (150 s at random 0) yields to Retry-After"
        fake_goalserve.fake.serve_fixture("getodds/soccer", "odds_soccer_list.json")
        clock.advance(699)
        assert len(runs) == 1, "not a request before Retry-After has passed"
        clock.advance(1)
        await runs[1]
        assert poller.describe()["soccer"]["consecutive_failures"] == 0
        odds = await database.run_interaction("read", odds_store.upcoming_odds_txn, "soccer", BEFORE_KICKOFFS)
        assert len(odds.matches) == 4
        assert registry_metrics.feed_errors.labels("soccer", "rate_limited")._value.get() == 1
    finally:
        await poller.stopService()
