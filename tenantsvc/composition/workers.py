"""The feed workers a role runs: the odds poller and the settlement loop, over the configured feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred

from tenantsvc.config import Settings
from tenantsvc.core.breaker import BACKGROUND
from tenantsvc.core.settlement import SettlementPolicy
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.db_guard import DbBreaker
from tenantsvc.services.errors import DB_REFUSALS
from tenantsvc.services.odds_ingest import OddsIngest
from tenantsvc.services.settlement import SettlementService
from tenantsvc.runtime.looping import LoopingWorker
from tenantsvc.workers.odds_poller import OddsPoller


@dataclass(frozen=True)
class FeedWorkers:
    """The odds poller and the settlement loop of this process (None where the role does not run them)."""

    odds: OddsPoller | None = None
    settlement: LoopingWorker | None = None

    def services(self) -> list[Any]:
        """The workers to start, odds first."""
        return [worker for worker in (self.odds, self.settlement) if worker is not None]


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


def build_feed_workers(settings: Settings, reactor: Any, metrics: Metrics, breaker: DbBreaker, *, feed: Any = None,
                       run_in_thread: Callable[..., Any] | None = None) -> FeedWorkers:
    """The odds poller and the settlement loop this process's role runs (none for ``web``).

    ``feed`` and ``run_in_thread`` replace the configured feed and the thread pool (tests).
    """
    if not settings.runs_feed_workers:
        return FeedWorkers()
    feed = feed if feed is not None else build_feed(settings, reactor)
    run_in_thread = run_in_thread or in_thread(reactor)
    writes = breaker.runner(BACKGROUND)  # feed work waits for a closed breaker; it never probes
    odds, settlement = None, None
    if settings.runs_worker("worker_odds"):
        ingest = OddsIngest(feed, writes, reactor, run_in_thread)
        # Backoff starts at one full period: a failing feed is never asked sooner than a healthy one.
        period = settings.odds_poll_interval_s
        odds = OddsPoller(settings.odds_sports, ingest.ingest, clock=reactor, metrics=metrics,
                          period_s=period, backoff_base_s=period, backoff_cap_s=6 * period)
        odds.setName("worker_odds")
    if settings.runs_worker("worker_settlement"):
        policy = SettlementPolicy(postponed_void_after_s=settings.settlement_postponed_void_after_s,
                                  missing_result_review_after_s=settings.settlement_review_after_s)
        cycle = SettlementService(feed, writes, reactor, run_in_thread, policy=policy, metrics=metrics)
        settlement = LoopingWorker("worker_settlement", cycle.run_cycle, clock=reactor,
                                   interval_s=settings.settlement_interval_s, metrics=metrics, expected=DB_REFUSALS)
    return FeedWorkers(odds=odds, settlement=settlement)
