"""Odds transactions: save a sport's parsed snapshot, read upcoming odds back, and report feed ages.

Each public function is a synchronous ``*_txn(txn, …)`` run by ``run_interaction``: no network, no sleep.

Values as stored (the helpers below are the only place that converts them, and ``bet_store`` uses them too):

- Timestamps: callers pass timezone-aware datetimes. Postgres stores ``TIMESTAMPTZ`` (the datetime is passed
  as UTC). SQLite stores UTC text ``'YYYY-MM-DD HH:MM:SS[.ffffff]'``, the form ``CURRENT_TIMESTAMP`` writes, so
  text order is time order and columns defaulting to ``CURRENT_TIMESTAMP`` compare correctly with ours.
  Reading gives back an aware UTC datetime on both dialects (``from_db_timestamp``).
- Decimals: prices are kept to 4 decimal places on both dialects (Postgres ``NUMERIC(12,4)``; SQLite text of
  the same quantized value), so a price read back is the same number everywhere; read back as ``Decimal``
  without trailing zeros (``Decimal("1.7600")`` → ``Decimal("1.76")``).
- A line is ``''`` in the database for markets without a line and ``None`` everywhere else.

Saving a snapshot first records the fetch in ``feed_status`` (which also serialises saves of one sport on
Postgres, and makes a snapshot older than the stored one write nothing), then reads the sport's stored
upcoming matches and prices, and writes only what differs: new or changed matches and prices, and the
stored prices of not-yet-started matches that the snapshot no longer offers, now suspended. A written row
gets ``updated_at = fetched_at``, so ``odds.updated_at`` is when a price (or its suspension) last changed;
when the feed last confirmed the prices on offer is the sport's ``feed_status.fetched_at``, which is what
``bet_store`` checks for freshness. A steady-state poll therefore rewrites (and row-locks) only the few
prices that moved. Rows are written in key order with multi-row statements, so a 2,000-match first save
takes a few dozen statements rather than tens of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, NamedTuple, Sequence

from tenantsvc.adapters.db.pool import Txn
from tenantsvc.core.odds import MARKETS, SELECTIONS, FeedMatch, OddsSnapshot, Price

PRICE_QUANTUM = Decimal("0.0001")  # NUMERIC(12,4)
# Bound parameters per multi-row statement: SQLite's classic limit is 999; Postgres allows 65,535.
_MAX_PARAMS = {"sqlite": 999, "postgres": 30_000}

_MATCH_COLUMNS = ("id", "sport", "league", "home", "away", "kickoff_at", "status", "updated_at")
_ODDS_COLUMNS = ("match_id", "market", "line", "selection", "price", "suspended", "updated_at")
_ODDS_KEY = ("match_id", "market", "line", "selection")


# ---- values as stored --------------------------------------------------------------------------


def to_db_timestamp(txn: Txn, value: datetime) -> datetime | str:
    """A timezone-aware datetime as the dialect stores it (UTC datetime for Postgres, UTC text for SQLite)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware: {value!r}")
    utc = value.astimezone(timezone.utc)
    if txn.dialect == "postgres":
        return utc
    return utc.replace(tzinfo=None).isoformat(sep=" ")


def from_db_timestamp(value: datetime | str) -> datetime:
    """A stored timestamp (aware datetime from Postgres, UTC text from SQLite) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def quantize_price(value: Decimal) -> Decimal:
    """Odds rounded to the 4 decimal places they are stored with."""
    return value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def to_db_decimal(txn: Txn, value: Decimal) -> Decimal | str:
    """Odds quantized to the stored 4 decimal places: ``Decimal`` for Postgres, its text for SQLite."""
    quantized = quantize_price(value)
    return quantized if txn.dialect == "postgres" else str(quantized)


def from_db_decimal(value: Decimal | str) -> Decimal:
    """A stored decimal (``Decimal`` from Postgres, text from SQLite) without trailing zeros or exponent."""
    number = Decimal(value)
    if number == number.to_integral_value():
        return number.quantize(Decimal(1))
    return number.normalize()


def to_db_line(line: str | None) -> str:
    """A price's line as stored: ``''`` for markets without one."""
    return "" if line is None else line


def from_db_line(line: str) -> str | None:
    """A stored line back as the core's value: ``None`` for ``''``."""
    return line or None


# ---- saving a snapshot -------------------------------------------------------------------------

PriceKey = tuple[str, str, str, str]  # (match_id, market, line as stored, selection)
PriceValues = tuple[Decimal, bool]  # (price to 4 places, suspended)


@dataclass(frozen=True)
class SaveSummary:
    """What one save wrote: matches and prices inserted or changed, and prices newly suspended because they
    vanished. A re-save that changed nothing is all zeros, and so is a snapshot older than the one stored.
    """

    matches: int
    prices: int
    suspended: int


@dataclass(frozen=True)
class SportOdds:
    """A sport's upcoming matches with their prices; ``updated_at`` is when the feed was last saved (or None)."""

    sport: str
    updated_at: datetime | None
    matches: tuple[FeedMatch, ...]


class MatchValues(NamedTuple):
    """A match's stored columns other than its id, compared to tell whether a save must write it."""

    sport: str
    league: str
    home: str
    away: str
    kickoff: datetime
    status: str


@dataclass(frozen=True)
class _Book:
    """Matches and prices in comparable values: what a snapshot offers, or what is stored."""

    matches: dict[str, MatchValues]
    prices: dict[PriceKey, PriceValues]


def _chunks(rows: Sequence[tuple[Any, ...]], txn: Txn, width: int) -> Iterable[Sequence[tuple[Any, ...]]]:
    size = max(1, _MAX_PARAMS[txn.dialect] // width)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _upsert(txn: Txn, table: str, columns: Sequence[str], key: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert or update ``rows`` in multi-row statements; a row written by a newer save is left alone."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for chunk in _chunks(rows, txn, len(columns)):
        txn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([placeholders] * len(chunk))}"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
            f" WHERE {table}.updated_at <= excluded.updated_at",
            [value for row in chunk for value in row],
        )


def _claim_feed_status(txn: Txn, snapshot: OddsSnapshot, stamp: Any) -> bool:
    """Record this fetch in ``feed_status`` unless a newer one is stored; whether this save may go on.

    Run first: on Postgres the upsert keeps the sport's row locked until commit (even when it does not
    update it), so saves of one sport run one after another and each diffs against the last one's rows.
    """
    claimed = txn.one(
        "INSERT INTO feed_status (sport, fetched_at, feed_ts) VALUES (%s, %s, %s)"
        " ON CONFLICT (sport) DO UPDATE SET fetched_at = excluded.fetched_at, feed_ts = excluded.feed_ts"
        " WHERE feed_status.fetched_at <= excluded.fetched_at RETURNING sport",
        (snapshot.sport, stamp, int(snapshot.feed_ts)),
    )
    return claimed is not None


def _offered(snapshot: OddsSnapshot) -> _Book:
    """The snapshot's matches and prices; of duplicates the last wins (one statement may not touch a row twice)."""
    return _Book(
        matches={m.id: MatchValues(snapshot.sport, m.league, m.home, m.away, m.kickoff, m.status)
                 for m in snapshot.matches},
        prices={
            (match.id, price.market, to_db_line(price.line), price.selection):
                (quantize_price(price.odds), bool(price.suspended))
            for match in snapshot.matches
            for price in match.prices
        },
    )


def _stored(txn: Txn, sport: str, since: datetime) -> _Book:
    """The sport's stored matches kicking off at or after ``since``, with their prices (two SELECTs)."""
    params = (sport, to_db_timestamp(txn, since))
    matches = txn.all(
        "SELECT id, sport, league, home, away, kickoff_at, status FROM matches WHERE sport = %s AND kickoff_at >= %s",
        params,
    )
    prices = txn.all(
        "SELECT o.match_id, o.market, o.line, o.selection, o.price, o.suspended FROM odds o"
        " JOIN matches m ON m.id = o.match_id WHERE m.sport = %s AND m.kickoff_at >= %s",
        params,
    )
    return _Book(
        matches={r["id"]: MatchValues(r["sport"], r["league"], r["home"], r["away"],
                                      from_db_timestamp(r["kickoff_at"]), r["status"]) for r in matches},
        prices={(r["match_id"], r["market"], r["line"], r["selection"]): (Decimal(r["price"]), bool(r["suspended"]))
                for r in prices},
    )


def _changes(offered: dict[Any, Any], stored: dict[Any, Any]) -> dict[Any, Any]:
    """The offered entries that are new or differ from the stored ones."""
    return {key: value for key, value in offered.items() if stored.get(key) != value}


def _vanished(offered: _Book, stored: _Book, fetched_at: datetime) -> dict[PriceKey, PriceValues]:
    """Stored prices on offer, of matches not kicked off at ``fetched_at``, that the snapshot no longer
    offers, as they are to be written: suspended. A match's kickoff is the snapshot's when it has one.
    """
    def upcoming(match_id: str) -> bool:
        match = offered.matches.get(match_id) or stored.matches.get(match_id)
        return match is not None and match.kickoff > fetched_at

    gone = stored.prices.keys() - offered.prices.keys()
    return {key: (stored.prices[key][0], True) for key in gone if not stored.prices[key][1] and upcoming(key[0])}


def _match_rows(txn: Txn, matches: dict[str, MatchValues], stamp: Any) -> list[tuple[Any, ...]]:
    return [(match_id, sport, league, home, away, to_db_timestamp(txn, kickoff), status, stamp)
            for match_id, (sport, league, home, away, kickoff, status) in sorted(matches.items())]


def _price_rows(txn: Txn, prices: dict[PriceKey, PriceValues], stamp: Any) -> list[tuple[Any, ...]]:
    return [(*key, to_db_decimal(txn, price), suspended, stamp) for key, (price, suspended) in sorted(prices.items())]


def save_odds_txn(txn: Txn, snapshot: OddsSnapshot, fetched_at: datetime) -> SaveSummary:
    """Save one sport's snapshot fetched at ``fetched_at`` (aware): record the fetch in ``feed_status``,
    then write only the matches and prices that are new or changed, and suspend the stored prices of
    not-yet-started matches that it no longer offers. Written rows get ``updated_at = fetched_at``, so a
    row's ``updated_at`` is when it last changed; when the feed last confirmed it is ``feed_status``.

    Prices are stored to 4 decimal places; a line of ``None`` is stored as ``''``. Saving the same
    snapshot again writes no match or price row. A snapshot older than the sport's stored ``feed_status``
    writes nothing at all.
    """
    stamp = to_db_timestamp(txn, fetched_at)
    if not _claim_feed_status(txn, snapshot, stamp):
        return SaveSummary(matches=0, prices=0, suspended=0)
    offered = _offered(snapshot)
    stored = _stored(txn, snapshot.sport, min([fetched_at, *(match.kickoff for match in offered.matches.values())]))
    matches = _changes(offered.matches, stored.matches)
    prices = _changes(offered.prices, stored.prices)
    vanished = _vanished(offered, stored, fetched_at)
    _upsert(txn, "matches", _MATCH_COLUMNS, ("id",), _match_rows(txn, matches, stamp))
    _upsert(txn, "odds", _ODDS_COLUMNS, _ODDS_KEY, _price_rows(txn, {**prices, **vanished}, stamp))
    return SaveSummary(matches=len(matches), prices=len(prices), suspended=len(vanished))


# ---- reading odds back -------------------------------------------------------------------------


def _price_order(price: Price) -> tuple[Any, ...]:
    """Markets in ``MARKETS`` order, lines numerically, selections in ``SELECTIONS`` order."""
    market_rank = MARKETS.index(price.market) if price.market in MARKETS else len(MARKETS)
    selections = SELECTIONS.get(price.market, ())
    selection_rank = selections.index(price.selection) if price.selection in selections else len(selections)
    return (market_rank, price.market, Decimal(price.line or 0), selection_rank, price.selection)


def _price_from_row(row: dict[str, Any]) -> Price:
    return Price(
        market=row["market"],
        line=from_db_line(row["line"]),
        selection=row["selection"],
        odds=from_db_decimal(row["price"]),
        suspended=bool(row["suspended"]),
    )


def _feed_match(rows: list[dict[str, Any]]) -> FeedMatch:
    first = rows[0]
    prices = [_price_from_row(row) for row in rows if row["market"] is not None]
    return FeedMatch(
        id=first["id"],
        league=first["league"],
        home=first["home"],
        away=first["away"],
        kickoff=from_db_timestamp(first["kickoff_at"]),
        status=first["status"],
        prices=tuple(sorted(prices, key=_price_order)),
    )


def upcoming_odds_txn(txn: Txn, sport: str, now: datetime, limit: int = 300) -> SportOdds:
    """Up to ``limit`` matches of ``sport`` kicking off after ``now`` (by kickoff, then id), each with all
    its prices, suspended ones included and flagged; ``updated_at`` is the sport's last save.
    """
    rows = txn.all(
        "SELECT m.id, m.league, m.home, m.away, m.kickoff_at, m.status,"
        " o.market, o.line, o.selection, o.price, o.suspended"
        " FROM (SELECT id, league, home, away, kickoff_at, status FROM matches"
        "       WHERE sport = %s AND kickoff_at > %s ORDER BY kickoff_at, id LIMIT %s) m"
        " LEFT JOIN odds o ON o.match_id = m.id ORDER BY m.kickoff_at, m.id",
        (sport, to_db_timestamp(txn, now), limit),
    )
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["id"], []).append(row)
    status = txn.one("SELECT fetched_at FROM feed_status WHERE sport = %s", (sport,))
    updated_at = None if status is None else from_db_timestamp(status["fetched_at"])
    return SportOdds(sport, updated_at, tuple(_feed_match(match_rows) for match_rows in grouped.values()))


def feed_ages_txn(txn: Txn) -> dict[str, datetime]:
    """When each sport's odds were last saved: sport → ``fetched_at`` (aware UTC)."""
    rows = txn.all("SELECT sport, fetched_at FROM feed_status ORDER BY sport")
    return {row["sport"]: from_db_timestamp(row["fetched_at"]) for row in rows}
