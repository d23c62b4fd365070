"""The data layer on real databases: migrations, constraints, the tenant store and ``run_interaction``.

Most tests run on both SQLite and Postgres through the ``database`` fixture (a fresh, migrated
database per test); races that only Postgres can have, and the per-transaction guardrails, run on
Postgres directly and through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, gatherResults

from tenantsvc.adapters.db import tenant_store
from tenantsvc.adapters.db.migrations import MIGRATIONS
from tenantsvc.core.storage_errors import IntegrityViolation, InteractionAbandoned, StatementTimeout
from tenantsvc.core.theme import DEFAULT_THEME, parse_theme
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.registry import TenantRegistry
from tenantsvc.services.tenants import TenantService
from tenantsvc.services.theme_cache import ThemeCache
from tests.support.databases import migrate
from tests.support.interactions import Gate
from tests.support.interactions import create_notes_txn as _create_notes_txn
from tests.support.interactions import insert_note_txn as _insert_note_txn
from tests.support.interactions import notes_txn as _notes_txn
from tests.support.interactions import sleep_txn as _sleep_txn

pytestmark = pytest.mark.integration

OPENING_BALANCE = 100_000  # the tenants table's default_user_balance_cents


def run(db: Any, fn: Any, *args: Any) -> Deferred:
    """Run ``fn(txn, *args)`` as one interaction named after the function."""
    return db.run_interaction(fn.__name__, fn, *args)


def _scalar(txn: Any, sql: str, params: tuple = ()) -> Any:
    row = txn.one(sql, params)
    assert row is not None
    return next(iter(row.values()))


def _count(table: str, where: str = "1 = 1", params: tuple = ()):
    def count_txn(txn: Any) -> int:
        return int(_scalar(txn, f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", params))

    return count_txn


async def _tenant_with_user(db: Any, slug: str = "acme", username: str = "alice") -> dict[str, Any]:
    await run(db, tenant_store.insert_tenant_txn, slug, slug.title())
    return await run(db, tenant_store.create_user_txn, slug, username, "hash")


async def _violation(deferred: Deferred) -> IntegrityViolation:
    with pytest.raises(IntegrityViolation) as caught:
        await deferred
    return caught.value


def _wallet_and_ledger_sum(user_id: int):
    def wallet_and_ledger_sum_txn(txn: Any) -> tuple[int, int]:
        balance = _scalar(txn, "SELECT balance_cents FROM wallets WHERE user_id = %s", (user_id,))
        total = _scalar(txn, "SELECT COALESCE(SUM(amount_cents), 0) AS total FROM ledger WHERE user_id = %s",
                        (user_id,))
        return int(balance), int(total)

    return wallet_and_ledger_sum_txn


# ---- migrations --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest_twisted.ensureDeferred
async def test_migrations_apply_once_then_nothing(database_factory, backend):
    db = database_factory.open(backend)
    assert await migrate(db) == [version for version, _, _ in MIGRATIONS]
    assert await migrate(db) == []
    assert await run(db, _count("schema_migrations")) == len(MIGRATIONS)


@pytest_twisted.ensureDeferred
async def test_migrated_fixture_database_has_every_table(database):
    assert await migrate(database) == []
    for table in ("tenants", "themes", "users", "wallets", "ledger", "matches", "odds", "bets", "feed_status"):
        assert await run(database, _count(table)) == 0


@pytest_twisted.ensureDeferred
async def test_concurrent_migrations_on_postgres_both_succeed_and_one_applies(database_factory):
    url = database_factory.new_url("postgres")
    first, second = database_factory.open(url=url), database_factory.open(url=url)
    results = await gatherResults([migrate(first), migrate(second)])
    assert sorted(results) == [[], [version for version, _, _ in MIGRATIONS]]
    assert await run(first, _count("schema_migrations")) == len(MIGRATIONS)


# ---- constraints -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_duplicate_tenant_slug_is_a_unique_violation(database):
    await run(database, tenant_store.insert_tenant_txn, "acme", "Acme")
    violation = await _violation(run(database, tenant_store.insert_tenant_txn, "acme", "Acme again"))
    assert violation.kind == "unique"
    assert await run(database, _count("tenants")) == 1


@pytest_twisted.ensureDeferred
async def test_username_is_unique_per_tenant_only(database):
    await _tenant_with_user(database, "acme", "alice")
    violation = await _violation(run(database, tenant_store.create_user_txn, "acme", "alice", "hash"))
    assert violation.kind == "unique"
    await run(database, tenant_store.insert_tenant_txn, "betco", "Betco")
    other = await run(database, tenant_store.create_user_txn, "betco", "alice", "hash")
    assert other["username"] == "alice"
    assert await run(database, _count("users", "username = %s", ("alice",))) == 2
    assert await run(database, _count("wallets")) == 2


@pytest_twisted.ensureDeferred
async def test_wallet_balance_cannot_go_negative(database):
    user = await _tenant_with_user(database)

    def overdraw_txn(txn: Any) -> None:
        txn.execute("UPDATE wallets SET balance_cents = -1 WHERE user_id = %s", (user["user_id"],))

    assert (await _violation(run(database, overdraw_txn))).kind == "check"
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (OPENING_BALANCE, OPENING_BALANCE)


@pytest_twisted.ensureDeferred
async def test_ledger_rows_must_add_up(database):
    user = await _tenant_with_user(database)

    def bad_ledger_txn(txn: Any) -> None:
        txn.execute(
            "INSERT INTO ledger (tenant_id, user_id, kind, amount_cents, balance_before_cents, balance_after_cents)"
            " SELECT tenant_id, id, 'admin_credit', 100, 0, 50 FROM users WHERE id = %s", (user["user_id"],))

    assert (await _violation(run(database, bad_ledger_txn))).kind == "check"


@pytest_twisted.ensureDeferred
async def test_users_need_an_existing_tenant(database):
    def orphan_user_txn(txn: Any) -> None:
        txn.execute("INSERT INTO users (tenant_id, username, password_hash) VALUES (%s, %s, %s)",
                    (999_999, "ghost", "hash"))

    assert (await _violation(run(database, orphan_user_txn))).kind == "foreign_key"


@pytest_twisted.ensureDeferred
async def test_a_failing_interaction_rolls_back_all_its_writes(database):
    def insert_then_fail_txn(txn: Any) -> None:
        tenant_store.insert_tenant_txn(txn, "acme", "Acme")
        tenant_store.insert_tenant_txn(txn, "acme", "Acme twice")

    await _violation(run(database, insert_then_fail_txn))
    assert await run(database, tenant_store.list_tenants_txn) == []


# ---- tenant store ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tenants_are_inserted_and_listed_oldest_first(database):
    created = await run(database, tenant_store.insert_tenant_txn, "zeta", "Zeta Bets")
    await run(database, tenant_store.insert_tenant_txn, "alpha", "Alpha Bets")
    assert created["slug"] == "zeta" and created["is_active"] is True
    assert created["default_user_balance_cents"] == OPENING_BALANCE
    assert created["created_at"].endswith("Z")
    listed = await run(database, tenant_store.list_tenants_txn)
    assert [(t["slug"], t["name"]) for t in listed] == [("zeta", "Zeta Bets"), ("alpha", "Alpha Bets")]


@pytest_twisted.ensureDeferred
async def test_theme_round_trips_and_stays_one_row_per_tenant(database):
    await run(database, tenant_store.insert_tenant_txn, "acme", "Acme")
    assert await run(database, tenant_store.load_theme_txn, "acme") == DEFAULT_THEME
    first = parse_theme({"primaryColor": "#112233", "logoUrl": "https://cdn.test/l.png", "sportsbookName": "Ácme"})
    second = parse_theme({"cardStyle": "glow", "fontFamily": "'Open Sans', sans-serif"})
    await run(database, tenant_store.save_theme_txn, "acme", first)
    assert await run(database, tenant_store.load_theme_txn, "acme") == first
    await run(database, tenant_store.save_theme_txn, "acme", second)
    assert await run(database, tenant_store.load_theme_txn, "acme") == second
    assert await run(database, _count("themes")) == 1


@pytest_twisted.ensureDeferred
async def test_theme_of_an_unknown_tenant_is_not_found(database):
    with pytest.raises(tenant_store.NotFound):
        await run(database, tenant_store.load_theme_txn, "nobody")
    with pytest.raises(tenant_store.NotFound):
        await run(database, tenant_store.save_theme_txn, "nobody", DEFAULT_THEME)


@pytest_twisted.ensureDeferred
async def test_load_all_themes_pages_through_active_tenants_in_slug_order(database):
    slugs = ["echo", "alpha", "delta", "bravo", "charlie"]
    for slug in slugs:
        await run(database, tenant_store.insert_tenant_txn, slug, slug.title())
    themed = parse_theme({"sportsbookName": "Delta Bets"})
    await run(database, tenant_store.save_theme_txn, "delta", themed)

    def deactivate_txn(txn: Any) -> None:
        txn.execute("UPDATE tenants SET is_active = FALSE WHERE slug = %s", ("bravo",))

    await run(database, deactivate_txn)
    pages: list[list[tuple[str, Any]]] = []
    after = ""
    while True:
        page = await run(database, tenant_store.load_all_themes_txn, after, 2)
        pages.append(page)
        if len(page) < 2:
            break
        after = page[-1][0]
    assert [[slug for slug, _ in page] for page in pages] == [["alpha", "charlie"], ["delta", "echo"], []]
    themes = dict(item for page in pages for item in page)
    assert themes["delta"] == themed and themes["alpha"] == DEFAULT_THEME


@pytest_twisted.ensureDeferred
async def test_create_user_opens_a_wallet_recorded_in_the_ledger(database):
    user = await _tenant_with_user(database, "acme", "alice")
    assert user["balance_cents"] == OPENING_BALANCE

    def ledger_txn(txn: Any) -> list[dict[str, Any]]:
        return txn.all("SELECT kind, amount_cents, balance_before_cents, balance_after_cents FROM ledger"
                       " WHERE user_id = %s", (user["user_id"],))

    rows = await run(database, ledger_txn)
    assert [(r["kind"], r["amount_cents"], r["balance_before_cents"], r["balance_after_cents"]) for r in rows] == [
        ("opening_balance", OPENING_BALANCE, 0, OPENING_BALANCE)]
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (OPENING_BALANCE, OPENING_BALANCE)
    with pytest.raises(tenant_store.NotFound):
        await run(database, tenant_store.create_user_txn, "nobody", "bob", "hash")


@pytest_twisted.ensureDeferred
async def test_credit_with_an_idempotency_key_is_paid_once_and_replayed(database):
    user = await _tenant_with_user(database)
    first = await run(database, tenant_store.credit_wallet_txn, "acme", "alice", 500, "promo", "key-1")
    again = await run(database, tenant_store.credit_wallet_txn, "acme", "alice", 500, "promo", "key-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.ledger_id == first.ledger_id
    assert first.balance_cents == again.balance_cents == OPENING_BALANCE + 500
    unkeyed = [await run(database, tenant_store.credit_wallet_txn, "acme", "alice", 100, "bonus", None)
               for _ in range(2)]
    assert [c.balance_cents for c in unkeyed] == [OPENING_BALANCE + 600, OPENING_BALANCE + 700]
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (OPENING_BALANCE + 700,) * 2


@pytest_twisted.ensureDeferred
async def test_debit_beyond_the_balance_is_refused_without_a_ledger_row(database):
    user = await _tenant_with_user(database)
    with pytest.raises(tenant_store.InsufficientFunds):
        await run(database, tenant_store.credit_wallet_txn, "acme", "alice", -OPENING_BALANCE - 1, "oops", None)
    debit = await run(database, tenant_store.credit_wallet_txn, "acme", "alice", -OPENING_BALANCE, "all", None)
    assert debit.balance_cents == 0
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (0, 0)
    assert await run(database, _count("ledger")) == 2


def _tenant_service(db: Any) -> TenantService:
    from twisted.internet import reactor

    metrics = Metrics(CollectorRegistry(), "web")
    return TenantService(db, db, ThemeCache(clock=reactor, db=db, registry=TenantRegistry(), metrics=metrics))


@pytest_twisted.ensureDeferred
async def test_concurrent_credits_with_one_idempotency_key_pay_once(database):
    user = await _tenant_with_user(database)
    service = _tenant_service(database)
    payload = {"amount_cents": 700, "reason": "welcome bonus"}
    results = await gatherResults(
        [ensureDeferred(service.credit("acme", "alice", payload, "same-key")) for _ in range(10)])
    assert len({r.ledger_id for r in results}) == 1
    assert [r.replayed for r in results].count(False) == 1
    assert {r.balance_cents for r in results} == {OPENING_BALANCE + 700}
    assert await run(database, _count("ledger", "idempotency_key = %s", ("same-key",))) == 1
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (OPENING_BALANCE + 700,) * 2


@pytest_twisted.ensureDeferred
async def test_concurrent_credits_with_different_keys_all_count(database):
    user = await _tenant_with_user(database)
    service = _tenant_service(database)
    results = await gatherResults([
        ensureDeferred(service.credit("acme", "alice", {"amount_cents": 10 + n, "reason": "r"}, f"key-{n}"))
        for n in range(10)])
    expected = OPENING_BALANCE + sum(10 + n for n in range(10))
    assert max(r.balance_cents for r in results) == expected
    assert await run(database, _wallet_and_ledger_sum(user["user_id"])) == (expected, expected)


# ---- guardrails (Postgres, direct and through PgBouncer transaction pooling) -------------------


def _show_timeouts_txn(txn: Any) -> tuple[str, str]:
    return _scalar(txn, "SHOW statement_timeout"), _scalar(txn, "SHOW idle_in_transaction_session_timeout")


@pytest.mark.parametrize("backend", ["postgres", "pgbouncer"])
@pytest_twisted.ensureDeferred
async def test_every_transaction_sets_the_configured_timeouts(database_factory, backend):
    db = database_factory.open(backend, DB_STATEMENT_TIMEOUT="1500ms", DB_IDLE_IN_TRANSACTION_TIMEOUT="4s")
    results = await gatherResults([run(db, _show_timeouts_txn) for _ in range(3)])
    assert results == [("1500ms", "4s")] * 3


@pytest.mark.parametrize("backend", ["postgres", "pgbouncer"])
@pytest_twisted.ensureDeferred
async def test_a_statement_past_the_timeout_raises_statement_timeout(database_factory, backend):
    db = database_factory.open(backend, DB_STATEMENT_TIMEOUT="200ms")
    with pytest.raises(StatementTimeout):
        await run(db, _sleep_txn, 5)
    assert await run(db, _show_timeouts_txn) == ("200ms", "5s")


# ---- run_interaction: pressure and cancellation ------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def single_connection_db(request, database_factory):
    """A Database whose pool has exactly one connection, with an empty ``notes`` table."""
    db = database_factory.open(request.param, DB_WEB_POOL_MAX="1", DB_POOL_MIN="1")
    assert db.size == 1
    pytest_twisted.blockon(run(db, _create_notes_txn))
    return db


@pytest_twisted.ensureDeferred
async def test_interaction_cancelled_while_queued_never_runs(single_connection_db):
    db = single_connection_db
    finished: list[tuple[str, Any]] = []
    db.add_observer(lambda name, wait_s, hold_s, failure: finished.append((name, failure)))
    gate = Gate()
    try:
        holder = db.run_interaction("hold", gate.hold_txn)
        await gate.entered
        queued = db.run_interaction("queued_write", _insert_note_txn, "should-not-exist")
        snapshot = db.snapshot()
        assert (snapshot.size, snapshot.in_use, snapshot.waiting) == (1, 1, 1)
        assert snapshot.usage_percent == 100.0
        queued.cancel()
        with pytest.raises(CancelledError):
            await queued
    finally:
        gate.open()
    assert await holder == "held"
    assert await run(db, _notes_txn) == []  # runs after the abandoned one: same single connection, FIFO
    abandoned = [failure for name, failure in finished if name == "queued_write"]
    assert len(abandoned) == 1 and abandoned[0].check(InteractionAbandoned)
    assert (db.snapshot().in_use, db.snapshot().waiting) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_interaction_cancelled_after_it_began_still_commits(single_connection_db):
    db = single_connection_db
    gate = Gate()
    try:
        holder = db.run_interaction("hold", gate.hold_txn, "kept")
        await gate.entered
        holder.cancel()
        with pytest.raises(CancelledError):
            await holder
    finally:
        gate.open()
    assert await run(db, _notes_txn) == ["kept"]
