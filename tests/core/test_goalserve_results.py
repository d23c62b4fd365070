"""Goalserve results documents → ``MatchResult``: statuses, regulation-time scores, shapes and rejections."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantsvc.core.feed_errors import FeedError, FeedMalformed, FeedRejected
from tenantsvc.core.goalserve_odds import parse_odds_document
from tenantsvc.core.goalserve_results import classify_status, parse_results_document
from tenantsvc.core.odds import (
    CANCELLED,
    FINISHED,
    NOT_FINISHED,
    POSTPONED,
    RESULT_STATES,
    UNKNOWN,
    MatchResult,
)
from tests.core.test_goalserve_odds import (
    FIXTURES,
    feed_json,
    fixture_document,
    json_values,
    param_id,
    prefix_keys,
    unwrap_singletons,
    wrap_singles,
)

RESULTS_FIXTURES = ("results_soccer_home.json", "results_soccer_d-1.json", "results_basketball_home.json")


def parse_fixture(name: str) -> tuple[MatchResult, ...]:
    """Parse a results fixture."""
    return parse_results_document((FIXTURES / name).read_bytes())


def one_match_document(**match: object) -> bytes:
    """A results document with one soccer category holding ``match``."""
    return feed_json({"scores": {"category": {"@name": "Test", "matches": {"match": match}}}})


def only_result(**match: object) -> MatchResult:
    """The single result of a one-match document."""
    (result,) = parse_results_document(one_match_document(**match))
    return result


def team(goals: object = None, totalscore: object = None) -> dict:
    """A results-feed team element."""
    element: dict[str, object] = {"@name": "Team"}
    if goals is not None:
        element["@goals"] = goals
    if totalscore is not None:
        element["@totalscore"] = totalscore
    return element


# --- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [
    "FT", "ft", "Full-time", "Full Time", "Finished", "Final", "Game Over", "After Over Time", "AOT", "AET",
    "Pen.", "Pen", "After Penalties", " FT ",
])
def test_final_statuses_are_finished(status):
    assert classify_status(status) == FINISHED


@pytest.mark.parametrize("status", [
    "Not Started", "15:00", "9:30", "1", "45", "90", "120", "90+3", "45+2'", "67'", "HT", "Break Time",
    "1st Half", "2nd Half", "3rd Quarter", "2nd Period", "Overtime", "Extra Time", "Penalties", "Delayed",
    "Int.", "TBA",
])
def test_in_play_and_not_started_statuses_are_not_finished(status):
    assert classify_status(status) == NOT_FINISHED


@pytest.mark.parametrize(("status", "state"), [
    ("Postp.", POSTPONED), ("Postponed", POSTPONED), ("Susp.", POSTPONED), ("Suspended", POSTPONED),
    ("Cancl.", CANCELLED), ("Cancelled", CANCELLED), ("Canceled", CANCELLED), ("Abandoned", CANCELLED),
    ("Aban.", CANCELLED),
    ("WO", UNKNOWN), ("Walkover", UNKNOWN), ("Awarded", UNKNOWN), ("", UNKNOWN), ("Fin", UNKNOWN),
    ("FT?", UNKNOWN), ("Final/10", UNKNOWN),
])
def test_postponed_cancelled_and_unknown_statuses(status, state):
    assert classify_status(status) == state


@given(minute=st.integers(min_value=0, max_value=999), added=st.none() | st.integers(min_value=0, max_value=15))
def test_a_minute_number_is_never_full_time(minute, added):
    status = str(minute) if added is None else f"{minute}+{added}"
    assert classify_status(status) == NOT_FINISHED


@given(status=st.text(max_size=20))
def test_every_status_text_has_a_known_state(status):
    assert classify_status(status) in RESULT_STATES


# --- fixtures ------------------------------------------------------------------------------------


def test_soccer_home_fixture():
    assert parse_fixture("results_soccer_home.json") == (
        MatchResult("6001001", "FT", FINISHED, 2, 1),
        MatchResult("6001002", "AET", FINISHED, 2, 2),       # regulation score from ft, not the 3-2 goals
        MatchResult("6001003", "90", NOT_FINISHED),
        MatchResult("6001006", "Pen.", FINISHED, 0, 0),      # regulation score from ft, not the 1-1 goals
        MatchResult("6001007", "HT", NOT_FINISHED),
        MatchResult("6001008", "Cancl.", CANCELLED),
        MatchResult("6001009", "WO", UNKNOWN),
        MatchResult("6001004", "Postp.", POSTPONED),          # a single match object in its category
    )


def test_soccer_d1_fixture_with_a_single_category_object():
    assert parse_fixture("results_soccer_d-1.json") == (
        MatchResult("6000901", "FT", FINISHED, 0, 0),
        MatchResult("6000902", "Finished", FINISHED, 3, 2),
        MatchResult("6000903", "AET", FINISHED, None, None),  # no ft element: settlement sends it to review
        MatchResult("6000904", "Aban.", CANCELLED),
    )


def test_basketball_fixture_with_category_match_awayteam_and_totalscore():
    assert parse_fixture("results_basketball_home.json") == (
        MatchResult("7002001", "Finished", FINISHED, 112, 105),
        MatchResult("7002002", "After Over Time", FINISHED, None, None),
        MatchResult("7002003", "Not Started", NOT_FINISHED),
        MatchResult("7002004", "3rd Quarter", NOT_FINISHED),
        MatchResult("7002005", "Postponed", POSTPONED),
    )


def test_results_ids_match_the_odds_fixture_ids():
    odds_ids = {m.id for m in parse_odds_document("soccer", (FIXTURES / "odds_soccer_list.json").read_bytes()).matches}
    result_ids = {r.match_id for r in parse_fixture("results_soccer_home.json")}
    assert odds_ids <= result_ids


# --- scores ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("match", "score"), [
    ({"@status": "FT", "localteam": team("2"), "visitorteam": team("0")}, (2, 0)),
    ({"status": "FT", "localteam": {"goals": "1"}, "visitorteam": {"goals": 3}}, (1, 3)),
    ({"@status": "Final", "localteam": team(totalscore="5"), "awayteam": team(totalscore="4")}, (5, 4)),
    ({"@status": "FT", "localteam": team("?", "7"), "visitorteam": team("?", "6")}, (7, 6)),
    ({"@status": "FT", "localteam": team("?"), "visitorteam": team("?")}, (None, None)),
    ({"@status": "FT", "localteam": team(""), "visitorteam": team("1")}, (None, None)),
    ({"@status": "FT", "localteam": team("2")}, (None, None)),
    ({"@status": "FT", "localteam": team("-1"), "visitorteam": team("1")}, (None, None)),
    ({"@status": "Finished", "localteam": team(totalscore="250/7"), "visitorteam": team(totalscore="180")},
     (None, None)),
    ({"@status": "Finished", "player": [team(totalscore="2"), team(totalscore="1")]}, (2, 1)),
    ({"@status": "AET", "localteam": team("2"), "visitorteam": team("1"), "ft": {"@score": "1-1"}}, (1, 1)),
    ({"@status": "AET", "localteam": team("2"), "visitorteam": team("1"), "ft": "0 - 0"}, (0, 0)),
    ({"@status": "After Penalties", "localteam": team("1"), "visitorteam": team("1"), "ft": {"@score": "1:1"}},
     (1, 1)),
    ({"@status": "Pen.", "localteam": team("1"), "visitorteam": team("1")}, (None, None)),
    ({"@status": "AET", "localteam": team("2"), "visitorteam": team("1"), "ft": {"@score": "?-?"}}, (None, None)),
    ({"@status": "90", "localteam": team("2"), "visitorteam": team("1")}, (None, None)),
    ({"@status": "Postp.", "localteam": team("0"), "visitorteam": team("0")}, (None, None)),
], ids=param_id)
def test_scores_are_the_regulation_score_of_finished_matches_only(match, score):
    result = only_result(**{"@id": "42", **match})
    assert (result.home_score, result.away_score) == score


# --- shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RESULTS_FIXTURES)
def test_single_objects_lists_and_at_prefixes_read_the_same(name):
    document = fixture_document(name)
    expected = parse_results_document(feed_json(document))
    unwrapped, wrapped = unwrap_singletons(document, lambda: True), wrap_singles(document)
    assert unwrapped != wrapped
    assert parse_results_document(feed_json(unwrapped)) == expected
    assert parse_results_document(feed_json(wrapped)) == expected
    assert parse_results_document(feed_json(prefix_keys(document))) == expected


@pytest.mark.parametrize("document", [
    {"scores": None}, {"scores": ""}, {"scores": {}}, {"scores": {"category": []}}, {"scores": {"category": ""}},
    {"scores": {"category": {"@name": "Empty"}}}, {"scores": {"category": {"@name": "E", "matches": ""}}},
    {"scores": {"category": {"@name": "E", "matches": {"match": []}}}},
    {"?xml": {"@version": "1.0"}, "scores": {"@sport": "soccer", "category": [{"@name": "E", "match": None}]}},
], ids=param_id)
def test_empty_scores_or_categories_are_no_results(document):
    assert parse_results_document(feed_json(document)) == ()


def test_matches_without_id_are_skipped_and_repeated_ids_keep_the_first():
    document = {"scores": {"category": [
        {"@name": "A", "matches": {"match": [{"@status": "FT"}, {"@id": "7", "@status": "HT"}]}},
        {"@name": "B", "match": {"@id": "7", "@status": "FT"}},
    ]}}
    assert parse_results_document(feed_json(document)) == (MatchResult("7", "HT", NOT_FINISHED),)


def test_status_missing_is_unknown():
    assert only_result(**{"@id": "9"}) == MatchResult("9", "", UNKNOWN)


# --- rejections -------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [
    {"status": "500", "message": "Internal Server Error"},
    {"status": 429},
    {"message": "Too many requests"},
    {"message": "An error occurred", "scores": {"category": []}},
    {"data": "nothing"},
], ids=param_id)
def test_error_bodies_are_rejected(document):
    with pytest.raises(FeedRejected):
        parse_results_document(feed_json(document))


@pytest.mark.parametrize("body", [
    b"", b"<scores><category/></scores>", b"\x80abc", b"[1]", b"null",
    feed_json({"scores": ["x"]}),
    feed_json({"scores": 12}),
    feed_json({"scores": {"category": ["league"]}}),
    feed_json({"scores": {"category": {"@name": "L", "match": ["x"]}}}),
], ids=repr)
def test_bodies_of_the_wrong_shape_are_malformed(body):
    with pytest.raises(FeedMalformed):
        parse_results_document(body)


# --- properties -------------------------------------------------------------------------------------

RESULTS_KEYS = ["scores", "category", "matches", "match", "@id", "id", "@status", "status", "localteam",
                "visitorteam", "awayteam", "player", "@goals", "@totalscore", "ft", "@score", "@name"]


def assert_consistent(results: tuple[MatchResult, ...]) -> None:
    """States are known, ids unique, and scores are non-negative pairs set only on finished matches."""
    assert len({r.match_id for r in results}) == len(results)
    for result in results:
        assert result.state in RESULT_STATES
        assert (result.home_score is None) == (result.away_score is None)
        if result.state != FINISHED:
            assert result.home_score is None
        if result.home_score is not None:
            assert result.home_score >= 0 and result.away_score >= 0


@settings(max_examples=300, deadline=None)
@given(scores=json_values(RESULTS_KEYS), wrap=st.booleans())
def test_arbitrary_json_raises_nothing_but_feed_errors(scores, wrap):
    document = {"scores": scores} if wrap else scores
    try:
        results = parse_results_document(feed_json(document))
    except FeedError:
        return
    assert_consistent(results)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(RESULTS_FIXTURES), data=st.data())
def test_random_single_object_unwrapping_never_changes_the_result(name, data):
    document = fixture_document(name)
    unwrapped = unwrap_singletons(document, lambda: data.draw(st.booleans()))
    assert parse_results_document(feed_json(unwrapped)) == parse_results_document(feed_json(document))


# --- the bundled demo feed -----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "sport"), [("soccernew", "soccer"), ("bsktbl", "basketball")])
def test_demo_results_list_the_demo_matches_as_not_started(path, sport):
    demo = resources.files("tenantsvc.demo_feed")
    results = parse_results_document(demo.joinpath("results", path, "home.json").read_bytes())
    odds = parse_odds_document(sport, demo.joinpath("odds", f"{sport}.json").read_bytes())
    assert [r.match_id for r in results] == [m.id for m in odds.matches]
    assert {r.state for r in results} == {NOT_FINISHED}
    document = json.loads(demo.joinpath("results", path, "home.json").read_bytes())
    days = {match[key] for category in document["scores"]["category"]
            for match in (category.get("matches") or {"match": category.get("match")})["match"]
            for key in ("@date", "@formatted_date")}
    assert days <= {"02.01.2030", "03.01.2030"}
