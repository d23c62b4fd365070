"""Bet request validation, the idempotency fingerprint, and the shared odds vocabulary (lines, payouts)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.bets import bet_fingerprint, parse_bet_request
from tenantsvc.core.odds import BetRequest, canonical_line, payout_cents, results_feed_path
from tenantsvc.core.validation import ValidationFailed

GOOD = {"match_id": "1234567", "market": "1x2", "selection": "home", "line": None, "stake_cents": 500,
        "odds": "1.76"}


def _errors(**changes: object) -> dict[str, str]:
    payload = {**GOOD, **changes}
    with pytest.raises(ValidationFailed) as caught:
        parse_bet_request({k: v for k, v in payload.items() if v is not ...})
    return caught.value.errors


def test_a_good_body_becomes_a_bet_request():
    assert parse_bet_request(GOOD) == BetRequest("1234567", "1x2", None, "home", 500, Decimal("1.76"))


def test_line_is_canonical_and_odds_may_be_a_json_number():
    bet = parse_bet_request({**GOOD, "market": "over_under", "selection": "over", "line": "2.50", "odds": 1.9})
    assert (bet.line, bet.odds) == ("2.5", Decimal("1.9"))


def test_line_may_be_left_out_for_markets_without_one():
    payload = {k: v for k, v in GOOD.items() if k != "line"}
    assert parse_bet_request(payload).line is None


@pytest.mark.parametrize("field,value", [
    ("match_id", ""), ("match_id", 123), ("match_id", "a b"), ("match_id", "x" * 65),
    ("market", "correct_score"), ("market", None), ("selection", "Home"), ("selection", "over"),
    ("stake_cents", 0), ("stake_cents", -5), ("stake_cents", 1.5), ("stake_cents", "500"), ("stake_cents", True),
    ("stake_cents", 10**13),
    ("odds", "1"), ("odds", "0.5"), ("odds", "abc"), ("odds", "NaN"), ("odds", "Infinity"), ("odds", "1.23456"),
    ("odds", None), ("odds", True), ("line", "2.5"),
])
def test_each_bad_field_is_reported_on_its_own_name(field, value):
    assert set(_errors(**{field: value})) == {field}


def test_line_markets_need_a_numeric_line():
    assert set(_errors(market="over_under", selection="over", line=None)) == {"line"}
    assert set(_errors(market="over_under", selection="over", line="lots")) == {"line"}


def test_unknown_fields_are_refused_and_every_problem_is_listed_at_once():
    errors = _errors(sport="soccer", stake_cents=0, odds="x")
    assert set(errors) == {"sport", "stake_cents", "odds"}


def test_fingerprint_ignores_how_a_price_is_written_but_not_what_is_asked():
    base = parse_bet_request(GOOD)
    assert bet_fingerprint(base) == bet_fingerprint(parse_bet_request({**GOOD, "odds": "1.760"}))
    for change in ({"stake_cents": 501}, {"selection": "away"}, {"odds": "1.77"}, {"match_id": "1234568"}):
        assert bet_fingerprint(parse_bet_request({**GOOD, **change})) != bet_fingerprint(base)


@pytest.mark.parametrize("text,expected", [
    ("2.5", "2.5"), ("2.50", "2.5"), ("+1", "1"), ("-1.5", "-1.5"), ("0", "0"), ("-0.0", "0"), (3, "3"),
    ("10", "10"), ("x", None), ("", None), (None, None), (True, None), ("nan", None),
])
def test_canonical_line(text, expected):
    assert canonical_line(text) == expected


@given(st.integers(min_value=1, max_value=10**9),
       st.decimals(min_value=Decimal("1.0001"), max_value=Decimal("1000"), places=4))
def test_payout_is_stake_times_odds_rounded_down_to_the_cent(stake, odds):
    payout = payout_cents(stake, odds)
    assert payout <= stake * odds < payout + 1
    assert payout >= stake


def test_results_feed_paths_follow_the_feeds_own_names():
    assert [results_feed_path(s) for s in ("soccer", "basketball", "tennis", "hockey", "table_tennis")] == [
        "soccernew", "bsktbl", "tennis_scores", "hockey", "table_tennis"]
