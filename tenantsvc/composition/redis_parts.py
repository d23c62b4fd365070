"""The optional Redis of ``REDIS_URL``: its client, the circuit breaker guarding every call, the invalidation subscriber.

Without ``REDIS_URL`` there are no Redis parts at all (``None``), and each consumer falls back to its
in-process store: the theme cache has no L2, sessions and limits stay in the process.
txredisapi is imported only when the parts are built (importing this module chooses no reactor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenantsvc.config import Settings
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.redis_guard import RedisBreaker, redis_breaker_config
from tenantsvc.services.theme_cache import INVALIDATION_CHANNEL, ThemeCache

if TYPE_CHECKING:
    from tenantsvc.adapters.redis import RedisClient, RedisSubscriber


@dataclass(frozen=True)
class RedisParts:
    """The client (what the theme cache, sessions and limiters use), its breaker, and the subscriber that drops
    L1 theme copies when another instance saves a theme (None when not subscribing)."""

    client: RedisClient
    breaker: RedisBreaker
    subscriber: RedisSubscriber | None = None

    def services(self) -> list[Any]:
        """The parts to start, in order: client, breaker, subscriber."""
        return [part for part in (self.client, self.breaker, self.subscriber) if part is not None]


def build_redis(settings: Settings, reactor: Any, metrics: Metrics) -> RedisParts:
    """The client of ``REDIS_URL`` and the circuit breaker that guards every one of its calls (issue 10, item 4).

    The breaker's PING probe may wait for a pool slot to reconnect (``RECONNECT_WITHIN_S``), so the first
    probe after Redis comes back finds it even if every connection had been dropped meanwhile.
    """
    from tenantsvc.adapters.redis import RECONNECT_WITHIN_S, RedisClient

    assert settings.redis is not None, "build_redis is only called with REDIS_URL set"
    client = RedisClient(settings.redis, reactor, settings.redis_timeout_s)
    breaker = RedisBreaker(reactor, metrics, probe_timeout_s=max(settings.redis_timeout_s, RECONNECT_WITHIN_S),
                           config=redis_breaker_config(settings.redis_breaker_failures, settings.redis_breaker_open_s,
                                                       settings.redis_breaker_open_max_s))
    breaker.protect(client)
    return RedisParts(client=client, breaker=breaker)


def build_subscriber(settings: Settings, themes: ThemeCache) -> RedisSubscriber:
    """The subscriber to the theme invalidation channel: drops L1 copies, and marks every one stale on a
    re-subscription (messages may have been missed while disconnected)."""
    from tenantsvc.adapters.redis import RedisSubscriber

    assert settings.redis is not None, "build_subscriber is only called with REDIS_URL set"
    return RedisSubscriber(settings.redis, INVALIDATION_CHANNEL, themes.on_invalidation,
                           lambda first: None if first else themes.mark_all_stale())
