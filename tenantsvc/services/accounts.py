"""Player accounts: registration, password checks at login, and the profile behind ``/me``.

Passwords are hashed and verified with argon2id in a thread pool (``adapters.passwords``). Concurrent
registrations of one username are settled by the ``UNIQUE (tenant_id, username)`` constraint: exactly one
wins, the others get ``Conflict("username_taken")``. A login for an unknown username does the same work as
one with a wrong password (a verification against a dummy hash), so timing does not reveal which usernames
exist. A stored hash made with older parameters is replaced after a successful login.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, TypeVar

from eliot import MessageType, fields
from twisted.internet.defer import ensureDeferred

from tenantsvc.adapters.db import tenant_store, user_store
from tenantsvc.core.storage_errors import DatabaseError, IntegrityViolation
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.deferreds import shield
from tenantsvc.adapters.passwords import PasswordHashing, PasswordHashingBusy
from tenantsvc.core.accounts import check_credentials, could_be_credentials
from tenantsvc.services.errors import Conflict, NotFoundError, Overloaded, ServiceUnavailable

T = TypeVar("T")

REHASH_FAILED = MessageType(
    "tenantsvc:accounts:rehash_failed", fields(user_id=int, error=str),
    "A password hash with outdated parameters could not be replaced; the login still succeeded.")


@dataclass(frozen=True)
class AuthenticatedUser:
    """The user a correct password proved: enough to start a session."""

    user_id: int
    username: str


class AccountService:
    """Accounts of every tenant. ``reads``/``writes`` are the DB runners for each request class."""

    def __init__(self, reads: InteractionRunner, writes: InteractionRunner, passwords: PasswordHashing):
        self._reads = reads
        self._writes = writes
        self._passwords = passwords

    async def register(self, tenant: str, username: object, password: object) -> dict[str, Any]:
        """Create a user with its wallet and opening balance; returns ``{"user_id", "username", "balance_cents"}``.

        ``ValidationFailed`` (per field) for a bad username or password, ``Conflict("username_taken")`` for
        a taken username, ``NotFoundError`` for an unknown tenant.
        """
        username, password = check_credentials(username, password)
        password_hash = await self._hashing(self._passwords.hash(password))
        try:
            return await shield(self._writes.run_interaction(
                "create_user", tenant_store.create_user_txn, tenant, username, password_hash))
        except tenant_store.NotFound:
            raise NotFoundError(f"no tenant {tenant!r}") from None
        except IntegrityViolation as violation:
            if violation.kind == "unique":
                raise Conflict("username_taken", f"the username {username!r} is already taken") from None
            raise

    async def authenticate(self, tenant: str, username: object, password: object) -> AuthenticatedUser | None:
        """The user whose username and password these are, or None (unknown user, wrong password, inactive).

        Unknown usernames cost the same verification as wrong passwords. Input that no account could have
        (a malformed username, a password outside 8–1024 characters) is refused without hashing.
        """
        if not could_be_credentials(username, password):
            return None
        assert isinstance(username, str) and isinstance(password, str)
        user = await self._reads.run_interaction(
            "get_user_credentials", user_store.get_user_by_username_txn, tenant, username)
        if user is None:
            await self._hashing(self._passwords.verify_unknown(password))
            return None
        verification = await self._hashing(self._passwords.verify(user.password_hash, password))
        if not verification.ok or not user.is_active:
            return None
        if verification.needs_rehash:
            await shield(ensureDeferred(self._rehash(user, password)))
        return AuthenticatedUser(user.user_id, user.username)

    async def profile(self, tenant: str, user_id: int) -> dict[str, Any]:
        """``{"username", "balance_cents"}`` for ``/me``; ``NotFoundError`` if the user is not in ``tenant``."""
        profile = await self._reads.run_interaction("get_balance", user_store.get_balance_txn, tenant, user_id)
        if profile is None:
            raise NotFoundError(f"no user {user_id} in tenant {tenant!r}")
        return profile

    async def _rehash(self, user: user_store.UserCredentials, password: str) -> None:
        """Store a hash with the current parameters; a failure is logged, never raised (the login stands)."""
        try:
            new_hash = await self._passwords.hash(password)
            await self._writes.run_interaction(
                "rehash_password", user_store.update_password_hash_txn, user.user_id, user.password_hash, new_hash)
        except (DatabaseError, ServiceUnavailable, PasswordHashingBusy) as error:
            REHASH_FAILED.log(user_id=user.user_id, error=type(error).__name__)

    @staticmethod
    async def _hashing(work: Awaitable[T]) -> T:
        """Await a password operation; a full hashing queue becomes ``Overloaded`` (503 + Retry-After)."""
        try:
            return await work
        except PasswordHashingBusy:
            raise Overloaded("too many password checks in progress; retry shortly") from None
