"""The odds list behind ``GET /<tenant>/api/public/odds/<sport>``: upcoming matches with their prices.

Odds are the same for every tenant, so one short-lived in-process entry per sport serves them all
(``ODDS_CACHE_TTL``, default 5 s). Concurrent misses share one database read (``SingleFlight``). This is a
``read`` route: while the database is refused (breaker open, pool exhausted) the last answer is served
with ``stale=True``; with nothing cached the refusal propagates as a 503.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenantsvc.adapters.db import odds_store
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.core.clock import iso_utc, utc_datetime
from tenantsvc.core.http_cache import strong_etag
from tenantsvc.core.odds import MARKETS, SELECTIONS, SPORTS, FeedMatch, odds_text
from tenantsvc.services.errors import NotFoundError, ServiceUnavailable
from tenantsvc.runtime.singleflight import SingleFlight

MATCHES_PER_ANSWER = 300


@dataclass(frozen=True)
class OddsAnswer:
    """A rendered odds list: JSON bytes, a strong ETag, and whether it is a stale copy."""

    body: bytes
    etag: str
    stale: bool = False


@dataclass(frozen=True)
class _Entry:
    answer: OddsAnswer
    expires_at: float


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def match_json(match: FeedMatch) -> dict[str, Any]:
    """One match as the API shows it: markets in a fixed order, selections in their natural order."""
    markets = []
    for market in MARKETS:
        prices = [p for p in match.prices if p.market == market]
        for line in sorted({p.line for p in prices}, key=lambda value: (value is not None, value or "")):
            by_selection = {p.selection: p for p in prices if p.line == line}
            selections = [{"selection": s, "odds": odds_text(by_selection[s].odds),
                           "suspended": by_selection[s].suspended}
                          for s in SELECTIONS[market] if s in by_selection]
            markets.append({"market": market, "line": line, "selections": selections})
    return {"id": match.id, "league": match.league, "home": match.home, "away": match.away,
            "kickoff": _iso(match.kickoff), "markets": markets}


class OddsBoard:
    """Upcoming odds per sport, cached for ``ttl_s`` seconds and shared by every tenant."""

    def __init__(self, reads: InteractionRunner, clock: Any, *, ttl_s: float):
        self._reads = reads
        self._clock = clock
        self._ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._loads: SingleFlight[OddsAnswer] = SingleFlight()

    @property
    def ttl_s(self) -> float:
        """How long an answer is reused (also its ``Cache-Control: max-age``)."""
        return self._ttl_s

    async def upcoming(self, sport: str) -> OddsAnswer:
        """The odds list of ``sport``; ``NotFoundError`` for a sport the feed does not have."""
        if sport not in SPORTS:
            raise NotFoundError(f"no sport {sport!r}; known sports: {', '.join(SPORTS)}")
        entry = self._entries.get(sport)
        if entry is not None and self._clock.seconds() < entry.expires_at:
            return entry.answer
        try:
            return await self._loads.run(sport, lambda: self._load(sport))
        except ServiceUnavailable:
            if entry is None:
                raise
            return OddsAnswer(entry.answer.body, entry.answer.etag, stale=True)

    async def _load(self, sport: str) -> OddsAnswer:
        odds = await self._reads.run_interaction(
            "upcoming_odds", odds_store.upcoming_odds_txn, sport, utc_datetime(self._clock.seconds()), MATCHES_PER_ANSWER)
        payload = {"sport": sport, "updated_at": _iso(odds.updated_at),
                   "matches": [match_json(match) for match in odds.matches]}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        answer = OddsAnswer(body, strong_etag(body))
        self._entries[sport] = _Entry(answer, self._clock.seconds() + self._ttl_s)
        return answer
