"""The web parts of a process: root resources and Sites for the main listener and the operations listener.

Klein is imported only when the parts are built (importing this module chooses no reactor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from twisted.web.resource import IResource

from tenantsvc.adapters.db.pgbouncer_admin import pgbouncer_pools_probe
from tenantsvc.composition.core_parts import Components
from tenantsvc.config import Settings
from tenantsvc.core.rate_limits import PUBLIC
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.health import HealthReport

if TYPE_CHECKING:
    from tenantsvc.web.channel import EdgeLimits
    from tenantsvc.web.connections import ConnectionTracker
    from tenantsvc.web.health import Readiness
    from tenantsvc.web.plain import Handler
    from tenantsvc.web.request import TenantRequest
    from tenantsvc.web.root import RootResource
    from tenantsvc.web.server import EdgeSite


@dataclass(frozen=True)
class Listener:
    """One listener's root resource and the Site serving it."""

    root: RootResource
    site: EdgeSite


@dataclass(frozen=True)
class WebParts:
    """The main listener, the operations listener (``OPS_LISTEN``; else None) and the readiness they share."""

    readiness: Readiness
    main: Listener
    ops: Listener | None

    @property
    def root(self) -> RootResource:
        """The main listener's root resource."""
        return self.main.root

    @property
    def site(self) -> EdgeSite:
        """The main listener's Site."""
        return self.main.site


def build_web(components: Components, reactor: Any, *, odds_feed: Callable[[], dict] | None = None) -> WebParts:
    """Build the root resources and Sites for ``components`` (imports Klein, so only once a reactor is chosen).

    A worker role gets only the operational endpoints (health, readiness, metrics); ``odds_feed``
    describes the odds poller's state in ``/health/detailed``. With ``OPS_LISTEN`` a second root and Site
    serve the operational endpoints, and the main root keeps only ``/healthz`` and ``/readyz``; with
    ``OPS_TOKEN`` ``/metrics`` and ``/health/detailed`` need the token.
    """
    from tenantsvc.web.admin import AdminApi
    from tenantsvc.web.bearer import BearerToken
    from tenantsvc.web.health import Readiness, operational_handlers, probes_only
    from tenantsvc.web.operations import OPS_NOT_SERVED, NotServedHere, not_served, not_served_on_ops
    from tenantsvc.web.public_theme import public_theme_handler
    from tenantsvc.web.tenant_api import TenantApi

    settings, players, redis = components.settings, components.players, components.redis
    readiness = Readiness(lag=components.reactor_lag)
    report = HealthReport(clock=reactor, db=components.db, version=settings.app_version, role=settings.role,
                          redis_ping=redis.client.ping if redis is not None else None,
                          breaker=components.breaker.describe,
                          sessions_count=players.sessions.count if settings.serves_web else None,
                          pgbouncer_pools=pgbouncer_pools_probe(settings.pgbouncer_admin_url, reactor),
                          odds_feed=odds_feed,
                          redis_breaker=redis.breaker.describe if redis is not None else None,
                          probe_cache_s=settings.health_probe_cache_s, metrics=components.metrics)
    ops_token = (BearerToken(settings.ops_token, realm="tenantsvc-operations", needed_for="operations")
                 if settings.ops_token else None)
    operational = operational_handlers(clock=reactor, version=settings.app_version, readiness=readiness,
                                       registry=components.registry, detailed_check=report.check,
                                       ops_token=ops_token)
    public_theme: Handler
    if settings.serves_web:
        public_theme = public_theme_handler(components.themes, players.limiters.local, players.policies[PUBLIC],
                                            components.tenant_registry.may_exist)
        # IResource(x) checks (at run time, and for the type checker) that x provides IResource
        admin = IResource(AdminApi(components.tenants, settings.admin_token, components.breaker,
                                   components.sportsbook.betting).app.resource())
        tenant_api = IResource(TenantApi(
            accounts=players.accounts, sessions=players.sessions, betting=components.sportsbook.betting,
            odds=components.sportsbook.odds, limiters=players.limiters,
            policies=players.policies, may_exist=components.tenant_registry.may_exist,
            secure_cookies=not settings.is_development, trusted_proxy_header=settings.trusted_proxy_header,
        ).app.resource())
    else:
        public_theme, admin, tenant_api = not_served, IResource(NotServedHere()), IResource(NotServedHere())
    main_operational = probes_only(operational) if settings.ops_listen else operational
    main = _listener(components, reactor, main_operational, public_theme, admin, tenant_api)
    ops = None
    if settings.ops_listen:
        ops = _listener(components, reactor, operational, not_served_on_ops, IResource(NotServedHere(OPS_NOT_SERVED)),
                        IResource(NotServedHere(OPS_NOT_SERVED)))
    return WebParts(readiness=readiness, main=main, ops=ops)


def _listener(components: Components, reactor: Any, operational: dict[bytes, Handler], public_theme: Handler,
              admin: IResource, tenant_api: IResource) -> Listener:
    """A root resource over these handlers (framing, metrics, logs as every listener has) and its Site."""
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
    site.requestFactory = bounded_request_class(settings.max_body_bytes)
    return Listener(root=root, site=site)


def edge_limits(settings: Settings) -> EdgeLimits:
    """The per-connection limits of the HTTP edge from ``HTTP_*``."""
    from tenantsvc.web.channel import EdgeLimits

    return EdgeLimits(max_pipelined=settings.http_max_pipelined, write_buffer_bytes=settings.http_write_buffer_bytes,
                      write_timeout_s=settings.http_write_timeout_s, header_timeout_s=settings.http_header_timeout_s)


def connection_tracker(settings: Settings, reactor: Any, metrics: Metrics) -> ConnectionTracker:
    """The process's open connections: the per-client cap, the drain, and their metrics."""
    from tenantsvc.web.connections import ConnectionTracker

    tracker = ConnectionTracker(reactor, max_per_client=settings.http_max_connections_per_client,
                                on_closed=metrics.record_connection_closed)
    metrics.watch_connections(lambda: tracker.open_count)
    return tracker


def bounded_request_class(max_body_bytes: int) -> type[TenantRequest]:
    """A ``TenantRequest`` subclass refusing bodies over ``max_body_bytes``."""
    from tenantsvc.web.request import TenantRequest

    limit = max_body_bytes

    class BoundedRequest(TenantRequest):
        max_body_bytes = limit

    return BoundedRequest
