"""Tenant, theme, user and wallet transactions: each a synchronous ``*_txn(txn, …)`` run by ``run_interaction``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenantsvc.core.storage_errors import IntegrityViolation
from tenantsvc.adapters.db.pool import Txn
from tenantsvc.core.clock import iso_utc
from tenantsvc.core.theme import ATTRIBUTES, Theme

_THEME_COLUMNS = ", ".join(ATTRIBUTES)


def to_iso(value: Any) -> str | None:
    """A stored timestamp (datetime from Postgres, text from SQLite) as ISO 8601 UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso_utc(value)


class NotFound(LookupError):
    """The tenant or user named does not exist."""


class InsufficientFunds(Exception):
    """A debit would take a balance below zero."""


@dataclass(frozen=True)
class CreditResult:
    """Outcome of an admin credit: the ledger entry and the balance after it."""

    ledger_id: int
    amount_cents: int
    balance_cents: int
    replayed: bool


def _tenant_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": row["slug"],
        "name": row["name"],
        "is_active": bool(row["is_active"]),
        "default_user_balance_cents": int(row["default_user_balance_cents"]),
        "created_at": to_iso(row["created_at"]),
    }


_TENANT_COLUMNS = "slug, name, is_active, default_user_balance_cents, created_at"


def insert_tenant_txn(txn: Txn, slug: str, name: str) -> dict[str, Any]:
    """Insert a tenant; a duplicate slug raises ``IntegrityViolation`` (unique)."""
    row = txn.one(f"INSERT INTO tenants (slug, name) VALUES (%s, %s) RETURNING {_TENANT_COLUMNS}", (slug, name))
    assert row is not None
    return _tenant_json(row)


def list_tenants_txn(txn: Txn) -> list[dict[str, Any]]:
    """Every tenant, oldest first."""
    return [_tenant_json(row) for row in txn.all(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY id")]


def active_tenant_slugs_txn(txn: Txn) -> list[str]:
    """Slugs of tenants that may serve traffic."""
    return [row["slug"] for row in txn.all("SELECT slug FROM tenants WHERE is_active = TRUE ORDER BY id")]


def load_theme_txn(txn: Txn, slug: str) -> Theme:
    """The tenant's saved theme, the default theme if it never saved one; ``NotFound`` if no such tenant."""
    row = txn.one(
        f"SELECT t.id AS tenant_id, {', '.join('th.' + a for a in ATTRIBUTES)}"
        " FROM tenants t LEFT JOIN themes th ON th.tenant_id = t.id WHERE t.slug = %s",
        (slug,),
    )
    if row is None:
        raise NotFound(slug)
    return Theme.from_row(row)


def load_all_themes_txn(txn: Txn, after_slug: str = "", limit: int = 500) -> list[tuple[str, Theme]]:
    """Themes of active tenants in slug order, ``limit`` at a time after ``after_slug`` (for batched warming)."""
    rows = txn.all(
        f"SELECT t.slug, {', '.join('th.' + a for a in ATTRIBUTES)}"
        " FROM tenants t LEFT JOIN themes th ON th.tenant_id = t.id"
        " WHERE t.is_active = TRUE AND t.slug > %s ORDER BY t.slug LIMIT %s",
        (after_slug, limit),
    )
    return [(row["slug"], Theme.from_row(row)) for row in rows]


def save_theme_txn(txn: Txn, slug: str, theme: Theme) -> None:
    """Insert or replace the tenant's single theme row; ``NotFound`` if no such tenant."""
    tenant = txn.one("SELECT id FROM tenants WHERE slug = %s", (slug,))
    if tenant is None:
        raise NotFound(slug)
    values = [getattr(theme, a) for a in ATTRIBUTES]
    updates = ", ".join(f"{a} = excluded.{a}" for a in ATTRIBUTES)
    txn.execute(
        f"INSERT INTO themes (tenant_id, {_THEME_COLUMNS}) VALUES (%s, {', '.join(['%s'] * len(ATTRIBUTES))})"
        f" ON CONFLICT (tenant_id) DO UPDATE SET {updates}, updated_at = CURRENT_TIMESTAMP",
        (tenant["id"], *values),
    )


def create_user_txn(txn: Txn, slug: str, username: str, password_hash: str) -> dict[str, Any]:
    """Create a user with a wallet holding the tenant's opening balance, recorded in the ledger.

    A duplicate username raises ``IntegrityViolation`` (unique); ``NotFound`` if no such tenant.
    """
    tenant = txn.one("SELECT id, default_user_balance_cents FROM tenants WHERE slug = %s", (slug,))
    if tenant is None:
        raise NotFound(slug)
    user = txn.one(
        "INSERT INTO users (tenant_id, username, password_hash) VALUES (%s, %s, %s) RETURNING id",
        (tenant["id"], username, password_hash),
    )
    assert user is not None
    opening = int(tenant["default_user_balance_cents"])
    txn.execute(
        "INSERT INTO wallets (user_id, tenant_id, balance_cents) VALUES (%s, %s, %s)",
        (user["id"], tenant["id"], opening),
    )
    txn.execute(
        "INSERT INTO ledger (tenant_id, user_id, kind, amount_cents, balance_before_cents, balance_after_cents, reason)"
        " VALUES (%s, %s, 'opening_balance', %s, 0, %s, 'opening balance')",
        (tenant["id"], user["id"], opening, opening),
    )
    return {"user_id": int(user["id"]), "username": username, "balance_cents": opening}


def _find_user(txn: Txn, slug: str, username: str) -> dict[str, Any]:
    user = txn.one(
        "SELECT u.id AS user_id, u.tenant_id FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " WHERE t.slug = %s AND u.username = %s",
        (slug, username),
    )
    if user is None:
        raise NotFound(username)
    return user


def lock_wallet(txn: Txn, user_id: int) -> None:
    """Take the player's wallet row lock for the rest of the transaction (Postgres; SQLite's BEGIN
    IMMEDIATE already serialises every writer).

    Every money movement of a player locks the wallet first, before looking for an earlier request with the
    same idempotency key: concurrent requests with one key then run one after the other, and each later one
    finds the first one's committed result (READ COMMITTED reads it after the wait) and replays it — never a
    different answer such as "insufficient funds" computed against the balance the first one already spent.
    """
    if txn.dialect == "postgres":
        txn.execute("SELECT 1 FROM wallets WHERE user_id = %s FOR UPDATE", (user_id,))


def _replay_credit(txn: Txn, user_id: int, idempotency_key: str) -> CreditResult | None:
    row = txn.one(
        "SELECT id, amount_cents, balance_after_cents FROM ledger WHERE user_id = %s AND idempotency_key = %s",
        (user_id, idempotency_key),
    )
    if row is None:
        return None
    return CreditResult(int(row["id"]), int(row["amount_cents"]), int(row["balance_after_cents"]), replayed=True)


def credit_wallet_txn(
    txn: Txn, slug: str, username: str, amount_cents: int, reason: str, idempotency_key: str | None
) -> CreditResult:
    """Add ``amount_cents`` (negative to debit) to a wallet and write the ledger row in the same transaction.

    With an ``idempotency_key`` a repeated request returns the first result instead of paying twice.
    Raises ``NotFound`` or ``InsufficientFunds``.
    """
    user = _find_user(txn, slug, username)
    if idempotency_key is not None:
        lock_wallet(txn, user["user_id"])
        previous = _replay_credit(txn, user["user_id"], idempotency_key)
        if previous is not None:
            return previous
    try:
        wallet = txn.one(
            "UPDATE wallets SET balance_cents = balance_cents + %s, updated_at = CURRENT_TIMESTAMP"
            " WHERE user_id = %s RETURNING balance_cents",
            (amount_cents, user["user_id"]),
        )
    except IntegrityViolation as violation:
        if violation.kind == "check":
            raise InsufficientFunds() from violation
        raise
    assert wallet is not None
    after = int(wallet["balance_cents"])
    kind = "admin_credit" if amount_cents > 0 else "admin_debit"
    entry = txn.one(
        "INSERT INTO ledger (tenant_id, user_id, kind, amount_cents, balance_before_cents, balance_after_cents,"
        " reason, idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (user["tenant_id"], user["user_id"], kind, amount_cents, after - amount_cents, after, reason, idempotency_key),
    )
    assert entry is not None
    return CreditResult(int(entry["id"]), amount_cents, after, replayed=False)


def replay_credit_txn(txn: Txn, slug: str, username: str, idempotency_key: str) -> CreditResult | None:
    """The credit already recorded under ``idempotency_key``, if any (used after a concurrent duplicate)."""
    user = _find_user(txn, slug, username)
    return _replay_credit(txn, user["user_id"], idempotency_key)
