"""The sportsbook's shared vocabulary: sports, markets, prices, matches and results, as plain values.

Parsers (``core.goalserve_odds``, ``core.goalserve_results``) produce these; the odds store saves them;
the odds API and bet placement read them back; the settlement rules (``core.settlement``) judge bets
against ``MatchResult``. Nothing here does I/O.

Conventions that every layer relies on:
- ``market`` is one of ``MARKETS``; ``selection`` one of ``SELECTIONS[market]``;
- ``line`` is ``None`` for markets without a line and a canonical decimal string (``"2.5"``, ``"-1"``)
  for line markets — ``canonical_line`` makes one from feed text;
- odds are ``Decimal`` greater than 1; money is integer cents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

# Goalserve sport keys and their odds-feed category, in the order the original polled them (notes §4.1).
SPORT_CATEGORIES: dict[str, str] = {
    "soccer": "soccer_10", "basketball": "basket_10", "tennis": "tennis_10", "hockey": "hockey_10",
    "handball": "handball_10", "volleyball": "volleyball_10", "football": "football_10",
    "baseball": "baseball_10", "cricket": "cricket_10", "rugby": "rugby_10",
    "rugbyleague": "rugbyleague_10", "boxing": "boxing_10", "esports": "esports_10", "futsal": "futsal_10",
    "mma": "mma_10", "table_tennis": "table_tennis_10", "golf": "golf_10", "darts": "darts_10",
}
SPORTS: tuple[str, ...] = tuple(SPORT_CATEGORIES)

MATCH_WINNER = "1x2"
DOUBLE_CHANCE = "double_chance"
BOTH_TEAMS_TO_SCORE = "btts"
OVER_UNDER = "over_under"
HOME_AWAY = "home_away"
MARKETS: tuple[str, ...] = (MATCH_WINNER, DOUBLE_CHANCE, BOTH_TEAMS_TO_SCORE, OVER_UNDER, HOME_AWAY)
LINE_MARKETS: frozenset[str] = frozenset({OVER_UNDER})
SELECTIONS: dict[str, tuple[str, ...]] = {
    MATCH_WINNER: ("home", "draw", "away"),
    DOUBLE_CHANCE: ("home_draw", "home_away", "draw_away"),
    BOTH_TEAMS_TO_SCORE: ("yes", "no"),
    OVER_UNDER: ("over", "under"),
    HOME_AWAY: ("home", "away"),
}

# How a result reads for settlement (``MatchResult.state``).
FINISHED = "finished"          # final; ``home_score``/``away_score`` hold the regulation-time score
NOT_FINISHED = "not_finished"  # not started or in play: check again next cycle
POSTPONED = "postponed"
CANCELLED = "cancelled"        # cancelled or abandoned: void
UNKNOWN = "unknown"            # a status nobody taught us: review, never guess
RESULT_STATES: tuple[str, ...] = (FINISHED, NOT_FINISHED, POSTPONED, CANCELLED, UNKNOWN)


def canonical_line(text: object) -> str | None:
    """A line as a canonical decimal string (``"2.50"`` → ``"2.5"``, ``"+1"`` → ``"1"``), or None if not a number."""
    if text is None or isinstance(text, bool):
        return None
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    normalized = value.normalize()
    if normalized == 0:
        return "0"
    return format(normalized, "f")


def payout_cents(stake_cents: int, odds: Decimal) -> int:
    """Gross payout of a winning bet: stake × odds, rounded down to the cent (never in the player's favour)."""
    return int((Decimal(stake_cents) * odds).to_integral_value(rounding=ROUND_FLOOR))


def odds_text(odds: Decimal) -> str:
    """Odds as the API writes them: the exact decimal with at least two places (``2.5`` → ``"2.50"``)."""
    whole, _, decimals = format(odds.normalize(), "f").partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


@dataclass(frozen=True)
class Price:
    """One selectable price of a match: market, line (or None), selection, decimal odds, suspended flag."""

    market: str
    line: str | None
    selection: str
    odds: Decimal
    suspended: bool = False


@dataclass(frozen=True)
class FeedMatch:
    """A match from the odds feed with the prices we offer on it; ``kickoff`` is timezone-aware UTC."""

    id: str
    league: str
    home: str
    away: str
    kickoff: datetime
    status: str
    prices: tuple[Price, ...]


@dataclass(frozen=True)
class OddsSnapshot:
    """One sport's parsed odds document: ``feed_ts`` is the feed's own unix timestamp."""

    sport: str
    feed_ts: int
    matches: tuple[FeedMatch, ...]


@dataclass(frozen=True)
class MatchResult:
    """A match's state in the results feed.

    ``home_score``/``away_score`` are the regulation-time score (90 minutes in football, even when the
    match went to extra time or penalties), set only when ``state`` is ``FINISHED``.
    ``status`` keeps the feed's raw status text for logs and review.
    """

    match_id: str
    status: str
    state: str
    home_score: int | None = None
    away_score: int | None = None


@dataclass(frozen=True)
class BetRequest:
    """A validated single bet as the player asked for it; the server re-prices it before accepting."""

    match_id: str
    market: str
    line: str | None
    selection: str
    stake_cents: int
    odds: Decimal


# Where each sport's results live in the feed when it differs from the sport key (notes §4.2: the
# original ignored this mapping, so basketball and tennis never settled automatically).
RESULTS_FEED_PATHS: dict[str, str] = {"soccer": "soccernew", "basketball": "bsktbl", "tennis": "tennis_scores"}


def results_feed_path(sport: str) -> str:
    """The results feed path prefix for ``sport`` (``<prefix>/home``, ``<prefix>/d-1`` …)."""
    return RESULTS_FEED_PATHS.get(sport, sport)
