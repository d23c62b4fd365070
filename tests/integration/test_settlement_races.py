"""Money under concurrency: bets draining one balance, duplicate requests, and settlers racing on Postgres,
plus a property over random bets and outcomes on SQLite. Every test ends with ``ledger_consistency_txn``.

Races run on two ``Database`` pools (separate connections and threads) on one Postgres database. Where
an exact interleaving matters, a ``Gate`` holds the first transaction open until the second is seen
waiting for a row lock in ``pg_stat_activity``.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from tenantsvc.adapters.db import bet_store, odds_store, tenant_store
from tenantsvc.adapters.db.bet_store import BetRejected
from tenantsvc.adapters.db.dialects import SqliteDialect
from tenantsvc.adapters.db.migrations import apply_migrations_txn
from tenantsvc.adapters.db.pool import Txn
from tenantsvc.config import load_settings
from tenantsvc.core.targets import SqliteTarget
from tests.integration.test_bet_store import (
    FETCHED,
    KICKOFF,
    MAX_AGE_S,
    NOW,
    OPENING,
    assert_money_adds_up,
    balance_txn,
    count_txn,
    fingerprint_of,
    home_bet,
    ledger_consistency_txn,
    open_book,
    place,
    place_or_replay,
)
from tests.integration.test_odds_store import feed_match, run, snapshot
from tests.support.databases import migrate
from tests.support.interactions import Gate
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

POOL_ENV = {"DB_WEB_POOL_MAX": "4", "DB_POOL_MIN": "1"}


@pytest.fixture
def two_pools(database_factory) -> tuple[Any, Any]:
    """Two migrated ``Database`` pools (four connections each) on one fresh Postgres database."""
    url = database_factory.new_url("postgres")
    first, second = (database_factory.open(url=url, **POOL_ENV) for _ in range(2))
    pytest_twisted.blockon(migrate(first))
    return first, second


def _run_then_hold_txn(txn: Any, gate: Gate, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(txn, *args)``, then keep the transaction open (locks held, uncommitted) until the gate opens."""
    result = fn(txn, *args)
    gate.hold_txn(txn)
    return result


def _lock_waiters_txn(txn: Any) -> int:
    row = txn.one("SELECT COUNT(*) AS n FROM pg_stat_activity"
                  " WHERE datname = current_database() AND wait_event_type = 'Lock'")
    return int(row["n"]) if row else 0


async def _while_held(db: Any, fn: Callable[..., Any], *args: Any) -> tuple[Gate, Deferred]:
    """Start ``fn`` in a transaction that stays open after it ran; returns the gate and its result."""
    gate = Gate()
    held = db.run_interaction(fn.__name__, _run_then_hold_txn, gate, fn, *args)
    await gate.entered
    return gate, held


async def _blocked(observer: Any) -> None:
    await eventually(lambda: run(observer, _lock_waiters_txn), within_s=5, what="a transaction waiting on a row lock")


# ---- placement races ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_second_bet_waiting_on_the_wallet_sees_the_first_debit(two_pools):
    first, second = two_pools
    users = await open_book(first)
    gate, held = await _while_held(first, bet_store.place_bet_txn, "acme", users["alice"], home_bet(60_000), "k1",
                                   fingerprint_of(home_bet(60_000)), NOW, MAX_AGE_S)
    try:
        waiting = place(second, users["alice"], home_bet(60_000), "k2")
        await _blocked(first)
    finally:
        gate.open()
    assert (await held).balance_cents == OPENING - 60_000
    with pytest.raises(BetRejected) as caught:
        await waiting
    assert caught.value.code == "insufficient_funds"
    assert await run(first, balance_txn, users["alice"]) == OPENING - 60_000
    await assert_money_adds_up(first)


@pytest_twisted.ensureDeferred
async def test_concurrent_bets_drain_a_balance_to_exactly_the_affordable_ones(two_pools):
    users = await open_book(two_pools[0])
    attempts = [place(two_pools[n % 2], users["alice"], home_bet(30_000), f"k{n}") for n in range(10)]
    outcomes = await gatherResults([d.addErrback(lambda f: f.trap(BetRejected) and f.value) for d in attempts])
    refused = [o for o in outcomes if isinstance(o, BetRejected)]
    assert len(outcomes) - len(refused) == 3
    assert {r.code for r in refused} == {"insufficient_funds"}
    assert await run(two_pools[0], balance_txn, users["alice"]) == OPENING - 90_000
    await assert_money_adds_up(two_pools[0])


@pytest_twisted.ensureDeferred
async def test_the_same_key_twice_at_once_places_one_bet_and_debits_once(two_pools):
    first, second = two_pools
    users = await open_book(first)
    bet = home_bet(5_000)
    gate, held = await _while_held(first, bet_store.place_bet_txn, "acme", users["alice"], bet, "same",
                                   fingerprint_of(bet), NOW, MAX_AGE_S)
    try:
        duplicate = ensureDeferred(place_or_replay(second, users["alice"], bet, "same"))
        await _blocked(first)
    finally:
        gate.open()
    original, replayed = await held, await duplicate
    assert (original.replayed, replayed.replayed) == (False, True)
    assert replayed.bet == original.bet and replayed.balance_cents == original.balance_cents == OPENING - 5_000
    assert await run(first, count_txn, "bets") == 1
    assert await run(first, balance_txn, users["alice"]) == OPENING - 5_000
    await assert_money_adds_up(first)


@pytest_twisted.ensureDeferred
async def test_many_identical_requests_at_once_place_one_bet(two_pools):
    users = await open_book(two_pools[0])
    results = await gatherResults([
        ensureDeferred(place_or_replay(two_pools[n % 2], users["alice"], home_bet(5_000), "same")) for n in range(8)])
    assert [r.replayed for r in results].count(False) == 1
    assert len({r.bet["id"] for r in results}) == 1
    assert await run(two_pools[0], balance_txn, users["alice"]) == OPENING - 5_000
    await assert_money_adds_up(two_pools[0])


@pytest_twisted.ensureDeferred
async def test_identical_requests_staking_the_whole_balance_all_answer_with_the_one_bet(two_pools):
    """The first debit empties the wallet: the others must still replay its bet, never insufficient_funds."""
    users = await open_book(two_pools[0])
    whole = home_bet(OPENING // 10)
    await run(two_pools[0], tenant_store.credit_wallet_txn, "acme", "alice", whole.stake_cents - OPENING, "set up",
              None)
    # ``place``, not ``place_or_replay``: each later request waits on the wallet and then replays in the same
    # transaction, so none even reaches the unique index.
    results = await gatherResults([place(two_pools[n % 2], users["alice"], whole, "same") for n in range(12)])
    assert [r.replayed for r in results].count(False) == 1
    assert len({r.bet["id"] for r in results}) == 1 and {r.balance_cents for r in results} == {0}
    assert await run(two_pools[0], count_txn, "bets") == 1
    await assert_money_adds_up(two_pools[0])


@pytest_twisted.ensureDeferred
async def test_identical_debits_of_the_whole_balance_all_answer_with_the_one_ledger_row(two_pools):
    first, second = two_pools
    users = await open_book(first)
    gate, held = await _while_held(first, tenant_store.credit_wallet_txn, "acme", "alice", -OPENING, "cash out",
                                   "same")
    try:
        duplicates = [run(second, tenant_store.credit_wallet_txn, "acme", "alice", -OPENING, "cash out", "same")
                      for _ in range(3)]
        await _blocked(first)
    finally:
        gate.open()
    results = [await held, *await gatherResults(duplicates)]
    assert [r.replayed for r in results] == [False, True, True, True]
    assert len({r.ledger_id for r in results}) == 1 and {r.balance_cents for r in results} == {0}
    assert await run(first, balance_txn, users["alice"]) == 0
    await assert_money_adds_up(first)


# ---- settlement races --------------------------------------------------------------------------


def _place_all_txn(txn: Any, bets: list[tuple[int, Any, str]]) -> list[int]:
    """Place every (user id, bet, key) in one transaction; the bet ids."""
    return [bet_store.place_bet_txn(txn, "acme", user_id, bet, key, fingerprint_of(bet), NOW, MAX_AGE_S).bet["id"]
            for user_id, bet, key in bets]


async def _random_bets(db: Any, rng: random.Random, count: int) -> dict[int, str]:
    """``count`` bets of random players, selections and stakes; bet id → the outcome to settle it with."""
    users = await open_book(db, tuple(f"player{n}" for n in range(10)), match_ids=("m1", "m2"))
    choices = [home_bet(), home_bet(selection="draw", odds=Decimal("3.4")),
               home_bet(selection="away", odds=Decimal("4.5"))]
    bets = [(rng.choice(list(users.values())),
             replace(rng.choice(choices), match_id=rng.choice(("m1", "m2")), stake_cents=rng.randint(100, 4_000)),
             f"k{n}")
            for n in range(count)]
    ids = await run(db, _place_all_txn, bets)
    return {bet_id: rng.choice(bet_store.OUTCOMES) for bet_id in ids}


def _settle_all(db: Any, outcomes: dict[int, str]) -> Deferred:
    """Settle every bet (concurrently, on ``db``'s connections); a Deferred of the ``Settlement`` list."""
    return gatherResults([run(db, bet_store.settle_bet_txn, bet_id, outcome, "FT")
                                for bet_id, outcome in outcomes.items()])


@pytest_twisted.ensureDeferred
async def test_two_settlers_settle_every_bet_exactly_once(two_pools):
    first, second = two_pools
    outcomes = await _random_bets(first, random.Random(20300101), 200)
    results = await gatherResults([_settle_all(first, outcomes), _settle_all(second, outcomes)])
    settled = [s for s in results[0] + results[1] if s.settled]
    assert sorted(s.bet_id for s in settled) == sorted(outcomes)
    assert await run(first, count_txn, "bets", "status = 'pending'") == 0
    await assert_money_adds_up(first)


@pytest_twisted.ensureDeferred
async def test_a_settler_skips_a_bet_another_one_holds_and_then_finds_it_settled(two_pools):
    first, second = two_pools
    users = await open_book(first)
    bet_id = (await place(first, users["alice"], home_bet(1_000), "k1")).bet["id"]
    gate, held = await _while_held(first, bet_store.settle_bet_txn, bet_id, "won", "FT")
    try:
        skipped = await run(second, bet_store.settle_bet_txn, bet_id, "won", "FT")  # SKIP LOCKED: no waiting
    finally:
        gate.open()
    assert skipped.settled is False and (await held).settled is True
    assert (await run(second, bet_store.settle_bet_txn, bet_id, "won", "FT")).settled is False
    assert await run(first, balance_txn, users["alice"]) == OPENING - 1_000 + 1_760
    await assert_money_adds_up(first)


# ---- property: random bets and outcomes on SQLite ----------------------------------------------


class SqliteBook:
    """A migrated in-memory SQLite database whose transactions run synchronously (no reactor, no pool)."""

    def __init__(self) -> None:
        self._dialect = SqliteDialect(SqliteTarget(":memory:"), load_settings({"DATABASE_URL": "unused.sqlite3"}))
        self._connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._dialect.open_connection(self._connection)
        self.run(apply_migrations_txn, self._dialect.types)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(txn, …)`` in one transaction: committed on return, rolled back if it raises."""
        cursor = self._connection.cursor()
        self._dialect.begin(cursor)
        try:
            result = fn(Txn(cursor, self._dialect), *args, **kwargs)
        except BaseException:
            self._connection.rollback()
            raise
        self._connection.commit()
        return result

    def close(self) -> None:
        """Close the connection (the database goes with it)."""
        self._connection.close()


SELECTIONS = [("home", "1.76"), ("draw", "3.4"), ("away", "4.5")]
bet_plans = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(SELECTIONS), st.integers(100, 60_000),
              st.sampled_from(bet_store.OUTCOMES + ("unsettled",)), st.booleans()),
    min_size=1, max_size=12,
)


def _open_sqlite_book(book: SqliteBook) -> list[int]:
    book.run(tenant_store.insert_tenant_txn, "acme", "Acme")
    users = [book.run(tenant_store.create_user_txn, "acme", f"p{n}", "hash")["user_id"] for n in range(3)]
    book.run(odds_store.save_odds_txn, snapshot(feed_match("m1", KICKOFF)), FETCHED)
    return users


def _play(book: SqliteBook, user_id: int, key: str, plan: tuple[Any, ...], balance: int) -> int:
    """Place one planned bet and settle it as planned (maybe twice); the player's balance afterwards."""
    _, (selection, odds), stake, outcome, settle_twice = plan
    bet = replace(home_bet(stake), selection=selection, odds=Decimal(odds))
    try:
        placed = book.run(bet_store.place_bet_txn, "acme", user_id, bet, key, fingerprint_of(bet), NOW, MAX_AGE_S)
    except BetRejected as rejected:
        assert rejected.code == "insufficient_funds" and stake > balance
        return balance
    assert placed.balance_cents == balance - stake
    if outcome == "unsettled":
        return balance - stake
    settlement = book.run(bet_store.settle_bet_txn, placed.bet["id"], outcome, "FT")
    assert settlement.settled and settlement.credited_cents == {
        "won": placed.bet["potential_payout_cents"], "void": stake, "lost": 0}[outcome]
    if settle_twice:
        assert book.run(bet_store.settle_bet_txn, placed.bet["id"], "won", "again").settled is False
    return balance - stake + settlement.credited_cents


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=bet_plans)
def test_random_bets_and_outcomes_keep_every_wallet_equal_to_its_ledger(plans):
    book = SqliteBook()
    try:
        users = _open_sqlite_book(book)
        expected = {user_id: OPENING for user_id in users}
        for n, plan in enumerate(plans):
            user_id = users[plan[0]]
            expected[user_id] = _play(book, user_id, f"k{n}", plan, expected[user_id])
        assert {user_id: book.run(balance_txn, user_id) for user_id in users} == expected
        assert book.run(ledger_consistency_txn) == []
    finally:
        book.close()
