"""Telling the fleet about a theme: write it through to L2 (Redis) and publish it to every instance.

A write that Redis refuses (down, paused, timing out) is not dropped: the newest refused entry of each
tenant is kept and written again, with backoff, until Redis answers. Without this, a theme saved while
Redis was paused would reach the other instances only when their L1 entries expired, because a
subscriber whose connection outlived the pause cannot tell that it missed a message. Newest wins all
along: a retried entry never replaces a newer one in L2 (``set_if_newer``) or in any L1.
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable

from eliot import MessageType, fields
from twisted.internet.defer import ensureDeferred

from tenantsvc.adapters.redis import KeyValueStore, RedisUnavailable
from tenantsvc.core.backoff import backoff_delay
from tenantsvc.core.theme_cache_rules import CachedTheme, encode_l2
from tenantsvc.obs.metrics import Metrics

L2_TTL_MS = 3_600_000
INVALIDATION_CHANNEL = "branding:invalidate"
RETRY_BASE_S = 0.5
RETRY_CAP_S = 10.0

REPUBLISHED = MessageType("tenantsvc:themes:republished", fields(tenants=int, attempts=int),
                          "Themes Redis had refused were written through and published once it answered again.")


def l2_key(slug: str) -> str:
    """The Redis key of a tenant's cached theme."""
    return f"branding:{slug}"


class ThemePublisher:
    """Writes themes through to L2 and publishes them; keeps what Redis refused and retries it."""

    def __init__(self, l2: KeyValueStore, clock: Any, metrics: Metrics, *,
                 random: Callable[[], float] = _random.random):
        self._l2 = l2
        self._clock = clock
        self._metrics = metrics
        self._random = random
        self._refused: dict[str, CachedTheme] = {}  # newest refused entry per tenant: bounded by the tenants
        self._retry: Any = None
        self._attempts = 0

    @property
    def waiting(self) -> int:
        """How many tenants' themes are waiting for Redis to answer again."""
        return len(self._refused)

    async def publish(self, entry: CachedTheme) -> None:
        """Write ``entry`` to L2 unless a newer one is there and, if it was written, publish it to the fleet.

        If Redis refuses, the entry is kept for a retry and this returns normally (the caller's L1 and
        the database already hold the theme).
        """
        try:
            await self._write(entry)
        except RedisUnavailable:
            self._metrics.cache_l2.labels("branding", "set", "error").inc()
            self._keep(entry)

    def stop(self) -> None:
        """Cancel a scheduled retry (at shutdown)."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    async def _write(self, entry: CachedTheme) -> None:
        value = encode_l2(entry)
        written = await self._l2.set_if_newer(l2_key(entry.slug), value, entry.fetched_at, px=L2_TTL_MS)
        self._metrics.cache_l2.labels("branding", "set", "ok").inc()  # answered (a newer entry may have won)
        if written:
            await self._l2.publish(INVALIDATION_CHANNEL, value)

    def _keep(self, entry: CachedTheme) -> None:
        kept = self._refused.get(entry.slug)
        if kept is None or entry.fetched_at >= kept.fetched_at:
            self._refused[entry.slug] = entry
        if self._retry is None:
            delay = backoff_delay(self._attempts, RETRY_BASE_S, RETRY_CAP_S, self._random)
            self._retry = self._clock.callLater(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._attempts += 1
        ensureDeferred(self._flush())

    async def _flush(self) -> None:
        refused, self._refused = self._refused, {}
        for position, entry in enumerate(list(refused.values())):
            try:
                await self._write(entry)
            except RedisUnavailable:
                for later in list(refused.values())[position:]:
                    self._keep(later)
                return
        if refused:
            REPUBLISHED.log(tenants=len(refused), attempts=self._attempts)
        if not self._refused:
            self._attempts = 0
