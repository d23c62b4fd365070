"""Composition root: builds adapters, services, the web tier and workers into one ordered service tree."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable

from twisted.python.failure import Failure
from eliot import log_message, write_failure
from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred

from tenantsvc.adapters.db.connection_pool import ConnectionPool
from tenantsvc.adapters.db.pool import Database
from tenantsvc.adapters.db.service import DatabaseService
from tenantsvc.config import Settings
from tenantsvc.obs.logging import LoggingService
from tenantsvc.obs.metrics import Metrics
from tenantsvc.obs.platform_metrics import register_platform_metrics
from tenantsvc.services.demo import ensure_demo_tenant
from tenantsvc.core.breaker import BACKGROUND, READ, WRITE, BreakerConfig
from tenantsvc.core.rate_limits import PUBLIC, RateLimitPolicies
from tenantsvc.core.sessions import SessionPolicy
from tenantsvc.core.settlement import SettlementPolicy
from tenantsvc.services.accounts import AccountService
from tenantsvc.services.betting import BettingService
from tenantsvc.services.odds_board import OddsBoard
from tenantsvc.services.odds_ingest import OddsIngest
from tenantsvc.services.settlement import SettlementService
from tenantsvc.services.rate_limiting import RateLimiters, build_rate_limiters
from tenantsvc.services.sessions import SessionService
from tenantsvc.services.db_guard import DbBreaker
from tenantsvc.services.redis_guard import RedisBreaker, redis_breaker_config
from tenantsvc.adapters.db.pgbouncer_admin import pgbouncer_pools_probe
from tenantsvc.services.health import HealthReport
from tenantsvc.services.registry import TenantRegistry
from tenantsvc.services.tenants import TenantService
from tenantsvc.core.theme_cache_rules import CacheWindows
from tenantsvc.services.theme_cache import INVALIDATION_CHANNEL, ThemeCache, ThemeCacheSettings

# Pressure must be seen in two consecutive 0.25 s pool samples before the breaker opens: a single burst
# of commits landing together otherwise refused reads for a whole open period (bench/load_check.py).
# Open periods start at 1 s and double with each failed probe up to 5 s: a blip is retried at once, a long
# outage once every 5 s, and writes work again at most ~5 s after the database does.
PRODUCTION_BREAKER = BreakerConfig(open_after_hot_samples=2, open_duration_s=1.0, open_backoff_factor=2.0,
                                   open_duration_max_s=5.0)


class OrderedMultiService(MultiService):
    """Starts children in the order added and stops them one at a time in reverse, waiting for each.

    ``before_stop`` callables run first (e.g. readiness turning 503, so the load balancer stops
    sending traffic before anything else stops).
    """

    def __init__(self) -> None:
        super().__init__()
        self.before_stop: list[Callable[[], None]] = []

    def stopService(self) -> Deferred:
        """Run ``before_stop``, then stop children last-to-first, each after the previous one stopped."""
        super(MultiService, self).stopService()
        for hook in self.before_stop:
            hook()
        return ensureDeferred(self._stop_in_reverse())

    async def _stop_in_reverse(self) -> None:
        for child in reversed(list(self)):
            try:
                stopping = child.stopService()
                if isinstance(stopping, Deferred):
                    await stopping
            except Exception:
                write_failure(Failure())


@dataclass
class Players:
    """Accounts, sessions and rate limits (issue 5)."""

    accounts: AccountService
    sessions: SessionService
    limiters: RateLimiters
    policies: RateLimitPolicies
    passwords: Any


def build_players(settings: Settings, reactor: Any, metrics: Metrics, reads: Any, writes: Any,
                  redis: Any, passwords: Any = None) -> Players:
    """Accounts, sessions and limiters: shared through Redis when ``redis`` is a real client, else in-process.

    ``passwords`` replaces the threaded argon2id hashing (tests on a Clock pass a synchronous one).
    """
    from tenantsvc.adapters.passwords import PasswordHashing
    from tenantsvc.adapters.session_store import MemorySessionStore

    real_redis = redis if hasattr(redis, "run_script") else None
    if real_redis is not None:
        from tenantsvc.adapters.redis_sessions import RedisSessionStore

        store: Any = RedisSessionStore(real_redis)
    else:
        store = MemorySessionStore(reactor)
    if passwords is None:
        passwords = PasswordHashing(reactor, on_timing=metrics.record_password_operation,
                                    on_rejected=metrics.hashing_rejected.inc)
        metrics.watch_password_hashing(passwords.threads, lambda: passwords.queue_depth, passwords.queue_depth_peak)
    sessions = SessionService(store, reactor, SessionPolicy(absolute_lifetime_s=settings.session_absolute_lifetime_s),
                              metrics=metrics)
    return Players(accounts=AccountService(reads, writes, passwords), sessions=sessions,
                   limiters=build_rate_limiters(reactor, metrics, real_redis),
                   policies=RateLimitPolicies.from_text(settings.rate_limits), passwords=passwords)


@dataclass
class Sportsbook:
    """Odds list and bets for the web tier (issue 6); the feed workers are built by ``build_feed_workers``."""

    betting: BettingService
    odds: OddsBoard


def build_sportsbook(settings: Settings, reactor: Any, metrics: Metrics, reads: Any, writes: Any) -> Sportsbook:
    """The odds list (short in-process cache) and the betting service."""
    return Sportsbook(
        betting=BettingService(reads, writes, reactor, max_odds_age_s=settings.odds_max_age_s, metrics=metrics),
        odds=OddsBoard(reads, reactor, ttl_s=settings.odds_cache_ttl_s),
    )


def build_feed(settings: Settings, reactor: Any) -> Any:
    """The feed the workers read: the bundled sample files with ``--demo``, else Goalserve over HTTP."""
    if settings.demo:
        from tenantsvc.adapters.demo_feed import DemoFeed

        return DemoFeed(clock=reactor, run_in_thread=in_thread(reactor))
    from twisted.web.client import Agent, HTTPConnectionPool

    from tenantsvc.adapters.goalserve import GoalserveClient

    assert settings.goalserve_api_key is not None, "load_settings refuses worker roles without a key"
    return GoalserveClient(base_url=settings.goalserve_base_url, api_key=settings.goalserve_api_key, clock=reactor,
                           agent=Agent(reactor, pool=HTTPConnectionPool(reactor)),
                           timeout_s=settings.goalserve_timeout_s)


def in_thread(reactor: Any) -> Callable[..., Deferred]:
    """``run(fn, *args)`` → a Deferred of ``fn(*args)`` run in the reactor's thread pool (big feed parses)."""
    from twisted.internet.threads import deferToThreadPool

    return lambda fn, *args: deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)


@dataclass
class FeedWorkers:
    """The odds poller and the settlement loop of this process (None where the role does not run them)."""

    odds: Any = None
    settlement: Any = None

    def services(self) -> list[Any]:
        """The workers to start, odds first."""
        return [worker for worker in (self.odds, self.settlement) if worker is not None]


def build_feed_workers(components: "Components", reactor: Any, feed: Any = None,
                       run_in_thread: Callable[..., Any] | None = None) -> FeedWorkers:
    """The odds poller and the settlement loop this process's role runs (none for ``web``).

    ``feed`` and ``run_in_thread`` replace the configured feed and the thread pool (tests).
    """
    from tenantsvc.runtime.looping import LoopingWorker
    from tenantsvc.workers.odds_poller import OddsPoller

    settings = components.settings
    workers = FeedWorkers()
    if not settings.runs_feed_workers:
        return workers
    feed = feed if feed is not None else build_feed(settings, reactor)
    run_in_thread = run_in_thread or in_thread(reactor)
    writes = components.breaker.runner(BACKGROUND)  # feed work waits for a closed breaker; it never probes
    if settings.runs_worker("worker_odds"):
        ingest = OddsIngest(feed, writes, reactor, run_in_thread)
        # Backoff starts at one full period: a failing feed is never asked sooner than a healthy one.
        period = settings.odds_poll_interval_s
        poller = OddsPoller(settings.odds_sports, ingest.ingest, clock=reactor, metrics=components.metrics,
                            period_s=period, backoff_base_s=period, backoff_cap_s=6 * period)
        poller.setName("worker_odds")
        workers.odds = poller
    if settings.runs_worker("worker_settlement"):
        policy = SettlementPolicy(postponed_void_after_s=settings.settlement_postponed_void_after_s,
                                  missing_result_review_after_s=settings.settlement_review_after_s)
        settlement = SettlementService(feed, writes, reactor, run_in_thread, policy=policy, metrics=components.metrics)
        workers.settlement = LoopingWorker("worker_settlement", settlement.run_cycle, clock=reactor,
                                           interval_s=settings.settlement_interval_s, metrics=components.metrics)
    return workers


@dataclass
class Components:
    """The built object graph, exposed for tests and the benchmark."""

    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    db: Database
    db_service: DatabaseService
    breaker: DbBreaker
    tenant_registry: TenantRegistry
    themes: ThemeCache
    tenants: TenantService
    players: Players
    sportsbook: Sportsbook
    redis: Any = None
    redis_breaker: RedisBreaker | None = None
    subscriber: Any = None
    root: Any = None
    site: Any = None
    readiness: Any = None
    reactor_lag: Any = None
    ops_root: Any = None
    ops_site: Any = None


def build_components(settings: Settings, reactor: Any, *,
                     pool_factory: Callable[..., Any] = ConnectionPool, l2: Any = None,
                     passwords: Any = None) -> Components:
    """Create the adapters and services (no listening, no loops): the part tests reuse.

    ``pool_factory`` builds the DB connection pool (``connection_pool.ConnectionPool``; tests pass a threadless one);
    ``l2`` replaces the Redis client built from ``REDIS_URL`` (tests pass the in-memory store);
    ``passwords`` replaces the threaded password hashing.
    """
    from tenantsvc.obs.reactor_lag import ReactorLagMonitor

    registry = CollectorRegistry()
    metrics = Metrics(registry, settings.role)
    reactor_lag = ReactorLagMonitor(reactor, registry, threshold_s=settings.reactor_lag_ready_threshold_s,
                                    recovery_s=settings.reactor_lag_ready_recovery_s)
    db = Database(settings, reactor, pool_factory=pool_factory)
    db.add_observer(metrics.record_interaction)
    metrics.watch_pool(db.snapshot)
    metrics.watch_pool_peaks(db.peaks)
    register_platform_metrics(registry, version=settings.app_version, role=settings.role,
                              environment=settings.environment)
    metrics.watch_connection_replacements(lambda: db.replacements)
    tenant_registry = TenantRegistry()
    redis, redis_breaker = l2, None
    if redis is None and settings.redis is not None:
        redis, redis_breaker = build_redis(settings, reactor, metrics)
    breaker = DbBreaker(db, reactor, metrics, config=PRODUCTION_BREAKER, conn_timeout_s=settings.db_conn_timeout_s,
                        statement_timeout_s=settings.db_statement_timeout_ms / 1000,
                        slow_call_threshold_s=settings.db_slow_call_threshold_ms / 1000)
    reads, writes = breaker.runner(READ), breaker.runner(WRITE)
    themes = ThemeCache(  # refreshes and the warmer are background work: never a half-open probe
        clock=reactor, db=breaker.runner(BACKGROUND), registry=tenant_registry, metrics=metrics, l2=redis,
        settings=ThemeCacheSettings(CacheWindows(settings.theme_cache_ttl_s, settings.theme_cache_swr_s),
                                    settings.theme_cache_max_entries, settings.theme_l2_timeout_s),
    )
    subscriber = None
    if settings.redis is not None and l2 is None:
        from tenantsvc.adapters.redis import RedisSubscriber

        subscriber = RedisSubscriber(settings.redis, INVALIDATION_CHANNEL, themes.on_invalidation,
                                     lambda first: None if first else themes.mark_all_stale())
    tenants = TenantService(reads, writes, themes)
    players = build_players(settings, reactor, metrics, reads, writes, redis, passwords)
    return Components(settings=settings, registry=registry, metrics=metrics, db=db,
                      db_service=DatabaseService(db, reactor), breaker=breaker, tenant_registry=tenant_registry,
                      themes=themes, tenants=tenants, players=players,
                      sportsbook=build_sportsbook(settings, reactor, metrics, reads, writes),
                      redis=redis, redis_breaker=redis_breaker, subscriber=subscriber, reactor_lag=reactor_lag)


def build_redis(settings: Settings, reactor: Any, metrics: Metrics) -> tuple[Any, RedisBreaker]:
    """The client of ``REDIS_URL`` and the circuit breaker that guards every one of its calls (issue 10, item 4).

    The breaker's PING probe may wait for a pool slot to reconnect (``RECONNECT_WITHIN_S``), so the first
    probe after Redis comes back finds it even if every connection had been dropped meanwhile.
    """
    from tenantsvc.adapters.redis import RECONNECT_WITHIN_S, RedisClient

    assert settings.redis is not None
    client = RedisClient(settings.redis, reactor, settings.redis_timeout_s)
    breaker = RedisBreaker(reactor, metrics, probe_timeout_s=max(settings.redis_timeout_s, RECONNECT_WITHIN_S),
                           config=redis_breaker_config(settings.redis_breaker_failures, settings.redis_breaker_open_s,
                                                       settings.redis_breaker_open_max_s))
    breaker.protect(client)
    return client, breaker


def build_web(components: Components, reactor: Any, *, odds_feed: Callable[[], dict] | None = None) -> None:
    """Build the root resource and Site for ``components`` (imports Klein, so only once a reactor is chosen).

    A worker role gets only the operational endpoints (health, readiness, metrics); ``odds_feed``
    describes the odds poller's state in ``/health/detailed``. With ``OPS_LISTEN`` a second root and Site
    (``components.ops_root``/``ops_site``) serve the operational endpoints, and the main root keeps only
    ``/healthz`` and ``/readyz``; with ``OPS_TOKEN`` ``/metrics`` and ``/health/detailed`` need the token.
    """
    from tenantsvc.web.admin import AdminApi
    from tenantsvc.web.bearer import BearerToken
    from tenantsvc.web.health import Readiness, operational_handlers, probes_only
    from tenantsvc.web.operations import OPS_NOT_SERVED, NotServedHere, not_served, not_served_on_ops
    from tenantsvc.web.public_theme import public_theme_handler
    from tenantsvc.web.tenant_api import TenantApi

    settings = components.settings
    players = components.players
    readiness = Readiness(lag=components.reactor_lag)
    redis = components.redis
    report = HealthReport(clock=reactor, db=components.db, version=settings.app_version, role=settings.role,
                          redis_ping=redis.ping if hasattr(redis, "ping") else None,
                          breaker=components.breaker.describe,
                          sessions_count=players.sessions.count if settings.serves_web else None,
                          pgbouncer_pools=pgbouncer_pools_probe(settings.pgbouncer_admin_url, reactor),
                          odds_feed=odds_feed,
                          redis_breaker=components.redis_breaker.describe if components.redis_breaker else None,
                          probe_cache_s=settings.health_probe_cache_s, metrics=components.metrics)
    ops_token = (BearerToken(settings.ops_token, realm="tenantsvc-operations", needed_for="operations")
                 if settings.ops_token else None)
    operational = operational_handlers(clock=reactor, version=settings.app_version, readiness=readiness,
                                       registry=components.registry, detailed_check=report.check,
                                       ops_token=ops_token)
    if settings.serves_web:
        public_theme = public_theme_handler(components.themes, players.limiters.local, players.policies[PUBLIC],
                                            components.tenant_registry.may_exist)
        admin = AdminApi(components.tenants, settings.admin_token, components.breaker,
                         components.sportsbook.betting).app.resource()
        tenant_api = TenantApi(
            accounts=players.accounts, sessions=players.sessions, betting=components.sportsbook.betting,
            odds=components.sportsbook.odds, limiters=players.limiters,
            policies=players.policies, may_exist=components.tenant_registry.may_exist,
            secure_cookies=not settings.is_development, trusted_proxy_header=settings.trusted_proxy_header,
        ).app.resource()
    else:
        public_theme, admin, tenant_api = not_served, NotServedHere(), NotServedHere()
    main_operational = probes_only(operational) if settings.ops_listen else operational
    root, site = _root_and_site(components, reactor, main_operational, public_theme, admin, tenant_api)
    components.root, components.site, components.readiness = root, site, readiness
    if settings.ops_listen:
        components.ops_root, components.ops_site = _root_and_site(
            components, reactor, operational, not_served_on_ops, NotServedHere(OPS_NOT_SERVED),
            NotServedHere(OPS_NOT_SERVED))


def _root_and_site(components: Components, reactor: Any, operational: dict, public_theme: Any, admin: Any,
                   tenant_api: Any) -> tuple[Any, Any]:
    """A root resource over these handlers (framing, metrics, logs as every listener has) and its Site."""
    from tenantsvc.web.request import TenantRequest
    from tenantsvc.web.root import RootResource
    from tenantsvc.web.server import EdgeSite

    settings = components.settings
    root = RootResource(
        clock=reactor, metrics=components.metrics, is_known_tenant=components.tenant_registry.is_known,
        operational=operational, public_theme=public_theme, admin=admin, tenant_api=tenant_api,
        access_log_sample_rate=settings.access_log_sample_rate,
        access_log_slow_s=settings.access_log_slow_threshold_ms / 1000,
    )
    site = EdgeSite(root, reactor=reactor, limits=edge_limits(settings),
                    tracker=connection_tracker(settings, reactor, components.metrics))
    site.displayTracebacks = False
    site.requestFactory = _request_factory(settings.max_body_bytes, TenantRequest)
    return root, site


def edge_limits(settings: Settings) -> Any:
    """The per-connection limits of the HTTP edge from ``HTTP_*``."""
    from tenantsvc.web.channel import EdgeLimits

    return EdgeLimits(max_pipelined=settings.http_max_pipelined, write_buffer_bytes=settings.http_write_buffer_bytes,
                      write_timeout_s=settings.http_write_timeout_s, header_timeout_s=settings.http_header_timeout_s)


def connection_tracker(settings: Settings, reactor: Any, metrics: Metrics) -> Any:
    """The process's open connections: the per-client cap, the drain, and their metrics."""
    from tenantsvc.web.connections import ConnectionTracker

    tracker = ConnectionTracker(reactor, max_per_client=settings.http_max_connections_per_client,
                                on_closed=metrics.record_connection_closed)
    metrics.watch_connections(lambda: tracker.open_count)
    return tracker


def _request_factory(max_body_bytes: int, base: type) -> type:
    return type("BoundedRequest", (base,), {"max_body_bytes": max_body_bytes})


def build_service(settings: Settings, reactor: Any) -> MultiService:
    """The whole process: logging → db → redis → web → workers, as named children started in that order.

    Worker roles listen too, serving only health, readiness and metrics (``web.operations``).
    """
    from tenantsvc.web.server import WebService
    from tenantsvc.runtime.looping import LoopingWorker

    top = OrderedMultiService()
    LoggingService(reactor, settings.log_file).setServiceParent(top)
    components = build_components(settings, reactor)
    components.reactor_lag.setServiceParent(top)  # every role: its lag holds readiness and is in /metrics
    components.db_service.setServiceParent(top)
    components.breaker.setServiceParent(top)
    if hasattr(components.players.passwords, "setServiceParent"):
        components.players.passwords.setServiceParent(top)
    for redis_service in (components.redis, components.redis_breaker, components.subscriber):
        if redis_service is not None:
            redis_service.setServiceParent(top)
    log_message("tenantsvc:startup", role=settings.role, listen=settings.listen,
                database=settings.database.describe(),
                redis=settings.redis.describe() if settings.redis else None, demo=settings.demo)

    workers = build_feed_workers(components, reactor)

    async def after_migrations() -> None:
        await components.db_service.when_ready()
        if top.running:  # the feed workers write to tables the migrations create: start them only now
            for worker in workers.services():
                worker.setServiceParent(top)
        if settings.demo:
            await ensure_demo_tenant(components.db)
        if settings.serves_web:
            await components.themes.warm()

    warmed: Deferred = Deferred()  # fires when the start-up work is over, whatever its outcome

    def start_after_migrations() -> None:
        started = ensureDeferred(after_migrations()).addErrback(write_failure)
        started.addBoth(freeze_start_up_heap).addBoth(warmed.callback)

    reactor.callWhenRunning(start_after_migrations)

    build_web(components, reactor, odds_feed=workers.odds.describe if workers.odds is not None else None)
    top.before_stop.append(components.readiness.start_draining)
    top.before_stop.append(components.themes.stop)
    if components.ops_site is not None:  # added first, so it stops after the main listener has drained
        WebService(reactor=reactor, listen=settings.ops_listen, site=components.ops_site, root=components.ops_root,
                   readiness=components.readiness, name="ops", marks_ready=False,
                   what="the operations listener (--ops-listen/OPS_LISTEN)").setServiceParent(top)
    WebService(reactor=reactor, listen=settings.listen, site=components.site, root=components.root,
               readiness=components.readiness, warmed=warmed, drain_timeout_s=settings.drain_timeout_s,
               prestop_delay_s=settings.drain_prestop_delay_s).setServiceParent(top)
    if settings.serves_web:
        LoopingWorker("theme_warmer", components.themes.warm, clock=reactor, interval_s=settings.theme_warm_interval_s,
                      metrics=components.metrics, run_now=False).setServiceParent(top)
    if settings.role == "all" and not settings.runs_feed_workers:
        log_message("tenantsvc:feed:disabled",
                    reason="no GOALSERVE_API_KEY in development: odds and settlement workers are off (--demo reads the sample feed)")
    return top


def freeze_start_up_heap(result: object = None) -> object:
    """Move every object alive after start-up out of the garbage collector's sight (``gc.freeze``).

    Modules, routes, the warmed cache and the service tree live for the whole process; without this,
    each full collection triggered by per-request garbage walks them all again (DESIGN §8: p99 30 → 9 ms).
    """
    gc.collect()
    gc.freeze()
    return result

