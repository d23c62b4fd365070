"""Parse a Goalserve prematch odds document (notes §4.1) into an ``OddsSnapshot``.

Pure and synchronous: the caller runs ``parse_odds_document`` in a thread for big payloads. Both the
standard shape (``scores.categories[].matches[].odds[].bookmakers[].odds[]``) and the cricket shape
(``scores.category[].matches.match[].odds.type[].bookmaker[].odd[]``) are read. Wherever the feed may give
one object instead of a list it may do so, and every key may also carry the XML-attribute ``@`` prefix.

What comes out is only what we offer (``core.odds.MARKETS``): prices are ``Decimal`` strictly above 1
(kept exactly as the feed wrote them), unknown markets and unreadable selections are dropped, and a match
whose kickoff, id or teams cannot be read is skipped. A document that says it holds no data is refused
with ``FeedRejected``; one that is not the known shape with ``FeedMalformed``.

The document-shape helpers (``load_feed_document``, ``feed_field``, ``one_or_many`` …) live in
``core.goalserve_shape``, shared with ``core.goalserve_results``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from tenantsvc.core.feed_errors import FeedMalformed, FeedRejected
from tenantsvc.core.goalserve_shape import (
    first_of_each,
    category_objects,
    excerpt,
    feed_field,
    feed_text,
    is_feed_true,
    load_feed_document,
    loose_objects,
    match_objects,
    match_sides,
    unwrap,
)
from tenantsvc.core.odds import (
    BOTH_TEAMS_TO_SCORE,
    DOUBLE_CHANCE,
    HOME_AWAY,
    MARKETS,
    MATCH_WINNER,
    OVER_UNDER,
    SELECTIONS,
    FeedMatch,
    OddsSnapshot,
    Price,
    canonical_line,
)

PREFERRED_BOOKMAKER_ID = "16"  # bet365, what the original requested with bm=16
MAX_ODDS = Decimal("10000")     # typo guard: nothing we offer is priced above this
MAX_ABS_LINE = Decimal("1000")  # typo guard for over/under lines (and keeps canonical_line cheap)

_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_TS = re.compile(r"[0-9]{1,12}")


def parse_odds_document(sport: str, body: bytes) -> OddsSnapshot:
    """Parse one sport's odds document into an ``OddsSnapshot`` (matches in feed order, first of each id).

    Raises ``FeedRejected`` for an error status or message, a ``scores.ts`` that is 0/empty/missing, or
    no categories; ``FeedMalformed`` for a body that is not JSON or whose fixed frame (scores, ts,
    categories, matches) has the wrong types. Matches without any price we offer are kept (``prices=()``).
    """
    scores = _scores_object(load_feed_document(body))
    feed_ts = _feed_ts(scores)
    categories = category_objects(scores)
    if not categories:
        raise FeedRejected("odds document has no categories")
    return OddsSnapshot(sport=sport, feed_ts=feed_ts, matches=first_of_each(_feed_matches(categories), lambda match: match.id))


def _scores_object(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``scores`` object of an odds document."""
    scores = feed_field(document, "scores")
    if scores is None:
        raise FeedRejected("odds document has no scores object")
    if not isinstance(scores, dict):
        raise FeedMalformed(f"scores is a JSON {type(scores).__name__}, not an object")
    return scores


def _feed_ts(scores: Mapping[str, Any]) -> int:
    """``scores.ts`` as an int; ``FeedRejected`` when it says "no data" (0, "", missing)."""
    raw = feed_field(scores, "ts")
    if raw is None or raw == "" or raw == 0 or raw == "0":
        raise FeedRejected(f"scores.ts is {raw!r}: the feed has no data")
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    if not _TS.fullmatch(text):
        raise FeedMalformed(f"scores.ts is not a unix timestamp: {excerpt(raw, 40)!r}")
    feed_ts = int(text)
    if feed_ts == 0:
        raise FeedRejected("scores.ts is 0: the feed has no data")
    return feed_ts


def _feed_matches(categories: Iterable[Mapping[str, Any]]) -> Iterable[FeedMatch]:
    """Every readable match of every category."""
    for category in categories:
        league = feed_text(feed_field(category, "name")) or ""
        for match in match_objects(category):
            feed_match = _feed_match(league, match)
            if feed_match is not None:
                yield feed_match


def _feed_match(league: str, match: Mapping[str, Any]) -> FeedMatch | None:
    """One match, or None when its id, teams or kickoff cannot be read."""
    match_id = feed_text(feed_field(match, "id"))
    teams = _team_names(match)
    kickoff = match_kickoff(match)
    if match_id is None or teams is None or kickoff is None:
        return None
    return FeedMatch(
        id=match_id, league=league, home=teams[0], away=teams[1], kickoff=kickoff,
        status=feed_text(feed_field(match, "status")) or "", prices=_match_prices(match),
    )


def _team_names(match: Mapping[str, Any]) -> tuple[str, str] | None:
    """(home name, away name), or None if either is missing."""
    sides = match_sides(match)
    if sides is None:
        return None
    home, away = (_team_name(side) for side in sides)
    return (home, away) if home and away else None


def _team_name(team: object) -> str | None:
    """A team's name: ``{name: …}`` (or ``@name``), or a bare string."""
    return feed_text(feed_field(team, "name")) if isinstance(team, dict) else feed_text(team)


def match_kickoff(match: Mapping[str, Any]) -> datetime | None:
    """Kickoff in UTC from ``formatted_date`` (else ``date``) "dd.mm.yyyy" plus ``time`` "HH:MM"; None if unreadable."""
    clock = feed_text(feed_field(match, "time"))
    for date_key in ("formatted_date", "date"):
        kickoff = _utc_datetime(feed_text(feed_field(match, date_key)), clock)
        if kickoff is not None:
            return kickoff
    return None


def _utc_datetime(day: str | None, clock: str | None) -> datetime | None:
    """"dd.mm.yyyy" + "HH:MM" as an aware UTC datetime, or None."""
    date_match = _DATE.fullmatch(day or "")
    clock_match = _CLOCK.fullmatch(clock or "")
    if date_match is None or clock_match is None:
        return None
    day_of_month, month, year = (int(part) for part in date_match.groups())
    hour, minute = (int(part) for part in clock_match.groups())
    try:
        return datetime(year, month, day_of_month, hour, minute, tzinfo=timezone.utc)
    except ValueError:
        return None


# --- markets ------------------------------------------------------------------------------------------

# Market ids of the feed we offer; "1" becomes home_away when it has no draw (see _winner_market).
MARKET_BY_ID: dict[str, str] = {
    "1": MATCH_WINNER, "2": HOME_AWAY, "222": DOUBLE_CHANCE, "15": BOTH_TEAMS_TO_SCORE, "5": OVER_UNDER,
}
# Used only when a market has no id: exact full-match names (never period markets such as "1st Half …").
MARKET_BY_NAME: dict[str, str] = {
    "match winner": MATCH_WINNER, "3way result": MATCH_WINNER, "home/away": HOME_AWAY,
    "double chance": DOUBLE_CHANCE, "both teams to score": BOTH_TEAMS_TO_SCORE,
    "over/under": OVER_UNDER, "goals over/under": OVER_UNDER,
}
# Feed selection names (normalised by _name_key) → our selection, per market.
SELECTION_BY_NAME: dict[str, dict[str, str]] = {
    MATCH_WINNER: {"home": "home", "1": "home", "draw": "draw", "x": "draw", "away": "away", "2": "away"},
    HOME_AWAY: {"home": "home", "1": "home", "away": "away", "2": "away"},
    DOUBLE_CHANCE: {
        "home/draw": "home_draw", "1x": "home_draw", "home/away": "home_away", "12": "home_away",
        "draw/away": "draw_away", "x2": "draw_away",
    },
    BOTH_TEAMS_TO_SCORE: {"yes": "yes", "no": "no"},
    OVER_UNDER: {"over": "over", "under": "under"},
}


def _name_key(value: object) -> str:
    """A feed name folded for lookup: lower case, single spaces, no spaces around "/"."""
    text = feed_text(value) or ""
    return " ".join(text.casefold().split()).replace(" / ", "/")


def _match_prices(match: Mapping[str, Any]) -> tuple[Price, ...]:
    """The prices of a match, in ``MARKETS`` order; the first feed market of each kind wins."""
    by_market: dict[str, tuple[Price, ...]] = {}
    for market in _market_objects(feed_field(match, "odds")):
        prices = _market_prices(market)
        if prices:
            by_market.setdefault(prices[0].market, prices)
    return tuple(price for market in MARKETS for price in by_market.get(market, ()))


def _market_objects(odds: object) -> list[dict[str, Any]]:
    """A match's markets: the standard list (or one object), or the cricket ``{ts, type: […]}``."""
    return loose_objects(unwrap(odds, "type"))


def _market_kind(market: Mapping[str, Any]) -> str | None:
    """Which of our markets a feed market is, by id, or by exact name when it has no id."""
    market_id = feed_text(feed_field(market, "id"))
    if market_id is not None:
        return MARKET_BY_ID.get(market_id)
    return MARKET_BY_NAME.get(_name_key(feed_field(market, "value")) or _name_key(feed_field(market, "name")))


def _market_prices(market: Mapping[str, Any]) -> tuple[Price, ...]:
    """The prices of one feed market from its preferred bookmaker; () when not ours or unreadable."""
    kind = _market_kind(market)
    bookmaker = _preferred_bookmaker(market)
    if kind is None or bookmaker is None:
        return ()
    suspended = is_feed_true(feed_field(market, "stop")) or is_feed_true(feed_field(bookmaker, "stop"))
    entries = _odds_entries(bookmaker)
    if kind == OVER_UNDER:
        return _over_under_prices(entries, suspended)
    if kind == MATCH_WINNER:
        kind = _winner_market(entries)
    return _selection_prices(kind, None, entries, suspended)


def _preferred_bookmaker(market: Mapping[str, Any]) -> dict[str, Any] | None:
    """Bookmaker "16" if the market has it, else its first bookmaker, else None."""
    bookmakers = feed_field(market, "bookmakers")
    if bookmakers is None:
        bookmakers = feed_field(market, "bookmaker")
    candidates = loose_objects(bookmakers)
    for bookmaker in candidates:
        if feed_text(feed_field(bookmaker, "id")) == PREFERRED_BOOKMAKER_ID:
            return bookmaker
    return candidates[0] if candidates else None


def _odds_entries(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``odds`` (or cricket ``odd``) entries of a bookmaker or of an over/under line."""
    entries = feed_field(container, "odds")
    if entries is None:
        entries = feed_field(container, "odd")
    return loose_objects(entries)


def _winner_market(entries: Iterable[Mapping[str, Any]]) -> str:
    """Market "1" is ``1x2`` when it names a draw (priced or not), else the two-way ``home_away``."""
    names = SELECTION_BY_NAME[MATCH_WINNER]
    has_draw = any(names.get(_name_key(feed_field(entry, "name"))) == "draw" for entry in entries)
    return MATCH_WINNER if has_draw else HOME_AWAY


def _selection_prices(
    market: str, line: str | None, entries: Iterable[Mapping[str, Any]], suspended: bool,
) -> tuple[Price, ...]:
    """Prices for the entries whose names are selections of ``market``, in ``SELECTIONS`` order (first wins)."""
    names = SELECTION_BY_NAME[market]
    prices: dict[str, Price] = {}
    for entry in entries:
        selection = names.get(_name_key(feed_field(entry, "name")))
        odds = decimal_odds(feed_field(entry, "value"))
        if selection is None or odds is None or selection in prices:
            continue
        stopped = suspended or is_feed_true(feed_field(entry, "stop"))
        prices[selection] = Price(market=market, line=line, selection=selection, odds=odds, suspended=stopped)
    return tuple(prices[selection] for selection in SELECTIONS[market] if selection in prices)


def decimal_odds(value: object) -> Decimal | None:
    """Feed odds text as the exact ``Decimal`` it spells, or None unless finite and in (1, ``MAX_ODDS``]."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        odds = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not odds.is_finite() or not Decimal(1) < odds <= MAX_ODDS:
        return None
    return odds


# --- over/under lines ---------------------------------------------------------------------------------


@dataclass
class _Line:
    """One over/under line of a bookmaker: its canonical value, main flag and feed entries."""

    line: str
    is_main: bool
    suspended: bool
    entries: list[Mapping[str, Any]] = field(default_factory=list)

    @cached_property
    def prices(self) -> tuple[Price, ...]:
        """The valid over/under prices of this line (read once all its entries are filed)."""
        return _selection_prices(OVER_UNDER, self.line, self.entries, self.suspended)


def _over_under_prices(entries: Iterable[Mapping[str, Any]], suspended: bool) -> tuple[Price, ...]:
    """The prices of the main over/under line (see ``_main_line``); () when there is none."""
    main = _main_line(_over_under_lines(entries, suspended))
    return main.prices if main is not None else ()


def _over_under_lines(entries: Iterable[Mapping[str, Any]], suspended: bool) -> list[_Line]:
    """Lines in feed order: nested ``{name: "2.5", ismain, odds: [Over, Under]}`` or flat "Over 2.5" entries."""
    lines: dict[str, _Line] = {}
    for entry in entries:
        nested = _odds_entries(entry)
        if nested:
            line = line_value(feed_field(entry, "name"))
            if line is not None:
                stopped = suspended or is_feed_true(feed_field(entry, "stop"))
                found = lines.setdefault(line, _Line(line, is_feed_true(feed_field(entry, "ismain")), stopped))
                found.entries.extend(nested)
        else:
            _add_flat_line_entry(lines, entry, suspended)
    return list(lines.values())


def _add_flat_line_entry(lines: dict[str, _Line], entry: Mapping[str, Any], suspended: bool) -> None:
    """File a flat entry named like "Over 2.5" under its line as a plain "Over" entry."""
    side, _, rest = _name_key(feed_field(entry, "name")).partition(" ")
    line = line_value(rest)
    if side in SELECTION_BY_NAME[OVER_UNDER] and line is not None:
        found = lines.setdefault(line, _Line(line, False, suspended))
        found.entries.append({**entry, "name": side})


def line_value(text: object) -> str | None:
    """A line as ``canonical_line`` text, or None when not a number within ±``MAX_ABS_LINE``."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        return None
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value) > MAX_ABS_LINE:
        return None
    return canonical_line(value)


def _main_line(lines: list[_Line]) -> _Line | None:
    """The first line marked ``ismain`` that has a price; else the priced line whose over and under are closest."""
    for line in lines:
        if line.is_main and line.prices:
            return line
    balanced = [(gap, index, line) for index, line in enumerate(lines) if (gap := _price_gap(line)) is not None]
    return min(balanced, key=lambda item: (item[0], item[1]))[2] if balanced else None


def _price_gap(line: _Line) -> Decimal | None:
    """|over − under| of a line with both prices, else None."""
    odds = {price.selection: price.odds for price in line.prices}
    if len(odds) != 2:
        return None
    return abs(odds["over"] - odds["under"])
