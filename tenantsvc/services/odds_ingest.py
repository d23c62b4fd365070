"""One odds poll of one sport: fetch the feed, parse it off the reactor thread, save it in one transaction.

The order is the point (notes §6.2 item 17, DESIGN §5 Workers): the network fetch and the parse happen
with no database connection held; only the save opens one (``run_interaction``), and nothing waits or
sleeps inside it. The eliot action ``tenantsvc:odds:ingest`` shows it: ``fetched`` (with its duration),
``parsed``, the nested ``tenantsvc:db:interaction`` (connection opened → transaction committed, with wait
and hold times) and ``saved``. Feed problems surface as ``FeedError`` subclasses for the poller to back
off on.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, TypeVar

from eliot import MessageType, fields, start_action
from twisted.internet.defer import Deferred

from tenantsvc.adapters.db import odds_store
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.actions import traced
from tenantsvc.runtime.deferreds import shield
from tenantsvc.core.clock import utc_datetime
from tenantsvc.core.goalserve_odds import parse_odds_document
from tenantsvc.core.odds import OddsSnapshot

T = TypeVar("T")

FETCHED = MessageType("tenantsvc:odds:fetched", fields(sport=str, bytes=int, fetch_ms=float),
                      "The sport's odds document arrived (no DB connection held).")
PARSED = MessageType("tenantsvc:odds:parsed", fields(sport=str, matches=int, parse_ms=float),
                     "The document was parsed off the reactor thread.")
SAVED = MessageType("tenantsvc:odds:saved", fields(sport=str, matches=int, prices=int, suspended=int, save_ms=float),
                    "The sport was saved in one transaction and its connection returned; the counts are rows "
                    "written (new or changed matches and prices, prices newly suspended): 0 when nothing changed.")

RunInThread = Callable[..., Awaitable[Any]]


class OddsFeed(Protocol):
    """The part of the feed the odds worker needs (``adapters.goalserve.GoalserveClient``, ``DemoFeed``)."""

    def fetch_odds(self, sport: str) -> Awaitable[bytes]:
        """The raw odds document of ``sport``."""


class OddsIngest:
    """Fetch → parse (in a thread) → save, for one sport at a time; called by ``workers.odds_poller``."""

    def __init__(self, feed: OddsFeed, db: InteractionRunner, clock: Any, run_in_thread: RunInThread):
        self._feed = feed
        self._db = db
        self._clock = clock
        self._run_in_thread = run_in_thread

    def ingest(self, sport: str) -> "Deferred[odds_store.SaveSummary]":
        """Poll ``sport`` once as one ``tenantsvc:odds:ingest`` action; fails with ``FeedError`` when the feed
        fails or its document is unusable."""
        return traced(start_action(action_type="tenantsvc:odds:ingest", sport=sport), lambda: self._ingest(sport))

    async def _ingest(self, sport: str) -> odds_store.SaveSummary:
        started = self._clock.seconds()
        body = await self._feed.fetch_odds(sport)
        fetched_at = utc_datetime(self._clock.seconds())
        FETCHED.log(sport=sport, bytes=len(body), fetch_ms=self._ms_since(started))
        parse_started = self._clock.seconds()
        snapshot: OddsSnapshot = await self._run_in_thread(parse_odds_document, sport, body)
        PARSED.log(sport=sport, matches=len(snapshot.matches), parse_ms=self._ms_since(parse_started))
        save_started = self._clock.seconds()
        # Shielded: stopping the worker mid-save must not abandon a transaction half way.
        summary = await shield(self._db.run_interaction("save_odds", odds_store.save_odds_txn, snapshot, fetched_at))
        SAVED.log(sport=sport, matches=summary.matches, prices=summary.prices, suspended=summary.suspended,
                  save_ms=self._ms_since(save_started))
        return summary

    def _ms_since(self, started: float) -> float:
        return round((self._clock.seconds() - started) * 1000.0, 3)
