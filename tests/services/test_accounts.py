"""AccountService on real databases (SQLite and Postgres) with real argon2id hashing in a thread pool.

The hasher runs with tiny parameters (1 pass over 8 KiB) so the suite stays fast; a spy records which
thread each hash and verification ran on and with which parameters.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet.defer import ensureDeferred, gatherResults

from tenantsvc.adapters.db import tenant_store, user_store
from tenantsvc.adapters.passwords import PasswordHashing
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.services.accounts import AccountService, AuthenticatedUser
from tenantsvc.services.errors import Conflict, NotFoundError, Overloaded
from tests.support.databases import migrate

OPENING_BALANCE = 100_000
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class SpyHasher(PasswordHasher):
    """A real argon2id hasher that records the thread and the stored hash's parameters of every call."""

    def __init__(self, **parameters: Any):
        super().__init__(**parameters)
        self.hash_threads: list[str] = []
        self.verified: list[tuple[str, str]] = []  # (thread name, "$argon2id$v=19$m=…,t=…,p=…")

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hash_threads.append(threading.current_thread().name)
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append((threading.current_thread().name, "$".join(str(hash).split("$")[:4])))
        return super().verify(hash, password)


def start_hashing(hasher: PasswordHasher, **options: Any) -> PasswordHashing:
    from twisted.internet import reactor

    hashing = PasswordHashing(reactor, hasher=hasher, **options)
    hashing.startService()
    return hashing


@pytest.fixture
def hasher() -> SpyHasher:
    return SpyHasher(**CHEAP)


@pytest.fixture
def passwords(hasher: SpyHasher) -> Any:
    hashing = start_hashing(hasher)
    yield hashing
    hashing.stopService()


@pytest.fixture
def accounts(database: Any, passwords: PasswordHashing) -> AccountService:
    for slug in ("acme", "beta"):
        pytest_twisted.blockon(database.run_interaction("seed", tenant_store.insert_tenant_txn, slug, slug.title()))
    return AccountService(database, database, passwords)


def scalar_txn(txn: Any, sql: str, params: tuple = ()) -> Any:
    row = txn.one(sql, params)
    return None if row is None else next(iter(row.values()))


async def scalar(db: Any, sql: str, params: tuple = ()) -> Any:
    return await db.run_interaction("scalar", scalar_txn, sql, params)


# ---- registration --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_registration_creates_the_user_wallet_and_opening_balance(accounts, database, hasher):
    user = await accounts.register("acme", "alice", "correct horse")
    assert user == {"user_id": user["user_id"], "username": "alice", "balance_cents": OPENING_BALANCE}
    stored = await scalar(database, "SELECT password_hash FROM users WHERE id = %s", (user["user_id"],))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert await scalar(database, "SELECT amount_cents FROM ledger WHERE user_id = %s AND kind = 'opening_balance'",
                        (user["user_id"],)) == OPENING_BALANCE
    assert await accounts.profile("acme", user["user_id"]) == {"username": "alice", "balance_cents": OPENING_BALANCE}


@pytest_twisted.ensureDeferred
async def test_passwords_are_hashed_and_verified_off_the_reactor_thread(accounts, hasher):
    await accounts.register("acme", "alice", "correct horse")
    await accounts.authenticate("acme", "alice", "correct horse")
    reactor_thread = threading.current_thread().name
    threads = hasher.hash_threads + [thread for thread, _ in hasher.verified]
    assert threads and reactor_thread not in threads


@pytest_twisted.ensureDeferred
async def test_invalid_fields_are_reported_together_and_nothing_is_hashed_or_written(accounts, database, hasher):
    hashed_before = len(hasher.hash_threads)
    with pytest.raises(ValidationFailed) as caught:
        await accounts.register("acme", "a b", "short")
    assert set(caught.value.errors) == {"username", "password"}
    assert len(hasher.hash_threads) == hashed_before
    assert await scalar(database, "SELECT COUNT(*) FROM users") == 0


@pytest_twisted.ensureDeferred
async def test_a_taken_username_conflicts_but_other_tenants_may_use_it(accounts, database):
    await accounts.register("acme", "alice", "correct horse")
    with pytest.raises(Conflict) as caught:
        await accounts.register("acme", "alice", "another password")
    assert caught.value.code == "username_taken"
    assert (await accounts.register("beta", "alice", "another password"))["username"] == "alice"
    assert (await accounts.register("acme", "Alice", "another password"))["username"] == "Alice"  # case matters
    assert await scalar(database, "SELECT COUNT(*) FROM users") == 3


@pytest_twisted.ensureDeferred
async def test_registering_under_an_unknown_tenant_is_not_found(accounts):
    with pytest.raises(NotFoundError):
        await accounts.register("nobody", "alice", "correct horse")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_concurrent_registrations_of_one_username_yield_one_account(database_factory, passwords):
    db = database_factory.open("postgres")
    await migrate(db)
    await db.run_interaction("seed", tenant_store.insert_tenant_txn, "acme", "Acme")
    accounts = AccountService(db, db, passwords)

    async def attempt(n: int) -> Any:
        try:
            return await accounts.register("acme", "alice", f"password-{n}")
        except Conflict as conflict:
            return conflict.code

    results = await gatherResults([ensureDeferred(attempt(n)) for n in range(10)])
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and results.count("username_taken") == 9
    for table in ("users", "wallets", "ledger"):
        assert await scalar(db, f"SELECT COUNT(*) FROM {table}") == 1


# ---- authentication -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_right_password_authenticates_and_a_wrong_one_does_not(accounts):
    user = await accounts.register("acme", "alice", "correct horse")
    assert await accounts.authenticate("acme", "alice", "correct horse") == AuthenticatedUser(user["user_id"], "alice")
    assert await accounts.authenticate("acme", "alice", "wrong horse!") is None
    assert await accounts.authenticate("beta", "alice", "correct horse") is None  # users belong to their tenant


@pytest_twisted.ensureDeferred
async def test_unknown_usernames_cost_the_same_verification_as_wrong_passwords(accounts, hasher):
    await accounts.register("acme", "alice", "correct horse")
    hasher.verified.clear()
    assert await accounts.authenticate("acme", "alice", "wrong horse!") is None
    assert await accounts.authenticate("acme", "mallory", "wrong horse!") is None
    (_, wrong_password), (_, unknown_user) = hasher.verified
    assert wrong_password == unknown_user == "$argon2id$v=19$m=8,t=1,p=1"


@pytest.mark.parametrize("username, password", [("a", "correct horse"), ("alice", "short"), ("alice", "x" * 1025),
                                                (None, "correct horse"), ("alice", None)])
@pytest_twisted.ensureDeferred
async def test_logins_no_account_could_match_are_refused_without_hashing(accounts, hasher, username, password):
    hasher.verified.clear()
    assert await accounts.authenticate("acme", username, password) is None
    assert hasher.verified == []


@pytest_twisted.ensureDeferred
async def test_an_inactive_user_cannot_log_in(accounts, database):
    user = await accounts.register("acme", "alice", "correct horse")
    await database.run_interaction("deactivate", lambda txn: txn.execute(
        "UPDATE users SET is_active = FALSE WHERE id = %s", (user["user_id"],)))
    assert await accounts.authenticate("acme", "alice", "correct horse") is None


@pytest_twisted.ensureDeferred
async def test_a_hash_with_outdated_parameters_is_replaced_at_login(accounts, database, passwords):
    user = await accounts.register("acme", "alice", "correct horse")
    stronger = start_hashing(SpyHasher(time_cost=2, memory_cost=16, parallelism=1))
    try:
        upgraded = AccountService(database, database, stronger)
        assert await upgraded.authenticate("acme", "alice", "correct horse") is not None
        stored = await scalar(database, "SELECT password_hash FROM users WHERE id = %s", (user["user_id"],))
        assert stored.startswith("$argon2id$v=19$m=16,t=2,p=1$")
        assert await upgraded.authenticate("acme", "alice", "correct horse") is not None
        assert await upgraded.authenticate("acme", "alice", "wrong horse!") is None
    finally:
        stronger.stopService()


@pytest_twisted.ensureDeferred
async def test_a_corrupt_stored_hash_never_matches(accounts, database):
    user = await accounts.register("acme", "alice", "correct horse")
    assert await database.run_interaction("corrupt", user_store.update_password_hash_txn, user["user_id"],
                                          await scalar(database, "SELECT password_hash FROM users"), "not-a-hash")
    assert await accounts.authenticate("acme", "alice", "correct horse") is None


@pytest_twisted.ensureDeferred
async def test_a_full_hashing_queue_answers_overloaded_at_once(accounts, passwords):
    passwords.pending = 64  # as many as DEFAULT_MAX_PENDING already waiting
    try:
        with pytest.raises(Overloaded) as caught:
            await accounts.register("acme", "alice", "correct horse")
        assert caught.value.retry_after_s == 1
        with pytest.raises(Overloaded):
            await accounts.authenticate("acme", "alice", "correct horse")
    finally:
        passwords.pending = 0


@pytest_twisted.ensureDeferred
async def test_profile_of_a_user_of_another_tenant_is_not_found(accounts):
    user = await accounts.register("acme", "alice", "correct horse")
    with pytest.raises(NotFoundError):
        await accounts.profile("beta", user["user_id"])


# ---- user_store transactions ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_password_hash_is_replaced_only_while_it_is_the_one_expected(accounts, database):
    user = await accounts.register("acme", "alice", "correct horse")
    current = await scalar(database, "SELECT password_hash FROM users")
    update = user_store.update_password_hash_txn
    assert not await database.run_interaction("stale", update, user["user_id"], "something else", "new")
    assert await database.run_interaction("fresh", update, user["user_id"], current, "new")
    found = await database.run_interaction("find", user_store.get_user_by_username_txn, "acme", "alice")
    assert found == user_store.UserCredentials(user["user_id"], "alice", "new", True)
    assert await database.run_interaction("find", user_store.get_user_by_username_txn, "acme", "ALICE") is None
