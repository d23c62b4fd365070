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

Saving a snapshot writes every offered price with ``updated_at = fetched_at``; a stored price of a match of
that sport that has not kicked off yet and was not written by this save (``updated_at < fetched_at``) is
no longer offered and is marked suspended. An older snapshot never overwrites rows written by a newer one.
Rows are written in key order with multi-row statements, so two saves of one sport cannot deadlock and a
2,000-match sport takes a few dozen statements rather than tens of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Sequence

from tenantsvc.adapters.db.pool import Txn
from tenantsvc.core.odds import MARKETS, SELECTIONS, FeedMatch, OddsSnapshot, Price

PRICE_QUANTUM = Decimal("0.0001")  # NUMERIC(12,4)
# Bound parameters per multi-row statement: SQLite's classic limit is 999; Postgres allows 65,535.
_MAX_PARAMS = {"sqlite": 999, "postgres": 30_000}

_MATCH_COLUMNS = ("id", "sport", "league", "home", "away", "kickoff_at", "status", "updated_at")
_ODDS_COLUMNS = ("match_id", "market", "line", "selection", "price", "suspended", "updated_at")


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


def to_db_decimal(txn: Txn, value: Decimal) -> Decimal | str:
    """Odds quantized to the stored 4 decimal places: ``Decimal`` for Postgres, its text for SQLite."""
    quantized = value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)
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


@dataclass(frozen=True)
class SaveSummary:
    """What one save wrote: matches and prices upserted, and prices newly suspended because they vanished."""

    matches: int
    prices: int
    suspended: int


@dataclass(frozen=True)
class SportOdds:
    """A sport's upcoming matches with their prices; ``updated_at`` is when the feed was last saved (or None)."""

    sport: str
    updated_at: datetime | None
    matches: tuple[FeedMatch, ...]


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


def _match_rows(txn: Txn, snapshot: OddsSnapshot, fetched_at: Any) -> list[tuple[Any, ...]]:
    by_id = {match.id: match for match in snapshot.matches}  # last wins: one statement may not touch a row twice
    return [
        (m.id, snapshot.sport, m.league, m.home, m.away, to_db_timestamp(txn, m.kickoff), m.status, fetched_at)
        for _, m in sorted(by_id.items())
    ]


def _price_rows(txn: Txn, snapshot: OddsSnapshot, fetched_at: Any) -> list[tuple[Any, ...]]:
    by_key = {
        (match.id, price.market, to_db_line(price.line), price.selection): price
        for match in snapshot.matches
        for price in match.prices
    }
    return [
        (*key, to_db_decimal(txn, price.odds), bool(price.suspended), fetched_at)
        for key, price in sorted(by_key.items())
    ]


def _suspend_vanished(txn: Txn, sport: str, fetched_at: Any) -> int:
    """Suspend this sport's not-yet-started prices that this save did not write; return how many."""
    txn.execute(
        "UPDATE odds SET suspended = TRUE WHERE suspended = FALSE AND updated_at < %s"
        " AND match_id IN (SELECT id FROM matches WHERE sport = %s AND kickoff_at > %s)",
        (fetched_at, sport, fetched_at),
    )
    return max(txn.rowcount, 0)


def save_odds_txn(txn: Txn, snapshot: OddsSnapshot, fetched_at: datetime) -> SaveSummary:
    """Save one sport's snapshot fetched at ``fetched_at`` (aware): upsert its matches and prices, suspend
    the not-yet-started prices it no longer offers, and record the fetch in ``feed_status``.

    Prices are stored to 4 decimal places; a line of ``None`` is stored as ``''``. Saving the same
    snapshot again changes nothing; a snapshot older than what is stored never overwrites newer rows.
    """
    stamp = to_db_timestamp(txn, fetched_at)
    matches = _match_rows(txn, snapshot, stamp)
    prices = _price_rows(txn, snapshot, stamp)
    _upsert(txn, "matches", _MATCH_COLUMNS, ("id",), matches)
    _upsert(txn, "odds", _ODDS_COLUMNS, ("match_id", "market", "line", "selection"), prices)
    suspended = _suspend_vanished(txn, snapshot.sport, stamp)
    txn.execute(
        "INSERT INTO feed_status (sport, fetched_at, feed_ts) VALUES (%s, %s, %s)"
        " ON CONFLICT (sport) DO UPDATE SET fetched_at = excluded.fetched_at, feed_ts = excluded.feed_ts"
        " WHERE feed_status.fetched_at <= excluded.fetched_at",
        (snapshot.sport, stamp, int(snapshot.feed_ts)),
    )
    return SaveSummary(matches=len(matches), prices=len(prices), suspended=suspended)


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
