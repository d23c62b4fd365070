"""Composition root: ``build_service`` builds adapters, services, the web tier and workers into one ordered
service tree and returns it with everything it built (``Built``); ``tap.py``, the fault stack and the fleet
fixtures all go through it (tests with ``Overrides``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eliot import log_message, write_failure
from twisted.internet.defer import Deferred, ensureDeferred

from tenantsvc.composition.core_parts import Components, build_components
from tenantsvc.composition.overrides import PRODUCTION, Overrides
from tenantsvc.composition.tree import OrderedMultiService, freeze_start_up_heap
from tenantsvc.composition.web_parts import WebParts, build_web
from tenantsvc.composition.workers import FeedWorkers, build_feed_workers
from tenantsvc.config import Settings
from tenantsvc.obs.logging import LoggingService
from tenantsvc.services.demo import ensure_demo_tenant

if TYPE_CHECKING:
    from tenantsvc.web.server import WebService

__all__ = ["Built", "Overrides", "build_service"]


@dataclass(frozen=True)
class Built:
    """One process as built: the service tree to start, and the parts in it.

    ``started`` fires (with None, whatever the outcome) once the start-up work is over: migrations applied,
    feed workers started, the demo tenant ensured and the theme cache warmed. ``listener`` is the main
    listener's ``WebService`` and ``ops_listener`` the operations listener's (or None); each one's ``port`` is
    set once it listens.
    """

    service: OrderedMultiService
    components: Components
    web: WebParts
    workers: FeedWorkers
    started: Deferred
    listener: WebService
    ops_listener: WebService | None


def build_service(settings: Settings, reactor: Any, overrides: Overrides = PRODUCTION) -> Built:
    """The whole process: logging → db → redis → web → workers, as named children started in that order.

    Worker roles listen too, serving only health, readiness and metrics (``web.operations``). Stopping the
    tree turns readiness 503 and stops the theme cache first, then drains the main listener, then the
    operations listener, then stops the rest in reverse.
    """
    from tenantsvc.web.server import WebService
    from tenantsvc.runtime.looping import LoopingWorker

    top = OrderedMultiService()
    if overrides.log:
        LoggingService(reactor, settings.log_file).setServiceParent(top)
    components = build_components(settings, reactor, overrides)
    components.reactor_lag.setServiceParent(top)  # every role: its lag holds readiness and is in /metrics
    components.db_service.setServiceParent(top)
    components.breaker.setServiceParent(top)
    if components.players.hashing_pool is not None:
        components.players.hashing_pool.setServiceParent(top)
    for redis_service in components.redis.services() if components.redis is not None else ():
        redis_service.setServiceParent(top)
    log_message("tenantsvc:startup", role=settings.role, listen=settings.listen,
                database=settings.database.describe(),
                redis=settings.redis.describe() if settings.redis else None, demo=settings.demo)

    workers = build_feed_workers(settings, reactor, components.metrics, components.breaker, feed=overrides.feed,
                                 run_in_thread=overrides.run_in_thread)

    async def after_migrations() -> None:
        await components.db_service.when_ready()
        if top.running:  # the feed workers write to tables the migrations create: start them only now
            for worker in workers.services():
                worker.setServiceParent(top)
        if settings.demo:
            await ensure_demo_tenant(components.db)
        if settings.serves_web and overrides.warm:
            await components.themes.warm()

    started: Deferred = Deferred()  # fires when the start-up work is over, whatever its outcome

    def start_after_migrations() -> None:
        done = ensureDeferred(after_migrations()).addErrback(write_failure)
        if overrides.freeze_heap:
            done.addBoth(freeze_start_up_heap)
        done.addBoth(started.callback)

    reactor.callWhenRunning(start_after_migrations)

    web = build_web(components, reactor, odds_feed=workers.odds.describe if workers.odds is not None else None)
    top.before_stop.append(web.readiness.start_draining)
    top.before_stop.append(components.themes.stop)
    ops_listener = None
    if web.ops is not None:  # added first, so it stops after the main listener has drained
        assert settings.ops_listen is not None, "build_web builds the operations listener only for OPS_LISTEN"
        ops_listener = WebService(reactor=reactor, listen=settings.ops_listen, site=web.ops.site, root=web.ops.root,
                                  readiness=web.readiness, name="ops", marks_ready=False,
                                  what="the operations listener (--ops-listen/OPS_LISTEN)")
        ops_listener.setServiceParent(top)
    listener = WebService(reactor=reactor, listen=settings.listen, site=web.site, root=web.root,
                          readiness=web.readiness, warmed=started, drain_timeout_s=settings.drain_timeout_s,
                          prestop_delay_s=settings.drain_prestop_delay_s)
    listener.setServiceParent(top)
    if settings.serves_web:
        LoopingWorker("theme_warmer", components.themes.warm, clock=reactor, interval_s=settings.theme_warm_interval_s,
                      metrics=components.metrics, run_now=False).setServiceParent(top)
    if settings.role == "all" and not settings.runs_feed_workers:
        log_message("tenantsvc:feed:disabled",
                    reason="no GOALSERVE_API_KEY in development: odds and settlement workers are off (--demo reads the sample feed)")
    return Built(service=top, components=components, web=web, workers=workers, started=started,
                 listener=listener, ops_listener=ops_listener)
