"""Settlement cycles: results for matches with pending bets, the pure rules, and exactly-once settling.

A cycle asks the database which started matches still have pending bets, fetches each needed results page
once (``<path>/home`` and ``d-1`` … ``d-7`` by kick-off day, per sport), parses them off the reactor
thread and judges every pending bet with ``core.settlement.decide``. A bet is settled in its own
transaction (``bet_store.settle_bet_txn``), which claims it and writes its ledger row under
``UNIQUE (bet_id, kind)``: two settlers running at once — two worker processes, or a worker and an
operator — can never pay twice. Bets the rules cannot judge are marked for review and never settled as
lost. A results page that fails leaves its matches pending for the next cycle; it never counts as "no
result". Operators settle reviewed bets through ``BettingService.settle_by_operator`` (the same
exactly-once path, scoped to one tenant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Protocol

from eliot import MessageType, fields, start_action
from twisted.internet.defer import Deferred

from tenantsvc.adapters.db import bet_store
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.actions import add_fields, traced
from tenantsvc.runtime.deferreds import shield
from tenantsvc.core.clock import utc_datetime
from tenantsvc.core.feed_errors import FeedError
from tenantsvc.core.goalserve_results import parse_results_document
from tenantsvc.core.odds import MatchResult, results_feed_path
from tenantsvc.core.settlement import (LOST, PENDING, REVIEW, REVIEW_KINDS, VOID, WON, SettlementPolicy,
                                       decide)
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.odds_ingest import RunInThread

OLDEST_RESULTS_PAGE_DAYS = 7  # the feed keeps d-1 … d-7
MAX_REASON_LENGTH = 200  # bets.settle_reason / review_reason
SETTLED_OUTCOMES_IN_ORDER = (WON, LOST, VOID)  # bets_settled_total{outcome}

PAGE_FAILED = MessageType("tenantsvc:settlement:page_failed", fields(sport=str, page=str, kind=str),
                          "A results page could not be fetched or parsed; its matches wait for the next cycle.")
BET_SETTLED = MessageType("tenantsvc:settlement:settled",
                          fields(bet_id=int, outcome=str, credited_cents=int, reason=str),
                          "A bet was settled and its wallet credited in one transaction.")
BET_FOR_REVIEW = MessageType("tenantsvc:settlement:review", fields(bet_id=int, kind=str, reason=str),
                             "A bet the rules cannot judge was marked for review (never settled as lost).")


def record_settlement(metrics: Metrics, bet_id: int, outcome: str, credited_cents: int, reason: str) -> None:
    """Count and log one settled bet (automatic or by an operator)."""
    metrics.bets_settled.labels(outcome).inc()
    BET_SETTLED.log(bet_id=bet_id, outcome=outcome, credited_cents=credited_cents, reason=reason)


class ResultsFeed(Protocol):
    """The part of the feed settlement needs (``GoalserveClient``, ``DemoFeed``)."""

    def fetch_results(self, sport: str, page: str) -> Awaitable[bytes]:
        """The raw results document of ``sport``'s ``page`` (``home`` or ``d-N``)."""


@dataclass
class CycleReport:
    """What one settlement cycle did (for logs and tests)."""

    matches: int = 0
    pages_fetched: int = 0
    pages_failed: int = 0
    settled: dict[str, int] = field(default_factory=lambda: {WON: 0, LOST: 0, VOID: 0})
    reviewed: int = 0
    pending: int = 0
    lost_races: int = 0


def results_page_for(kickoff: datetime, now: datetime) -> str | None:
    """The results page holding a match that kicked off at ``kickoff``: ``home`` today, ``d-N`` N days ago, else None."""
    days = (now.date() - kickoff.date()).days
    if days <= 0:
        return "home"
    if days <= OLDEST_RESULTS_PAGE_DAYS:
        return f"d-{days}"
    return None


class SettlementService:
    """Runs settlement cycles (worker) and manual settlements (admin)."""

    def __init__(self, feed: ResultsFeed, db: InteractionRunner, clock: Any, run_in_thread: RunInThread, *,
                 policy: SettlementPolicy, metrics: Metrics):
        self._feed = feed
        self._db = db
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._policy = policy
        self._metrics = metrics
        zero(metrics.settlement_results_pages, [("ok",), ("error",)])
        zero(metrics.bets_review, [(kind,) for kind in REVIEW_KINDS])
        zero(metrics.bets_settled, [(outcome,) for outcome in SETTLED_OUTCOMES_IN_ORDER])

    def run_cycle(self) -> "Deferred[CycleReport]":
        """Judge every pending bet of every started match once (one ``tenantsvc:settlement:cycle`` action);
        settle, mark for review or leave pending."""
        return traced(start_action(action_type="tenantsvc:settlement:cycle"), self._cycle)

    async def _cycle(self) -> CycleReport:
        report = CycleReport()
        now = utc_datetime(self._clock.seconds())
        matches = await self._db.run_interaction(
            "matches_with_pending_bets", bet_store.matches_with_pending_bets_txn, now)
        report.matches = len(matches)
        results, unavailable = await self._results_for(matches, now, report)
        for match in matches:
            if match.match_id in unavailable:
                continue
            await self._judge_match(match.match_id, results.get(match.match_id), now, report)
        add_fields(matches=report.matches, pages=report.pages_fetched, pages_failed=report.pages_failed,
                   settled=sum(report.settled.values()), reviewed=report.reviewed, pending=report.pending)
        return report

    async def _results_for(self, matches: list[Any], now: datetime,
                           report: CycleReport) -> tuple[dict[str, MatchResult], set[str]]:
        """Results by match id from each needed page fetched once, and the ids whose page failed."""
        wanted: dict[tuple[str, str], list[str]] = {}
        for match in matches:
            page = results_page_for(match.kickoff_at, now)
            if page is not None:
                wanted.setdefault((match.sport, page), []).append(match.match_id)
        results: dict[str, MatchResult] = {}
        unavailable: set[str] = set()
        for (sport, page), match_ids in sorted(wanted.items()):
            try:
                body = await self._feed.fetch_results(sport, page)
                parsed = await self._run_in_thread(parse_results_document, body)
            except FeedError as error:
                report.pages_failed += 1
                self._metrics.settlement_results_pages.labels("error").inc()
                PAGE_FAILED.log(sport=sport, page=f"{results_feed_path(sport)}/{page}", kind=error.kind)
                unavailable.update(match_ids)
                continue
            report.pages_fetched += 1
            self._metrics.settlement_results_pages.labels("ok").inc()
            for result in parsed:
                results[result.match_id] = result
        return results, unavailable

    async def _judge_match(self, match_id: str, result: MatchResult | None, now: datetime,
                           report: CycleReport) -> None:
        bets = await self._db.run_interaction("pending_bets", bet_store.pending_bets_txn, match_id)
        for bet in bets:
            decision = decide(bet.market, bet.line, bet.selection, result, kickoff=bet.kickoff_at, now=now,
                              policy=self._policy)
            if decision.outcome == PENDING:
                report.pending += 1
            elif decision.outcome == REVIEW:
                marked = await shield(self._db.run_interaction(
                    "mark_review", bet_store.mark_review_txn, bet.bet_id, decision.reason[:MAX_REASON_LENGTH]))
                if marked:
                    report.reviewed += 1
                    self._metrics.bets_review.labels(decision.review_kind).inc()
                    BET_FOR_REVIEW.log(bet_id=bet.bet_id, kind=decision.review_kind, reason=decision.reason)
            else:
                settlement = await shield(self._db.run_interaction(
                    "settle_bet", bet_store.settle_bet_txn, bet.bet_id, decision.outcome,
                    decision.reason[:MAX_REASON_LENGTH]))
                if settlement.settled:
                    report.settled[decision.outcome] += 1
                    record_settlement(self._metrics, bet.bet_id, decision.outcome, settlement.credited_cents,
                                      decision.reason)
                else:
                    report.lost_races += 1  # another settler got there first: nothing was paid here
