"""Player account transactions: each a synchronous ``*_txn(txn, …)`` run by ``run_interaction``.

Users are always looked up within their tenant (by slug): the same username in two tenants is two people.
Creating a user (with its wallet and opening-balance ledger row) is ``tenant_store.create_user_txn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenantsvc.adapters.db.pool import Txn
from tenantsvc.adapters.db.tenant_store import create_user_txn

__all__ = ["UserCredentials", "create_user_txn", "get_user_by_username_txn", "get_balance_txn",
           "update_password_hash_txn"]


@dataclass(frozen=True)
class UserCredentials:
    """What logging in needs to know about a user. ``password_hash`` never leaves the service layer."""

    user_id: int
    username: str
    password_hash: str
    is_active: bool


def get_user_by_username_txn(txn: Txn, slug: str, username: str) -> UserCredentials | None:
    """The user called ``username`` in tenant ``slug`` (exact, case-sensitive match), or None."""
    row = txn.one(
        "SELECT u.id, u.username, u.password_hash, u.is_active FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " WHERE t.slug = %s AND u.username = %s",
        (slug, username),
    )
    if row is None:
        return None
    return UserCredentials(int(row["id"]), row["username"], row["password_hash"], bool(row["is_active"]))


def get_balance_txn(txn: Txn, slug: str, user_id: int) -> dict[str, Any] | None:
    """``{"username", "balance_cents"}`` of a user of tenant ``slug``, or None (no such user in that tenant)."""
    row = txn.one(
        "SELECT u.username, w.balance_cents FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " JOIN wallets w ON w.user_id = u.id WHERE t.slug = %s AND u.id = %s",
        (slug, user_id),
    )
    if row is None:
        return None
    return {"username": row["username"], "balance_cents": int(row["balance_cents"])}


def update_password_hash_txn(txn: Txn, user_id: int, old_hash: str, new_hash: str) -> bool:
    """Replace a user's password hash only if it is still ``old_hash`` (a concurrent change wins); True if replaced."""
    txn.execute("UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
                (new_hash, user_id, old_hash))
    return txn.rowcount == 1
