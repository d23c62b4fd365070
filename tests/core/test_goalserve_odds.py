"""Goalserve odds documents → ``OddsSnapshot``: shapes, markets, prices, rejections and the bundled demo feed.

The shape helpers at the top (``fixture_document``, ``unwrap_singletons``, ``prefix_keys``,
``feed_json``) are reused by ``test_goalserve_results``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantsvc.core.feed_errors import FeedError, FeedMalformed, FeedRejected
from tenantsvc.core.goalserve_odds import parse_odds_document
from tenantsvc.core.odds import LINE_MARKETS, MARKETS, SELECTIONS, FeedMatch, OddsSnapshot, canonical_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "goalserve"
ODDS_FIXTURES = ("odds_soccer_list.json", "odds_basketball_single.json", "odds_cricket.json")
# Keys whose value the feed may give as one object instead of a list.
ONE_OR_MANY_KEYS = frozenset({"categories", "category", "matches", "match", "odds", "type", "bookmakers",
                              "bookmaker", "odd", "player"})


def fixture_document(name: str) -> dict[str, Any]:
    """A fixture document, parsed."""
    return json.loads((FIXTURES / name).read_bytes())


def feed_json(document: object) -> bytes:
    """A document as the feed's bytes."""
    return json.dumps(document).encode()


def unwrap_singletons(value: Any, choose: Callable[[], bool]) -> Any:
    """``value`` with each one-element list under a one-or-many key replaced by its element when ``choose()``."""
    if isinstance(value, list):
        return [unwrap_singletons(item, choose) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        item = unwrap_singletons(item, choose)
        if key.lstrip("@") in ONE_OR_MANY_KEYS and isinstance(item, list) and len(item) == 1 and choose():
            item = item[0]
        result[key] = item
    return result


# A one-or-many key whose object may instead be a wrapper around the real list (``matches: {match: […]}``).
WRAPPER_INNER_KEYS = {"categories": "category", "matches": "match", "odds": "type"}


def wrap_singles(value: Any) -> Any:
    """``value`` with each single object under a one-or-many key (not a wrapper object) put in a list."""
    if isinstance(value, list):
        return [wrap_singles(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        bare_key = key.lstrip("@")
        inner = WRAPPER_INNER_KEYS.get(bare_key)
        is_wrapper = isinstance(item, dict) and inner is not None and isinstance(
            item.get(inner, item.get("@" + inner)), (dict, list))
        item = wrap_singles(item)
        result[key] = [item] if bare_key in ONE_OR_MANY_KEYS and isinstance(item, dict) and not is_wrapper else item
    return result


def prefix_keys(value: Any) -> Any:
    """``value`` with every object key written in the XML-attribute form ``@key``."""
    if isinstance(value, list):
        return [prefix_keys(item) for item in value]
    if isinstance(value, dict):
        return {"@" + key.lstrip("@"): prefix_keys(item) for key, item in value.items()}
    return value


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Arbitrary JSON whose object keys come from ``keys`` (so it reaches deep into the parser)."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) \
        | st.sampled_from(["0", "1", "200", "16", "True", "1.5", "2.5", "Home", "Over", "12.01.2030", "15:00"])
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(keys), inner, max_size=5), max_leaves=30)


def param_id(value: object) -> str:
    """A short readable pytest id for a JSON-ish parameter."""
    return repr(value)[:60]


def parse_fixture(name: str, sport: str = "soccer") -> OddsSnapshot:
    """Parse an odds fixture."""
    return parse_odds_document(sport, (FIXTURES / name).read_bytes())


def by_id(snapshot: OddsSnapshot) -> dict[str, FeedMatch]:
    """The snapshot's matches by id."""
    return {match.id: match for match in snapshot.matches}


def prices_of(match: FeedMatch, market: str) -> dict[tuple[str | None, str], tuple[str, bool]]:
    """(line, selection) → (odds text, suspended) of one market of a match."""
    return {(p.line, p.selection): (str(p.odds), p.suspended) for p in match.prices if p.market == market}


def match_object(odds: object, **match: object) -> dict:
    """A standard feed match carrying ``odds``; a field given as None is left out."""
    fields: dict[str, object] = {
        "id": "1", "status": "Not Started", "formatted_date": "12.01.2030", "time": "15:00",
        "localteam": {"name": "Home FC"}, "visitorteam": {"name": "Away FC"}, "odds": odds,
    }
    fields.update(match)
    return {key: value for key, value in fields.items() if value is not None}


def one_match_document(odds: object, **match: object) -> bytes:
    """A minimal standard odds document with one match carrying ``odds``."""
    return feed_json({"scores": {"sport": "soccer", "ts": "1894435200",
                                 "categories": [{"name": "Test: League", "matches": [match_object(odds, **match)]}]}})


def market(market_id: str | None, name: str, entries: list[dict], **extra: object) -> dict:
    """A feed market with one bet365 bookmaker holding ``entries``."""
    result: dict[str, object] = {"value": name, "bookmakers": [{"id": "16", "name": "bet365", "odds": entries}]}
    if market_id is not None:
        result["id"] = market_id
    result.update(extra)
    return result


def odd(name: str, value: object, **extra: object) -> dict:
    """A flat feed odd."""
    return {"name": name, "value": value, **extra}


def only_match(body: bytes) -> FeedMatch:
    """The single match of a parsed one-match document."""
    (match,) = parse_odds_document("soccer", body).matches
    return match


# --- the soccer fixture: lists everywhere ---------------------------------------------------------


def test_soccer_fixture_keeps_readable_matches_in_feed_order_and_skips_unreadable_kickoff():
    snapshot = parse_fixture("odds_soccer_list.json")
    assert snapshot.sport == "soccer"
    assert snapshot.feed_ts == 1894435200
    assert [m.id for m in snapshot.matches] == ["6001001", "6001002", "6001003", "6001004"]  # 6001005: "Jan 13"
    arsenal = snapshot.matches[0]
    assert (arsenal.league, arsenal.home, arsenal.away, arsenal.status) == (
        "England: Premier League", "Arsenal", "Chelsea", "Not Started")
    assert arsenal.kickoff == datetime(2030, 1, 12, 15, 0, tzinfo=timezone.utc)
    assert snapshot.matches[3].league == "Spain: La Liga"


def test_kickoff_falls_back_to_date_when_formatted_date_is_missing():
    newcastle = by_id(parse_fixture("odds_soccer_list.json"))["6001003"]
    assert newcastle.kickoff == datetime(2030, 1, 13, 12, 30, tzinfo=timezone.utc)


def test_match_with_only_unknown_markets_is_kept_without_prices():
    assert by_id(parse_fixture("odds_soccer_list.json"))["6001003"].prices == ()


def test_bookmaker_16_is_preferred_over_the_first_bookmaker():
    arsenal = by_id(parse_fixture("odds_soccer_list.json"))["6001001"]
    assert prices_of(arsenal, "1x2") == {
        (None, "home"): ("2.10", False), (None, "draw"): ("3.40", False), (None, "away"): ("3.50", False)}


def test_every_offered_market_is_read_and_unknown_markets_are_ignored():
    arsenal = by_id(parse_fixture("odds_soccer_list.json"))["6001001"]
    assert {p.market for p in arsenal.prices} == {"1x2", "double_chance", "btts", "over_under"}
    assert prices_of(arsenal, "double_chance") == {
        (None, "home_draw"): ("1.30", False), (None, "home_away"): ("1.33", False),
        (None, "draw_away"): ("1.72", False)}


def test_stopped_market_suspends_all_its_prices_and_nothing_else():
    arsenal = by_id(parse_fixture("odds_soccer_list.json"))["6001001"]
    assert prices_of(arsenal, "btts") == {(None, "yes"): ("1.66", True), (None, "no"): ("2.15", True)}
    assert not any(p.suspended for p in arsenal.prices if p.market != "btts")


def test_stopped_bookmaker_suspends_its_prices():
    madrid = by_id(parse_fixture("odds_soccer_list.json"))["6001004"]
    assert prices_of(madrid, "btts") == {(None, "yes"): ("1.80", True), (None, "no"): ("1.95", True)}


def test_stopped_odd_suspends_that_selection_only_and_a_1_00_price_is_dropped():
    liverpool = by_id(parse_fixture("odds_soccer_list.json"))["6001002"]
    assert prices_of(liverpool, "1x2") == {(None, "home"): ("1.44", False), (None, "away"): ("7.00", True)}


def test_double_chance_short_names_are_understood():
    liverpool = by_id(parse_fixture("odds_soccer_list.json"))["6001002"]
    assert set(prices_of(liverpool, "double_chance")) == {
        (None, "home_draw"), (None, "home_away"), (None, "draw_away")}


def test_only_the_line_marked_main_is_kept():
    arsenal = by_id(parse_fixture("odds_soccer_list.json"))["6001001"]
    assert prices_of(arsenal, "over_under") == {("2.5", "over"): ("1.90", False), ("2.5", "under"): ("1.90", False)}


def test_without_a_main_mark_the_most_balanced_line_is_kept_with_a_canonical_line():
    liverpool = by_id(parse_fixture("odds_soccer_list.json"))["6001002"]  # feed line "2.50"
    assert prices_of(liverpool, "over_under") == {
        ("2.5", "over"): ("1.80", False), ("2.5", "under"): ("2.00", False)}


def test_odds_keep_the_feed_decimal_text_exactly():
    arsenal = by_id(parse_fixture("odds_soccer_list.json"))["6001001"]
    home = next(p for p in arsenal.prices if (p.market, p.selection) == ("1x2", "home"))
    assert home.odds == Decimal("2.10") and str(home.odds) == "2.10"


# --- basketball: single objects where the feed varies ----------------------------------------------


def test_basketball_single_objects_give_home_away_and_main_total():
    snapshot = parse_fixture("odds_basketball_single.json", "basketball")
    assert snapshot.feed_ts == 1894435200  # an integer ts is accepted too
    (celtics,) = snapshot.matches
    assert (celtics.id, celtics.league, celtics.home, celtics.away) == (
        "7002001", "USA: NBA", "Boston Celtics", "Los Angeles Lakers")
    assert prices_of(celtics, "home_away") == {(None, "home"): ("1.55", False), (None, "away"): ("2.45", False)}
    assert prices_of(celtics, "over_under") == {
        ("226.5", "over"): ("1.91", False), ("226.5", "under"): ("1.87", False)}


# --- cricket shape ---------------------------------------------------------------------------------


def test_cricket_shape_is_read_with_category_matches_match_and_type_bookmaker_odd():
    snapshot = parse_fixture("odds_cricket.json", "cricket")
    matches = by_id(snapshot)
    assert list(matches) == ["8003001", "8003002", "8003003"]
    spirit = matches["8003001"]
    assert (spirit.league, spirit.home, spirit.away, spirit.status) == (
        "England: The Hundred", "London Spirit", "Oval Invincibles", "")
    assert spirit.kickoff == datetime(2030, 1, 14, 18, 30, tzinfo=timezone.utc)
    assert prices_of(spirit, "home_away") == {(None, "home"): ("1.83", False), (None, "away"): ("2.00", False)}
    assert {p.market for p in spirit.prices} == {"home_away"}  # "Top Batsman" is ignored


def test_cricket_stopped_market_prefers_bookmaker_16_and_reads_single_objects():
    matches = by_id(parse_fixture("odds_cricket.json", "cricket"))
    assert prices_of(matches["8003002"], "home_away") == {
        (None, "home"): ("2.40", True), (None, "away"): ("1.57", True)}
    assert matches["8003003"].league == "India: Indian Premier League"
    assert prices_of(matches["8003003"], "home_away") == {(None, "home"): ("1.91", False)}


# --- rejections and malformed bodies ------------------------------------------------------------------

GOOD_SCORES = {"sport": "soccer", "ts": "1894435200", "categories": [{"name": "L", "matches": []}]}


@pytest.mark.parametrize("document", [
    {"status": "429", "message": "Too many requests"},
    {"status": 500, "message": "Internal Server Error"},
    {"status": "403", "scores": GOOD_SCORES},
    {"message": "Internal error", "scores": GOOD_SCORES},
    {"message": "Request FAILED"},
    {"message": "upstream timeout"},
    {"message": "Rate limit exceeded"},
    {"scores": {**GOOD_SCORES, "ts": "0"}},
    {"scores": {**GOOD_SCORES, "ts": 0}},
    {"scores": {**GOOD_SCORES, "ts": ""}},
    {"scores": {**GOOD_SCORES, "ts": None}},
    {"scores": {"sport": "soccer", "categories": GOOD_SCORES["categories"]}},
    {"scores": {**GOOD_SCORES, "categories": []}},
    {"scores": {"sport": "soccer", "ts": "1894435200"}},
    {"scores": None},
    {},
], ids=param_id)
def test_documents_without_usable_data_are_rejected(document):
    with pytest.raises(FeedRejected):
        parse_odds_document("soccer", feed_json(document))


def test_empty_and_error_fixtures_are_rejected_with_a_clear_message():
    with pytest.raises(FeedRejected, match="ts"):
        parse_fixture("odds_empty.json")
    with pytest.raises(FeedRejected, match="429.*Too many requests"):
        parse_fixture("odds_error.json")


@pytest.mark.parametrize("body", [
    b"", b"not json", b"<scores/>", b"\xff\xfe\x00garbage", b"[]", b'"scores"', b"42",
    feed_json({"scores": []}),
    feed_json({"scores": "data"}),
    feed_json({"scores": {**GOOD_SCORES, "ts": "yesterday"}}),
    feed_json({"scores": {**GOOD_SCORES, "ts": 1.5}}),
    feed_json({"scores": {**GOOD_SCORES, "ts": True}}),
    feed_json({"scores": {**GOOD_SCORES, "categories": [1, 2]}}),
    feed_json({"scores": {**GOOD_SCORES, "categories": [{"name": "L", "matches": ["x"]}]}}),
], ids=repr)
def test_bodies_of_the_wrong_shape_are_malformed(body):
    with pytest.raises(FeedMalformed):
        parse_odds_document("soccer", body)


def test_status_200_and_a_harmless_message_are_accepted():
    body = feed_json({"status": "200", "message": "OK", "scores": GOOD_SCORES})
    assert parse_odds_document("soccer", body) == OddsSnapshot("soccer", 1894435200, ())


# --- markets, selections and prices (one match each) ----------------------------------------------------

HOME_DRAW_AWAY = [odd("Home", "2.00"), odd("Draw", "3.20"), odd("Away", "3.90")]
HOME_AWAY_ONLY = [odd("Home", "1.70"), odd("Away", "2.10")]


@pytest.mark.parametrize(("feed_market", "expected"), [
    (market("1", "Match Winner", HOME_DRAW_AWAY), {"1x2": {"home", "draw", "away"}}),
    (market("1", "Match Winner", HOME_AWAY_ONLY), {"home_away": {"home", "away"}}),
    (market("1", "3Way Result", [odd("1", "2.00"), odd("X", "3.20"), odd("2", "3.90")]),
     {"1x2": {"home", "draw", "away"}}),
    (market("2", "Home/Away", HOME_AWAY_ONLY), {"home_away": {"home", "away"}}),
    (market("2", "Home/Away", HOME_DRAW_AWAY), {"home_away": {"home", "away"}}),
    (market("15", "Both Teams To Score", [odd("yes", "1.70"), odd("NO", "2.05")]), {"btts": {"yes", "no"}}),
    (market("222", "Double Chance", [odd("Home / Draw", "1.25"), odd("X2", "1.60")]),
     {"double_chance": {"home_draw", "draw_away"}}),
    (market(None, "3Way Result", HOME_DRAW_AWAY), {"1x2": {"home", "draw", "away"}}),
    (market(None, "Both Teams To Score", [odd("Yes", "1.70"), odd("No", "2.05")]), {"btts": {"yes", "no"}}),
    (market(None, "Double Chance", [odd("1X", "1.25")]), {"double_chance": {"home_draw"}}),
    (market("99", "Match Winner", HOME_DRAW_AWAY), {}),                 # an id we do not know wins over the name
    (market("4", "Asian Handicap", HOME_AWAY_ONLY), {}),
    (market(None, "1st Half Over/Under", [odd("Over", "1.9"), odd("Under", "1.9")]), {}),
    (market("1", "Match Winner", [odd("Odd", "1.90"), odd("Even", "1.90")]), {}),
], ids=param_id)
def test_markets_are_recognised_by_id_or_name(feed_market, expected):
    match = only_match(one_match_document([feed_market]))
    found: dict[str, set[str]] = {}
    for price in match.prices:
        found.setdefault(price.market, set()).add(price.selection)
    assert found == expected


def test_draw_with_an_invalid_price_still_makes_market_1_three_way():
    match = only_match(one_match_document([market("1", "Match Winner", [
        odd("Home", "1.50"), odd("Draw", "1.00"), odd("Away", "6.00")])]))
    assert {(p.market, p.selection) for p in match.prices} == {("1x2", "home"), ("1x2", "away")}


@pytest.mark.parametrize(("value", "kept"), [
    ("1.76", Decimal("1.76")), (" 2.50 ", Decimal("2.50")), ("1.01", Decimal("1.01")), (3, Decimal("3")),
    (2.5, Decimal("2.5")), ("10000", Decimal("10000")),
    ("1", None), ("1.00", None), ("0.95", None), ("-2", None), ("0", None), ("", None), ("abc", None),
    ("NaN", None), ("Infinity", None), ("sNaN", None), (None, None), (True, None), ([2], None), ("10000.01", None),
])
def test_prices_must_be_decimals_above_one(value, kept):
    match = only_match(one_match_document([market("15", "Both Teams To Score", [odd("Yes", value)])]))
    assert [p.odds for p in match.prices] == ([kept] if kept is not None else [])


def test_first_feed_market_of_a_kind_wins_and_duplicate_selections_keep_the_first():
    match = only_match(one_match_document([
        market("15", "Both Teams To Score", [odd("Yes", "1.70"), odd("Yes", "9.00")]),
        market(None, "Both Teams To Score", [odd("Yes", "5.00"), odd("No", "1.10")]),
    ]))
    assert prices_of(match, "btts") == {(None, "yes"): ("1.70", False)}


def test_bookmaker_given_as_single_object_without_16_is_used():
    feed_market = {"id": "15", "value": "Both Teams To Score",
                   "bookmakers": {"id": "2", "odds": {"name": "Yes", "value": "1.70"}}}
    assert prices_of(only_match(one_match_document(feed_market)), "btts") == {(None, "yes"): ("1.70", False)}


def ou_line(name: object, over: object, under: object, **extra: object) -> dict:
    """An over/under line entry."""
    return {"type": "total", "name": name, "odds": [odd("Over", over), odd("Under", under)], **extra}


@pytest.mark.parametrize(("lines", "expected"), [
    ([ou_line("1.5", "1.30", "3.40"), ou_line("2.5", "1.95", "1.85", ismain="true")],
     {("2.5", "over"): "1.95", ("2.5", "under"): "1.85"}),
    ([ou_line("3.5", "2.80", "1.40"), ou_line("2.5", "1.95", "1.85"), ou_line("1.5", "1.30", "3.40")],
     {("2.5", "over"): "1.95", ("2.5", "under"): "1.85"}),
    ([ou_line("2.25", "1.90", "1.90"), ou_line("2.75", "1.90", "1.90")],      # a tie keeps the first
     {("2.25", "over"): "1.90", ("2.25", "under"): "1.90"}),
    ([ou_line("2.5", "2.00", "1.00", ismain="True"), ou_line("3.5", "2.80", "1.40")],
     {("2.5", "over"): "2.00"}),
    ([ou_line("2.5", "1.00", "1.80", ismain="True"), ou_line("3.5", "1.00", "1.40")], {("2.5", "under"): "1.80"}),
    ([ou_line("2.5", "1.00", "1.80"), ou_line("3.5", "1.00", "1.40")], {}),     # nothing balanced, nothing main
    ([ou_line("x", "1.90", "1.90", ismain="True"), ou_line("1e9999", "1.90", "1.90")], {}),
    ([ou_line("+3.0", "2.10", "1.75", ismain="True")], {("3", "over"): "2.10", ("3", "under"): "1.75"}),
    ([odd("Over 2.5", "1.95"), odd("Under 2.5", "1.85"), odd("Over 3.5", "3.00"), odd("Under 3.5", "1.35")],
     {("2.5", "over"): "1.95", ("2.5", "under"): "1.85"}),
], ids=param_id)
def test_over_under_keeps_only_the_main_line(lines, expected):
    match = only_match(one_match_document([market("5", "Goals Over/Under", lines)]))
    assert {key: odds for key, (odds, _) in prices_of(match, "over_under").items()} == expected


def test_stopped_line_suspends_its_prices():
    match = only_match(one_match_document([market("5", "Over/Under", [
        ou_line("2.5", "1.90", "1.90", ismain="True", stop="True")])]))
    assert {p.suspended for p in match.prices} == {True}


# --- teams, ids and kickoffs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("teams", "expected"), [
    ({"localteam": {"name": "A"}, "visitorteam": {"name": "B"}}, ("A", "B")),
    ({"localteam": {"@name": "A"}, "awayteam": {"@name": "B"}}, ("A", "B")),
    ({"player_1": {"name": "Alcaraz C."}, "player_2": {"name": "Sinner J."}}, ("Alcaraz C.", "Sinner J.")),
    ({"localteam": {"name": "A"}}, None),
    ({"localteam": {"name": "A"}, "visitorteam": {"name": " "}}, None),
    ({"localteam": {"id": "1"}, "visitorteam": {"name": "B"}}, None),
])
def test_team_shapes(teams, expected):
    match = {**match_object([], localteam=None, visitorteam=None), **teams}
    document = {"scores": {"ts": "1894435200", "categories": [{"name": "L", "matches": [match]}]}}
    matches = parse_odds_document("tennis", feed_json(document)).matches
    assert [(m.home, m.away) for m in matches] == ([expected] if expected else [])


@pytest.mark.parametrize(("fields", "expected"), [
    ({"formatted_date": "12.01.2030", "date": "Jan 12", "time": "15:00"}, datetime(2030, 1, 12, 15, 0)),
    ({"formatted_date": None, "date": "13.01.2030", "time": "09:05"}, datetime(2030, 1, 13, 9, 5)),
    ({"formatted_date": "bad", "date": "1.2.2030", "time": "9:05"}, datetime(2030, 2, 1, 9, 5)),
    ({"formatted_date": "31.02.2030", "time": "15:00"}, None),
    ({"formatted_date": "12.01.2030", "time": "TBA"}, None),
    ({"formatted_date": "12.01.2030", "time": "24:00"}, None),
    ({"formatted_date": "12.01.2030", "time": None}, None),
    ({"formatted_date": None, "date": "Sep 11", "time": "15:00"}, None),
])
def test_kickoff_is_utc_from_day_and_time_and_unreadable_kickoffs_skip_the_match(fields, expected):
    matches = parse_odds_document("soccer", one_match_document([], **fields)).matches
    assert [m.kickoff for m in matches] == ([expected.replace(tzinfo=timezone.utc)] if expected else [])


def test_match_without_id_is_skipped_and_repeated_ids_keep_the_first():
    document = {"scores": {"ts": "5", "categories": [
        {"name": "A", "matches": [match_object([], id=None)]},
        {"name": "B", "matches": [match_object([]), match_object([])]},
        {"name": "C", "matches": [match_object([])]},
    ]}}
    assert [(m.id, m.league) for m in parse_odds_document("soccer", feed_json(document)).matches] == [("1", "B")]


# --- shape equivalences and properties ------------------------------------------------------------------


@pytest.mark.parametrize("name", ODDS_FIXTURES)
def test_at_prefixed_keys_read_the_same_as_plain_keys(name):
    document = fixture_document(name)
    assert parse_odds_document("x", feed_json(prefix_keys(document))) == parse_odds_document("x", feed_json(document))


@pytest.mark.parametrize("name", ODDS_FIXTURES)
def test_single_objects_read_the_same_as_one_element_lists(name):
    document = fixture_document(name)
    unwrapped, wrapped = unwrap_singletons(document, lambda: True), wrap_singles(document)
    assert unwrapped != wrapped
    expected = parse_odds_document("x", feed_json(document))
    assert parse_odds_document("x", feed_json(unwrapped)) == expected
    assert parse_odds_document("x", feed_json(wrapped)) == expected


FLAGS = st.sampled_from(["True", "False", "true", True, None])
SELECTION_NAMES = st.sampled_from(["Home", "Draw", "Away", "Yes", "No", "Over", "Under", "Home/Draw", "Home/Away",
                                   "Draw/Away", "1X", "12", "X2", "1", "X", "2", "Odd", "Over 2.5", "Under 2.5"])
PRICES = st.sampled_from(["1.76", "2.10", "1.00", "0.5", "abc", "", "3.40", "1.01", "10001", "NaN"]) \
    | st.decimals(min_value=-5, max_value=50, places=2).map(str)
FEED_ODDS = st.fixed_dictionaries({"name": SELECTION_NAMES, "value": PRICES, "stop": FLAGS})
FEED_LINES = st.fixed_dictionaries({
    "type": st.just("total"), "name": st.sampled_from(["1.5", "2.5", "2.50", "3.5", "-1", "x"]), "ismain": FLAGS,
    "odds": st.lists(FEED_ODDS, min_size=1, max_size=2)})
FEED_BOOKMAKERS = st.fixed_dictionaries({
    "id": st.sampled_from(["16", "2", "7"]), "stop": FLAGS,
    "odds": st.lists(FEED_ODDS | FEED_LINES, min_size=1, max_size=3)})
FEED_MARKETS = st.fixed_dictionaries({
    "id": st.sampled_from(["1", "2", "5", "15", "222", "4", "99"]),
    "value": st.sampled_from(["Match Winner", "Home/Away", "Over/Under", "Both Teams To Score", "Double Chance"]),
    "stop": FLAGS, "bookmakers": st.lists(FEED_BOOKMAKERS, min_size=1, max_size=2)})
FEED_MATCHES = st.builds(
    lambda match_id, day, odds: {"id": match_id, "formatted_date": day, "time": "18:45",
                                 "localteam": {"name": "H"}, "visitorteam": {"name": "V"}, "odds": odds},
    st.sampled_from(["1", "2", "3"]), st.sampled_from(["12.01.2030", "31.02.2030"]),
    st.lists(FEED_MARKETS, min_size=1, max_size=4))
FEED_DOCUMENTS = st.builds(
    lambda categories: {"scores": {"sport": "soccer", "ts": "1894435200", "categories": categories}},
    st.lists(st.builds(lambda matches: {"name": "L", "matches": matches},
                       st.lists(FEED_MATCHES, min_size=1, max_size=2)), min_size=1, max_size=2))


def assert_offered_prices_only(snapshot: OddsSnapshot) -> None:
    """Every price is one of our markets/selections, above 1, with a canonical line only on line markets."""
    for match in snapshot.matches:
        keys = [(p.market, p.line, p.selection) for p in match.prices]
        assert len(keys) == len(set(keys))
        assert len({p.line for p in match.prices if p.market == "over_under"}) <= 1
        for price in match.prices:
            assert price.market in MARKETS and price.selection in SELECTIONS[price.market]
            assert price.odds > 1 and price.odds.is_finite()
            if price.market in LINE_MARKETS:
                assert price.line is not None and canonical_line(price.line) == price.line
            else:
                assert price.line is None


@settings(max_examples=150, deadline=None)
@given(document=FEED_DOCUMENTS)
def test_generated_documents_only_yield_offered_markets_and_valid_odds(document):
    assert_offered_prices_only(parse_odds_document("soccer", feed_json(document)))


@settings(max_examples=150, deadline=None)
@given(document=FEED_DOCUMENTS, data=st.data())
def test_single_object_or_list_wrapping_never_changes_the_result(document, data):
    unwrapped = unwrap_singletons(document, lambda: data.draw(st.booleans()))
    assert parse_odds_document("soccer", feed_json(unwrapped)) == parse_odds_document("soccer", feed_json(document))


@settings(max_examples=50, deadline=None)
@given(document=FEED_DOCUMENTS)
def test_at_prefixing_never_changes_the_result(document):
    assert parse_odds_document("soccer", feed_json(prefix_keys(document))) == \
        parse_odds_document("soccer", feed_json(document))


ODDS_KEYS = ["status", "message", "scores", "ts", "categories", "category", "matches", "match", "id", "name",
             "odds", "type", "bookmakers", "bookmaker", "odd", "value", "stop", "ismain", "localteam",
             "visitorteam", "awayteam", "player_1", "formatted_date", "date", "time", "@id", "@name"]


@settings(max_examples=300, deadline=None)
@given(scores=json_values(ODDS_KEYS), wrap=st.booleans())
def test_arbitrary_json_raises_nothing_but_feed_errors(scores, wrap):
    document = {"scores": {"ts": "1894435200", "categories": scores}} if wrap else scores
    try:
        snapshot = parse_odds_document("soccer", feed_json(document))
    except FeedError:
        return
    assert_offered_prices_only(snapshot)


@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_raise_nothing_but_feed_errors(body):
    try:
        parse_odds_document("soccer", body)
    except FeedError:
        pass


# --- the bundled demo feed -------------------------------------------------------------------------

DEMO_DAYS = {"02.01.2030", "03.01.2030"}


def demo_bytes(*parts: str) -> bytes:
    """A bundled demo document, read as package data."""
    return resources.files("tenantsvc.demo_feed").joinpath(*parts).read_bytes()


@pytest.mark.parametrize(("sport", "leagues", "count", "markets"), [
    ("soccer", 2, 6, {"1x2", "double_chance", "btts", "over_under"}),
    ("basketball", 2, 4, {"home_away", "over_under"}),
])
def test_demo_odds_parse_with_every_offered_market_on_every_match(sport, leagues, count, markets):
    snapshot = parse_odds_document(sport, demo_bytes("odds", f"{sport}.json"))
    assert len(snapshot.matches) == count
    assert len({m.league for m in snapshot.matches}) == leagues
    for match in snapshot.matches:
        assert {p.market for p in match.prices} == markets
        assert len(match.prices) == sum(len(SELECTIONS[market]) for market in markets)
        assert not any(p.suspended for p in match.prices)
        assert match.kickoff.date() in {datetime(2030, 1, 2).date(), datetime(2030, 1, 3).date()}
    assert_offered_prices_only(snapshot)


@pytest.mark.parametrize("sport", ["soccer", "basketball"])
def test_demo_odds_dates_follow_the_shifted_date_convention(sport):
    document = json.loads(demo_bytes("odds", f"{sport}.json"))
    for category in document["scores"]["categories"]:
        for match in category["matches"]:
            assert {match["date"], match["formatted_date"]} <= DEMO_DAYS
