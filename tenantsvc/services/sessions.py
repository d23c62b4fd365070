"""Player sessions: create at login, resolve on every authenticated request, destroy at logout.

The rules (``core.sessions``) are applied here, the same for both stores: ids are validated before any
store is asked, records are bound to their tenant, each use slides the idle TTL, and nothing outlives the
absolute lifetime. A store that cannot be reached raises ``SessionStoreUnavailable`` (503 + Retry-After);
there is deliberately no fallback to another store.

Rotation at login is the caller's: ``destroy`` whatever session the client brought, then ``create``.
Session ids are never logged; records carry only the tenant, user id, username and timestamps.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Awaitable, Callable, TypeVar

from tenantsvc.adapters.redis import RedisUnavailable
from tenantsvc.adapters.session_store import SessionStore
from tenantsvc.core.sessions import (
    SESSION_ID_BYTES, SessionPolicy, SessionRecord, is_well_formed_session_id, session_hash,
)
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.errors import SessionStoreUnavailable

T = TypeVar("T")
Session = SessionRecord  # what ``resolve`` returns: tenant, user_id, username, created_at, remember
STORE_RETRY_AFTER_S = 2
# session_store_operations_total{op}: every operation, and "reachable" (a login refused before hashing).
STORE_OPERATIONS = ("put", "get", "renew", "delete", "delete_owner", "count", "reachable")


class CrossTenantSession(Exception):
    """A live session of ``owner_tenant`` was presented under ``presented_tenant``: answer 401, log a security event.

    Carries no session id; the session itself is left untouched (not renewed).
    """

    def __init__(self, presented_tenant: str, owner_tenant: str, user_id: int):
        super().__init__(f"a session of tenant {owner_tenant!r} was presented to tenant {presented_tenant!r}")
        self.presented_tenant = presented_tenant
        self.owner_tenant = owner_tenant
        self.user_id = user_id


def owner_of(tenant: str, user_id: int) -> str:
    """The store's index name for a user's sessions: ``<tenant>:<user_id>``."""
    return f"{tenant}:{int(user_id)}"


def new_session_id() -> str:
    """A fresh id: 32 random bytes from the OS CSPRNG, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


class SessionService:
    """Sessions over a ``SessionStore`` (Redis for a fleet, in-process on a laptop), timed by ``clock``."""

    def __init__(self, store: SessionStore, clock: Any, policy: SessionPolicy = SessionPolicy(), *,
                 metrics: Metrics | None = None, new_id: Callable[[], str] = new_session_id,
                 retry_after_s: int = STORE_RETRY_AFTER_S):
        self._store = store
        self._clock = clock
        self.policy = policy
        self._metrics = metrics
        if metrics is not None:
            zero(metrics.session_store_operations, [(op, outcome) for op in STORE_OPERATIONS for outcome in ("ok", "error")])
        self._new_id = new_id
        self._retry_after_s = retry_after_s

    async def create(self, tenant: str, user_id: int, username: str, remember: bool) -> str:
        """Start a session for a user who just authenticated; returns the id for the cookie (never log it)."""
        session_id = self._new_id()
        record = SessionRecord(tenant, int(user_id), username, self._clock.seconds(), bool(remember))
        ttl_ms = self.policy.ttl_ms(record, record.created_at)
        await self._call("put", lambda: self._store.put(session_hash(session_id), owner_of(tenant, user_id),
                                                        record.to_json(), ttl_ms))
        return session_id

    async def resolve(self, session_id: object, tenant: str) -> Session | None:
        """The live session ``session_id`` names under ``tenant``, renewed for another idle period; else None.

        Malformed ids (wrong type, length or alphabet) return None without touching the store. A session of
        another tenant raises ``CrossTenantSession``. A store failure raises ``SessionStoreUnavailable``.
        """
        if not is_well_formed_session_id(session_id):
            return None
        assert isinstance(session_id, str)
        hashed = session_hash(session_id)
        record = SessionRecord.from_json(await self._call("get", lambda: self._store.get(hashed)))
        if record is None:
            return None
        if record.tenant != tenant:
            raise CrossTenantSession(tenant, record.tenant, record.user_id)
        owner = owner_of(record.tenant, record.user_id)
        ttl_ms = self.policy.ttl_ms(record, self._clock.seconds())
        if ttl_ms <= 0:  # past its absolute lifetime
            await self._call("delete", lambda: self._store.delete(hashed, owner))
            return None
        renewed = await self._call("renew", lambda: self._store.renew(hashed, owner, ttl_ms))
        return record if renewed else None

    async def destroy(self, session_id: object) -> None:
        """End one session (logout); a malformed or unknown id is a no-op that never reaches the store.

        Routes resolve the session under their tenant first, so another tenant's cookie is refused before.
        """
        if not is_well_formed_session_id(session_id):
            return
        assert isinstance(session_id, str)
        hashed = session_hash(session_id)
        record = SessionRecord.from_json(await self._call("get", lambda: self._store.get(hashed)))
        owner = None if record is None else owner_of(record.tenant, record.user_id)
        await self._call("delete", lambda: self._store.delete(hashed, owner))

    async def destroy_all(self, tenant: str, user_id: int) -> int:
        """End every session of a user (logout everywhere); returns how many were live."""
        return await self._call("delete_owner", lambda: self._store.delete_owner(owner_of(tenant, user_id)))

    async def count(self) -> int:
        """Live sessions in the store (for ``/health/detailed``)."""
        return await self._call("count", self._store.count)

    def ensure_reachable(self) -> None:
        """Raise ``SessionStoreUnavailable`` at once if the store would refuse every operation now (Redis's
        breaker is open), so a login is refused before its password is hashed for nothing; counted as op
        ``reachable``."""
        error = self._store.unavailable()
        if error is not None:
            self._record("reachable", False, time.monotonic())
            raise SessionStoreUnavailable(error.retry_after_s or self._retry_after_s)

    async def _call(self, op: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation, timed and counted; ``RedisUnavailable`` becomes ``SessionStoreUnavailable``,
        whose Retry-After is the Redis breaker's remaining open time when it refused the call."""
        started = time.monotonic()
        try:
            result = await work()
        except RedisUnavailable as error:
            self._record(op, False, started)
            raise SessionStoreUnavailable(error.retry_after_s or self._retry_after_s) from None
        self._record(op, True, started)
        return result

    def _record(self, op: str, ok: bool, started: float) -> None:
        if self._metrics is not None:
            self._metrics.record_session_store(op, ok, time.monotonic() - started)
