"""Where sessions are kept: the ``SessionStore`` protocol and its in-process implementation.

A store knows sessions only by ``sha256(id)`` (the *hash*), holds an opaque payload (the JSON record) with a
TTL in milliseconds, and indexes hashes by *owner* (``"<tenant>:<user_id>"``) so every session of a user
can be ended at once. Rules (which TTL, absolute lifetime, tenant binding) live in
``services.sessions.SessionService``; both stores just keep what they are told, so the contract suite runs
the service over both and expects identical behaviour.

``MemorySessionStore`` is used only when no ``REDIS_URL`` is configured: expiry follows the injected clock,
and at most ``max_sessions`` are kept (when full, the session closest to expiry makes room). Expired
sessions are dropped lazily: by reads, and by a heap of expiry times pruned on every write and count.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Protocol

from tenantsvc.adapters.redis import RedisUnavailable

DEFAULT_MAX_SESSIONS = 100_000


class SessionStore(Protocol):
    """What ``SessionService`` needs from a store. Redis-backed stores raise ``RedisUnavailable``."""

    async def put(self, session_hash: str, owner: str, payload: str, ttl_ms: int) -> None:
        """Store a new session for ``ttl_ms`` and index it under ``owner``."""

    async def get(self, session_hash: str) -> str | None:
        """The payload of a live session, or None."""

    async def renew(self, session_hash: str, owner: str, ttl_ms: int) -> bool:
        """Make a live session expire ``ttl_ms`` from now; False (and nothing changed) if it is gone."""

    async def delete(self, session_hash: str, owner: str | None) -> None:
        """End one session (``owner`` None when its record could not be read)."""

    async def delete_owner(self, owner: str) -> int:
        """End every session of ``owner``; returns how many were live."""

    async def count(self) -> int:
        """Live sessions, without scanning the keyspace."""

    def unavailable(self) -> RedisUnavailable | None:
        """The error every operation would fail with at once right now (Redis's breaker is open), else None."""


@dataclass
class _Entry:
    payload: str
    owner: str
    expires_at: float


class MemorySessionStore:
    """Sessions in this process's memory, expiring by ``clock`` (an ``IReactorTime``)."""

    def __init__(self, clock: Any, *, max_sessions: int = DEFAULT_MAX_SESSIONS):
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._clock = clock
        self._max_sessions = max_sessions
        self._sessions: dict[str, _Entry] = {}
        self._owners: dict[str, set[str]] = {}
        # (expires_at as last pushed, hash). An entry renewed since is pushed again when it surfaces;
        # entries of deleted sessions are skipped when they surface (and compacted away if they pile up).
        self._expiries: list[tuple[float, str]] = []

    async def put(self, session_hash: str, owner: str, payload: str, ttl_ms: int) -> None:
        """Store a session; when full, the session closest to expiry is dropped to make room."""
        now = self._clock.seconds()
        self._prune(now)
        self._remove(session_hash)
        if len(self._sessions) >= self._max_sessions:
            self._evict_soonest()
        expires_at = now + ttl_ms / 1000.0
        self._sessions[session_hash] = _Entry(payload, owner, expires_at)
        self._owners.setdefault(owner, set()).add(session_hash)
        heapq.heappush(self._expiries, (expires_at, session_hash))
        self._compact()

    async def get(self, session_hash: str) -> str | None:
        """The payload of a live session, or None."""
        entry = self._live(session_hash)
        return None if entry is None else entry.payload

    async def renew(self, session_hash: str, owner: str, ttl_ms: int) -> bool:
        """Extend a live session to ``ttl_ms`` from now."""
        entry = self._live(session_hash)
        if entry is None:
            return False
        entry.expires_at = self._clock.seconds() + ttl_ms / 1000.0
        return True

    async def delete(self, session_hash: str, owner: str | None) -> None:
        """End one session."""
        self._remove(session_hash)

    async def delete_owner(self, owner: str) -> int:
        """End every session of ``owner``."""
        now = self._clock.seconds()
        hashes = list(self._owners.get(owner, ()))
        live = sum(1 for h in hashes if self._sessions[h].expires_at > now)
        for session_hash in hashes:
            self._remove(session_hash)
        return live

    async def count(self) -> int:
        """Live sessions."""
        self._prune(self._clock.seconds())
        return len(self._sessions)

    def unavailable(self) -> RedisUnavailable | None:
        """Never: this process's memory is always there."""
        return None

    def _live(self, session_hash: str) -> _Entry | None:
        entry = self._sessions.get(session_hash)
        if entry is not None and entry.expires_at <= self._clock.seconds():
            self._remove(session_hash)
            return None
        return entry

    def _remove(self, session_hash: str) -> None:
        entry = self._sessions.pop(session_hash, None)
        if entry is None:
            return
        hashes = self._owners.get(entry.owner)
        if hashes is not None:
            hashes.discard(session_hash)
            if not hashes:
                del self._owners[entry.owner]

    def _surface(self) -> tuple[float, str, _Entry] | None:
        """Pop heap entries until one names a session whose expiry it still states exactly."""
        while self._expiries:
            pushed_at, session_hash = heapq.heappop(self._expiries)
            entry = self._sessions.get(session_hash)
            if entry is None:
                continue  # deleted earlier
            if entry.expires_at != pushed_at:
                heapq.heappush(self._expiries, (entry.expires_at, session_hash))  # renewed since
                continue
            return pushed_at, session_hash, entry
        return None

    def _prune(self, now: float) -> None:
        """Drop every session that has expired by ``now``."""
        while self._expiries and self._expiries[0][0] <= now:
            surfaced = self._surface()
            if surfaced is None:
                return
            expires_at, session_hash, _ = surfaced
            if expires_at > now:
                heapq.heappush(self._expiries, (expires_at, session_hash))
                return
            self._remove(session_hash)

    def _evict_soonest(self) -> None:
        """Drop the session closest to expiry (the store is full)."""
        surfaced = self._surface()
        if surfaced is not None:
            self._remove(surfaced[1])

    def _compact(self) -> None:
        """Rebuild the heap when entries of deleted sessions outnumber live ones (keeps memory bounded)."""
        if len(self._expiries) > 2 * len(self._sessions) + 64:
            self._expiries = [(entry.expires_at, h) for h, entry in self._sessions.items()]
            heapq.heapify(self._expiries)
