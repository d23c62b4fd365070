"""An in-memory ``KeyValueStore`` with Redis semantics (PX expiry on an injected clock, NX, compare-and-delete,
publish to local subscribers), for fast unit tests. The contract suite runs it and Redis through the same cases.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed

from tenantsvc.adapters.redis import RedisUnavailable


class MemoryKeyValueStore:
    """Dictionary-backed stand-in for ``RedisClient``; ``available = False`` makes every call fail."""

    def __init__(self, clock: Any):
        self._clock = clock
        self._values: dict[str, tuple[str, float | None]] = {}
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self.available = True
        self.calls: list[str] = []

    def _check(self, command: str) -> None:
        self.calls.append(command)
        if not self.available:
            raise RedisUnavailable(f"{command}: unavailable")

    def _live(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and self._clock.seconds() >= expires_at:
            del self._values[key]
            return None
        return value

    def get(self, key: str) -> Deferred:
        """GET."""
        try:
            self._check("GET")
        except RedisUnavailable as error:
            return fail(error)
        return succeed(self._live(key))

    def set(self, key: str, value: str, *, px: int | None = None, nx: bool = False) -> Deferred:
        """SET with optional PX and NX; fires True when stored."""
        try:
            self._check("SET")
        except RedisUnavailable as error:
            return fail(error)
        if nx and self._live(key) is not None:
            return succeed(False)
        expires_at = self._clock.seconds() + px / 1000.0 if px is not None else None
        self._values[key] = (value, expires_at)
        return succeed(True)

    def compare_and_delete(self, key: str, token: str) -> Deferred:
        """Delete ``key`` only while it holds ``token``."""
        try:
            self._check("EVAL")
        except RedisUnavailable as error:
            return fail(error)
        if self._live(key) == token:
            del self._values[key]
            return succeed(True)
        return succeed(False)

    def set_if_newer(self, key: str, value: str, fetched_at: float, *, px: int) -> Deferred:
        """Store a JSON entry unless the stored one has a later ``fetched_at`` (as the Redis script does)."""
        try:
            self._check("EVALSHA")
        except RedisUnavailable as error:
            return fail(error)
        current = self._live(key)
        if current is not None:
            try:
                stored_at = float(json.loads(current)["fetched_at"])
            except (ValueError, KeyError, TypeError):
                stored_at = None
            if stored_at is not None and stored_at > fetched_at:
                return succeed(False)
        self._values[key] = (value, self._clock.seconds() + px / 1000.0)
        return succeed(True)

    def publish(self, channel: str, message: str) -> Deferred:
        """Deliver ``message`` to every local subscriber of ``channel``."""
        try:
            self._check("PUBLISH")
        except RedisUnavailable as error:
            return fail(error)
        receivers = list(self._subscribers.get(channel, []))
        for receiver in receivers:
            receiver(message)
        return succeed(len(receivers))

    def subscribe(self, channel: str, receiver: Callable[[str], None]) -> None:
        """Register a local subscriber (what ``RedisSubscriber`` does over the network)."""
        self._subscribers.setdefault(channel, []).append(receiver)
