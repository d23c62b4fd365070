"""The process's adapters and services, without listeners or loops: what every role builds, and what tests reuse.

``build_components`` returns them as one frozen ``Components``; Redis is explicitly optional
(``Components.redis`` is ``RedisParts`` or ``None``) and each consumer is handed the client or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from tenantsvc.adapters.db.pool import Database, InteractionRunner
from tenantsvc.adapters.db.service import DatabaseService
from tenantsvc.adapters.passwords import PasswordHashing
from tenantsvc.adapters.redis_sessions import RedisSessionStore
from tenantsvc.adapters.session_store import MemorySessionStore, SessionStore
from tenantsvc.composition.overrides import PRODUCTION, Overrides
from tenantsvc.composition.redis_parts import RedisParts, build_redis, build_subscriber
from tenantsvc.config import Settings
from tenantsvc.core.breaker import BACKGROUND, READ, WRITE, BreakerConfig
from tenantsvc.core.rate_limits import RateLimitPolicies
from tenantsvc.core.sessions import SessionPolicy
from tenantsvc.core.theme_cache_rules import CacheWindows
from tenantsvc.obs.metrics import Metrics
from tenantsvc.obs.platform_metrics import register_platform_metrics
from tenantsvc.obs.reactor_lag import ReactorLagMonitor
from tenantsvc.services.accounts import AccountService
from tenantsvc.services.betting import BettingService
from tenantsvc.services.db_guard import DbBreaker
from tenantsvc.services.odds_board import OddsBoard
from tenantsvc.services.rate_limiting import RateLimiters, build_rate_limiters
from tenantsvc.services.registry import TenantRegistry
from tenantsvc.services.sessions import SessionService
from tenantsvc.services.tenants import TenantService
from tenantsvc.services.theme_cache import ThemeCache, ThemeCacheSettings

if TYPE_CHECKING:
    from tenantsvc.adapters.redis import RedisClient

# Pressure must be seen in two consecutive 0.25 s pool samples before the breaker opens: a single burst
# of commits landing together otherwise refused reads for a whole open period (bench/load_check.py).
# Open periods start at 1 s and double with each failed probe up to 5 s: a blip is retried at once, a long
# outage once every 5 s, and writes work again at most ~5 s after the database does.
PRODUCTION_BREAKER = BreakerConfig(open_after_hot_samples=2, open_duration_s=1.0, open_backoff_factor=2.0,
                                   open_duration_max_s=5.0)


@dataclass(frozen=True)
class Players:
    """Accounts, sessions and rate limits (issue 5).

    ``hashing_pool`` is the password-hashing thread pool to start with the process, or None when the
    hashing was supplied from outside (``Overrides.passwords``: its owner starts it, if it needs starting).
    """

    accounts: AccountService
    sessions: SessionService
    limiters: RateLimiters
    policies: RateLimitPolicies
    passwords: PasswordHashing
    hashing_pool: PasswordHashing | None


def build_players(settings: Settings, reactor: Any, metrics: Metrics, reads: InteractionRunner,
                  writes: InteractionRunner, redis: RedisClient | None,
                  passwords: PasswordHashing | None = None) -> Players:
    """Accounts, sessions and limiters: shared through ``redis`` when there is one, else in-process.

    ``passwords`` replaces the threaded argon2id hashing (tests on a Clock pass a synchronous one).
    """
    store: SessionStore = RedisSessionStore(redis) if redis is not None else MemorySessionStore(reactor)
    hashing_pool = None
    if passwords is None:
        pool = PasswordHashing(reactor, on_timing=metrics.record_password_operation,
                               on_rejected=metrics.hashing_rejected.inc)
        metrics.watch_password_hashing(pool.threads, lambda: pool.queue_depth, pool.queue_depth_peak)
        passwords = hashing_pool = pool
    sessions = SessionService(store, reactor, SessionPolicy(absolute_lifetime_s=settings.session_absolute_lifetime_s),
                              metrics=metrics)
    return Players(accounts=AccountService(reads, writes, passwords), sessions=sessions,
                   limiters=build_rate_limiters(reactor, metrics, redis),
                   policies=RateLimitPolicies.from_text(settings.rate_limits), passwords=passwords,
                   hashing_pool=hashing_pool)


@dataclass(frozen=True)
class Sportsbook:
    """Odds list and bets for the web tier (issue 6); the feed workers are built by ``build_feed_workers``."""

    betting: BettingService
    odds: OddsBoard


def build_sportsbook(settings: Settings, reactor: Any, metrics: Metrics, reads: InteractionRunner,
                     writes: InteractionRunner) -> Sportsbook:
    """The odds list (short in-process cache) and the betting service."""
    return Sportsbook(
        betting=BettingService(reads, writes, reactor, max_odds_age_s=settings.odds_max_age_s, metrics=metrics),
        odds=OddsBoard(reads, reactor, ttl_s=settings.odds_cache_ttl_s),
    )


@dataclass(frozen=True)
class Components:
    """The built object graph of one process, without listeners or loops (exposed for tests and the benchmark)."""

    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    reactor_lag: ReactorLagMonitor
    db: Database
    db_service: DatabaseService
    breaker: DbBreaker
    tenant_registry: TenantRegistry
    themes: ThemeCache
    tenants: TenantService
    players: Players
    sportsbook: Sportsbook
    redis: RedisParts | None


def build_components(settings: Settings, reactor: Any, overrides: Overrides = PRODUCTION) -> Components:
    """Create the adapters and services (no listening, no loops): the part tests reuse.

    Redis parts come from ``overrides.redis`` when given, else from ``REDIS_URL`` (with the invalidation
    subscriber unless ``overrides.subscribe`` is False), else there are none.
    """
    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.role)
    reactor_lag = ReactorLagMonitor(reactor, registry, threshold_s=settings.reactor_lag_ready_threshold_s,
                                    recovery_s=settings.reactor_lag_ready_recovery_s)
    db = Database(settings, reactor, pool_factory=overrides.pool_factory)
    db.add_observer(metrics.record_interaction)
    metrics.watch_pool(db.snapshot)
    metrics.watch_pool_peaks(db.peaks)
    register_platform_metrics(registry, version=settings.app_version, role=settings.role,
                              environment=settings.environment)
    metrics.watch_connection_replacements(lambda: db.replacements)
    tenant_registry = TenantRegistry()
    redis: RedisParts | None = None
    if overrides.redis is not None:
        redis = overrides.redis(metrics)
    elif settings.redis is not None:
        redis = build_redis(settings, reactor, metrics)
    breaker = DbBreaker(db, reactor, metrics, config=PRODUCTION_BREAKER, conn_timeout_s=settings.db_conn_timeout_s,
                        statement_timeout_s=settings.db_statement_timeout_ms / 1000,
                        slow_call_threshold_s=settings.db_slow_call_threshold_ms / 1000)
    reads, writes = breaker.runner(READ), breaker.runner(WRITE)
    redis_client = redis.client if redis is not None else None
    themes = ThemeCache(  # refreshes and the warmer are background work: never a half-open probe
        clock=reactor, db=breaker.runner(BACKGROUND), registry=tenant_registry, metrics=metrics, l2=redis_client,
        settings=ThemeCacheSettings(CacheWindows(settings.theme_cache_ttl_s, settings.theme_cache_swr_s),
                                    settings.theme_cache_max_entries, settings.theme_l2_timeout_s),
    )
    if redis is not None and overrides.redis is None and overrides.subscribe:
        redis = replace(redis, subscriber=build_subscriber(settings, themes))
    return Components(settings=settings, registry=registry, metrics=metrics, reactor_lag=reactor_lag, db=db,
                      db_service=DatabaseService(db, reactor), breaker=breaker, tenant_registry=tenant_registry,
                      themes=themes, tenants=TenantService(reads, writes, themes),
                      players=build_players(settings, reactor, metrics, reads, writes, redis_client,
                                            overrides.passwords),
                      sportsbook=build_sportsbook(settings, reactor, metrics, reads, writes), redis=redis)
