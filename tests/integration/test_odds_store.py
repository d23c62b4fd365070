"""The odds store on real SQLite and Postgres: snapshot upserts, suspension of vanished prices, reads.

The snapshot builders here (``feed_match``, ``snapshot``, ``run``) are reused by the bet store tests.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tenantsvc.adapters.db import odds_store
from tenantsvc.adapters.db.odds_store import SaveSummary
from tenantsvc.core.odds import FeedMatch, OddsSnapshot, Price

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
D = Decimal

WINNER_PRICES = (
    Price("1x2", None, "home", D("1.76")),
    Price("1x2", None, "draw", D("3.4")),
    Price("1x2", None, "away", D("4.50")),
)
TOTALS_PRICES = (
    Price("over_under", "2.5", "over", D("1.9")),
    Price("over_under", "2.5", "under", D("1.95"), suspended=True),
)


def run(db: Any, fn: Any, *args: Any, **kwargs: Any) -> Deferred:
    """Run ``fn(txn, *args, **kwargs)`` as one interaction named after the function."""
    return db.run_interaction(fn.__name__, fn, *args, **kwargs)


def feed_match(match_id: str, kickoff: datetime, prices: tuple[Price, ...] = WINNER_PRICES + TOTALS_PRICES,
               status: str = "Not Started") -> FeedMatch:
    """A feed match called ``<match_id>-home v <match_id>-away``."""
    return FeedMatch(match_id, "Premier League", f"{match_id}-home", f"{match_id}-away", kickoff, status, prices)


def snapshot(*matches: FeedMatch, sport: str = "soccer", feed_ts: int = 1_893_499_200) -> OddsSnapshot:
    """A snapshot of ``sport`` holding ``matches``."""
    return OddsSnapshot(sport, feed_ts, tuple(matches))


def _odds_rows_txn(txn: Any) -> dict[tuple[str, str, str, str], tuple[Decimal, bool]]:
    rows = txn.all("SELECT match_id, market, line, selection, price, suspended FROM odds")
    return {(r["match_id"], r["market"], r["line"], r["selection"]): (odds_store.from_db_decimal(r["price"]),
                                                                      bool(r["suspended"])) for r in rows}


def _versions_txn(txn: Any, table: str = "odds") -> dict[tuple[str, ...], tuple[datetime, str]]:
    """Each row of ``odds`` (or ``matches``) by key: its ``updated_at``, and on Postgres its ``xmin``/``xmax``
    (changed by any write or row lock), else ``''``.
    """
    key = "match_id, market, line, selection" if table == "odds" else "id"
    version = "xmin::text || '/' || xmax::text" if txn.dialect == "postgres" else "''"
    rows = txn.all(f"SELECT {key}, updated_at, {version} AS version FROM {table}")
    return {tuple(r[c.strip()] for c in key.split(",")): (odds_store.from_db_timestamp(r["updated_at"]), r["version"])
            for r in rows}


def _suspended_keys(rows: dict[tuple[str, str, str, str], tuple[Decimal, bool]]) -> set[tuple[str, str, str, str]]:
    return {key for key, (_, suspended) in rows.items() if suspended}


@pytest_twisted.ensureDeferred
async def test_saved_snapshot_reads_back_as_the_same_matches_and_prices(database):
    first = feed_match("m1", T0 + timedelta(hours=2))
    second = feed_match("m2", T0 + timedelta(hours=1), WINNER_PRICES)
    summary = await run(database, odds_store.save_odds_txn, snapshot(first, second), T0)
    assert summary == SaveSummary(matches=2, prices=8, suspended=0)
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0)
    assert odds.sport == "soccer" and odds.updated_at == T0
    assert odds.matches == (second, first)  # kickoff order; prices in market/selection order, lines as None
    assert odds.matches[1].prices[4] == Price("over_under", "2.5", "under", D("1.95"), suspended=True)
    assert odds.matches[0].kickoff.tzinfo is not None


@pytest_twisted.ensureDeferred
async def test_prices_keep_their_exact_decimal_value_to_four_places(database):
    prices = (Price("1x2", None, "home", D("1.333")), Price("1x2", None, "draw", D("101")),
              Price("1x2", None, "away", D("1.23456")))
    await run(database, odds_store.save_odds_txn, snapshot(feed_match("m1", T0 + timedelta(hours=1), prices)), T0)
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0)
    assert [(p.odds, str(p.odds)) for p in odds.matches[0].prices] == [
        (D("1.333"), "1.333"), (D("101"), "101"), (D("1.2346"), "1.2346")]


@pytest_twisted.ensureDeferred
async def test_prices_and_matches_that_vanish_before_kickoff_are_suspended(database):
    started = feed_match("live", T0 + timedelta(minutes=30), WINNER_PRICES)
    await run(database, odds_store.save_odds_txn, snapshot(
        feed_match("m1", T0 + timedelta(hours=2)), feed_match("m2", T0 + timedelta(hours=3), WINNER_PRICES),
        started), T0)
    later = T0 + timedelta(hours=1)  # "live" has kicked off by now; m1 lost its draw price; m2 vanished
    shrunk = feed_match("m1", T0 + timedelta(hours=2), (WINNER_PRICES[0], WINNER_PRICES[2]) + TOTALS_PRICES)
    summary = await run(database, odds_store.save_odds_txn, snapshot(shrunk), later)
    assert summary == SaveSummary(matches=0, prices=0, suspended=4)
    rows = await run(database, _odds_rows_txn)
    assert _suspended_keys(rows) == {
        ("m1", "1x2", "", "draw"), ("m1", "over_under", "2.5", "under"),
        ("m2", "1x2", "", "home"), ("m2", "1x2", "", "draw"), ("m2", "1x2", "", "away")}
    assert len(rows) == 5 + 3 + 3  # nothing deleted, the started match untouched
    versions = await run(database, _versions_txn)
    assert {key for key, (updated_at, _) in versions.items() if updated_at == later} == {
        ("m1", "1x2", "", "draw"), ("m2", "1x2", "", "home"), ("m2", "1x2", "", "draw"), ("m2", "1x2", "", "away")}


@pytest_twisted.ensureDeferred
async def test_a_price_offered_again_is_no_longer_suspended(database):
    match = feed_match("m1", T0 + timedelta(hours=2), WINNER_PRICES)
    await run(database, odds_store.save_odds_txn, snapshot(match), T0)
    await run(database, odds_store.save_odds_txn, snapshot(replace(match, prices=WINNER_PRICES[:1])),
              T0 + timedelta(minutes=1))
    await run(database, odds_store.save_odds_txn, snapshot(match), T0 + timedelta(minutes=2))
    assert _suspended_keys(await run(database, _odds_rows_txn)) == set()


@pytest_twisted.ensureDeferred
async def test_saving_the_same_snapshot_twice_changes_nothing(database):
    same = snapshot(feed_match("m1", T0 + timedelta(hours=2)), feed_match("m2", T0 + timedelta(hours=3)))
    first = await run(database, odds_store.save_odds_txn, same, T0)
    rows = await run(database, _odds_rows_txn)
    again = await run(database, odds_store.save_odds_txn, same, T0)
    assert first == SaveSummary(matches=2, prices=10, suspended=0)
    assert again == SaveSummary(matches=0, prices=0, suspended=0)
    assert await run(database, _odds_rows_txn) == rows
    assert (await run(database, odds_store.upcoming_odds_txn, "soccer", T0)).matches == same.matches


@pytest_twisted.ensureDeferred
async def test_an_older_snapshot_never_overwrites_a_newer_one(database):
    kickoff = T0 + timedelta(hours=2)
    newer = snapshot(feed_match("m1", kickoff, (Price("1x2", None, "home", D("2.1")),)), feed_ts=200)
    older = snapshot(feed_match("m1", kickoff, (Price("1x2", None, "home", D("1.5")),)),
                     feed_match("m2", kickoff, WINNER_PRICES), feed_ts=100)
    await run(database, odds_store.save_odds_txn, newer, T0 + timedelta(minutes=5))
    summary = await run(database, odds_store.save_odds_txn, older, T0)
    assert summary == SaveSummary(matches=0, prices=0, suspended=0)
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0)
    assert odds.matches[0].prices == (Price("1x2", None, "home", D("2.1")),)
    assert [m.id for m in odds.matches] == ["m1"]  # not even the match only the older snapshot had
    assert odds.updated_at == T0 + timedelta(minutes=5)


@pytest_twisted.ensureDeferred
async def test_an_unchanged_resave_writes_no_row_but_confirms_the_feed(database):
    same = snapshot(feed_match("m1", T0 + timedelta(hours=2)), feed_match("m2", T0 + timedelta(hours=3)))
    await run(database, odds_store.save_odds_txn, same, T0)
    prices, matches = await run(database, _versions_txn), await run(database, _versions_txn, "matches")
    later = T0 + timedelta(minutes=1)
    assert await run(database, odds_store.save_odds_txn, same, later) == SaveSummary(0, 0, 0)
    assert await run(database, _versions_txn) == prices  # updated_at, and on Postgres xmin/xmax: not even locked
    assert await run(database, _versions_txn, "matches") == matches
    assert {updated_at for updated_at, _ in prices.values()} == {T0}
    assert await run(database, odds_store.feed_ages_txn) == {"soccer": later}
    assert (await run(database, odds_store.upcoming_odds_txn, "soccer", T0)).updated_at == later


@pytest_twisted.ensureDeferred
async def test_a_resave_writes_only_the_changed_prices_and_matches(database):
    first, second = feed_match("m1", T0 + timedelta(hours=2)), feed_match("m2", T0 + timedelta(hours=3))
    await run(database, odds_store.save_odds_txn, snapshot(first, second), T0)
    before = await run(database, _versions_txn)
    moved = (Price("1x2", None, "home", D("1.8")),) + first.prices[1:4] + (replace(first.prices[4], suspended=False),)
    later = T0 + timedelta(minutes=1)
    changed = snapshot(replace(first, prices=moved), replace(second, kickoff=T0 + timedelta(hours=4)))
    summary = await run(database, odds_store.save_odds_txn, changed, later)
    assert summary == SaveSummary(matches=1, prices=2, suspended=0)
    after = await run(database, _versions_txn)
    rewritten = {key for key in after if after[key] != before[key]}
    assert rewritten == {("m1", "1x2", "", "home"), ("m1", "over_under", "2.5", "under")}
    assert {after[key][0] for key in rewritten} == {later}
    assert {key: updated_at for key, (updated_at, _) in (await run(database, _versions_txn, "matches")).items()} == {
        ("m1",): T0, ("m2",): later}
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0)
    assert odds.matches == changed.matches


@pytest_twisted.ensureDeferred
async def test_upcoming_odds_lists_only_future_matches_of_the_sport_in_kickoff_order(database):
    now = T0 + timedelta(hours=1)
    await run(database, odds_store.save_odds_txn, snapshot(
        feed_match("past", T0), feed_match("at-now", now), feed_match("b", now + timedelta(hours=1)),
        feed_match("a", now + timedelta(hours=1)), feed_match("c", now + timedelta(minutes=30))), T0)
    await run(database, odds_store.save_odds_txn, snapshot(feed_match("tennis", now + timedelta(hours=1)),
                                                          sport="tennis"), T0)
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", now)
    assert [m.id for m in odds.matches] == ["c", "a", "b"]
    limited = await run(database, odds_store.upcoming_odds_txn, "soccer", now, 2)
    assert [m.id for m in limited.matches] == ["c", "a"]
    assert all(len(m.prices) == 5 for m in limited.matches)
    unknown = await run(database, odds_store.upcoming_odds_txn, "darts", now)
    assert (unknown.updated_at, unknown.matches) == (None, ())


@pytest_twisted.ensureDeferred
async def test_feed_ages_report_each_sports_last_save(database):
    assert await run(database, odds_store.feed_ages_txn) == {}
    await run(database, odds_store.save_odds_txn, snapshot(sport="soccer"), T0)
    await run(database, odds_store.save_odds_txn, snapshot(sport="tennis"), T0 + timedelta(seconds=1.5))
    await run(database, odds_store.save_odds_txn, snapshot(sport="soccer"), T0 + timedelta(minutes=1))
    assert await run(database, odds_store.feed_ages_txn) == {
        "soccer": T0 + timedelta(minutes=1), "tennis": T0 + timedelta(seconds=1.5)}


@pytest_twisted.ensureDeferred
async def test_a_large_sport_saves_in_batches(database):
    matches = [feed_match(f"m{n:04d}", T0 + timedelta(minutes=n + 1)) for n in range(400)]
    summary = await run(database, odds_store.save_odds_txn, snapshot(*matches), T0)
    assert summary == SaveSummary(matches=400, prices=2000, suspended=0)
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0, 1000)
    assert tuple(odds.matches) == tuple(matches)
    shifted = [replace(m, prices=(replace(m.prices[0], odds=D("1.77")),) + m.prices[1:]) if n % 7 == 0 else m
               for n, m in enumerate(matches[:-10])]  # one match in 7 moves a price; the last 10 vanish
    resaved = await run(database, odds_store.save_odds_txn, snapshot(*shifted), T0 + timedelta(minutes=1))
    assert resaved == SaveSummary(matches=0, prices=56, suspended=40)  # the 5 - 1 already suspended stay so
    odds = await run(database, odds_store.upcoming_odds_txn, "soccer", T0, 1000)
    assert odds.matches[:-10] == tuple(shifted)
    assert all(p.suspended for m in odds.matches[-10:] for p in m.prices)


@pytest_twisted.ensureDeferred
async def test_stored_timestamps_compare_with_current_timestamp(database):
    def compare_txn(txn: Any) -> dict[str, Any]:
        past = odds_store.to_db_timestamp(txn, datetime(2000, 1, 1, tzinfo=timezone.utc))
        future = odds_store.to_db_timestamp(txn, datetime(2999, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc))
        return txn.one("SELECT CURRENT_TIMESTAMP > %s AS after_past, CURRENT_TIMESTAMP < %s AS before_future",
                       (past, future)) or {}

    row = await run(database, compare_txn)
    assert bool(row["after_past"]) and bool(row["before_future"])


class _FakeTxn:
    def __init__(self, dialect: str):
        self.dialect = dialect


def test_timestamps_convert_to_one_utc_form_per_dialect():
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2030, 1, 1, 14, 0, 5, 250, tzinfo=plus_two)
    assert odds_store.to_db_timestamp(_FakeTxn("sqlite"), moment) == "2030-01-01 12:00:05.000250"
    assert odds_store.to_db_timestamp(_FakeTxn("sqlite"), moment.replace(microsecond=0)) == "2030-01-01 12:00:05"
    assert odds_store.to_db_timestamp(_FakeTxn("postgres"), moment).tzinfo == timezone.utc
    assert odds_store.from_db_timestamp("2030-01-01 12:00:05.000250") == moment
    with pytest.raises(ValueError):
        odds_store.to_db_timestamp(_FakeTxn("sqlite"), datetime(2030, 1, 1))
