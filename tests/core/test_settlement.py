"""Settlement rules, case by case: every market × selection on chosen scores, every result state, the waits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tenantsvc.core.odds import (
    CANCELLED, FINISHED, MARKETS, NOT_FINISHED, POSTPONED, SELECTIONS, UNKNOWN, MatchResult,
)
from tenantsvc.core.settlement import (
    LOST, PENDING, REVIEW, VOID, WON, Decision, SettlementPolicy, credit_cents, decide,
)

KICKOFF = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)
AFTER_MATCH = KICKOFF + timedelta(hours=2)
POLICY = SettlementPolicy()
POSTPONED_VOID_AT = KICKOFF + timedelta(seconds=POLICY.postponed_void_after_s)
REVIEW_AT = KICKOFF + timedelta(seconds=POLICY.missing_result_review_after_s)
ONE_SECOND = timedelta(seconds=1)


def finished(home: int | None, away: int | None, status: str = "FT") -> MatchResult:
    """A FINISHED result with the given regulation-time score."""
    return MatchResult("m1", status, FINISHED, home, away)


def judge(market: str, selection: str, result: MatchResult | None, *, line: str | None = None,
          now: datetime = AFTER_MATCH, policy: SettlementPolicy = POLICY) -> Decision:
    """``decide`` with the test kickoff."""
    return decide(market, line, selection, result, kickoff=KICKOFF, now=now, policy=policy)


# (market, line, score, {selection: expected outcome}) — every selection of the market on that score.
FINISHED_TABLE = [
    ("1x2", None, (2, 1), {"home": WON, "draw": LOST, "away": LOST}),
    ("1x2", None, (0, 0), {"home": LOST, "draw": WON, "away": LOST}),
    ("1x2", None, (1, 3), {"home": LOST, "draw": LOST, "away": WON}),
    ("1x2", None, (4, 4), {"home": LOST, "draw": WON, "away": LOST}),
    ("double_chance", None, (2, 1), {"home_draw": WON, "home_away": WON, "draw_away": LOST}),
    ("double_chance", None, (0, 0), {"home_draw": WON, "home_away": LOST, "draw_away": WON}),
    ("double_chance", None, (0, 2), {"home_draw": LOST, "home_away": WON, "draw_away": WON}),
    ("btts", None, (1, 1), {"yes": WON, "no": LOST}),
    ("btts", None, (0, 0), {"yes": LOST, "no": WON}),
    ("btts", None, (3, 0), {"yes": LOST, "no": WON}),
    ("btts", None, (0, 1), {"yes": LOST, "no": WON}),
    ("btts", None, (2, 5), {"yes": WON, "no": LOST}),
    ("over_under", "2.5", (2, 1), {"over": WON, "under": LOST}),
    ("over_under", "2.5", (1, 1), {"over": LOST, "under": WON}),
    ("over_under", "0.5", (0, 0), {"over": LOST, "under": WON}),
    ("over_under", "0.5", (1, 0), {"over": WON, "under": LOST}),
    ("over_under", "3", (2, 1), {"over": VOID, "under": VOID}),
    ("over_under", "3", (3, 1), {"over": WON, "under": LOST}),
    ("over_under", "3", (1, 1), {"over": LOST, "under": WON}),
    ("over_under", "0", (0, 0), {"over": VOID, "under": VOID}),
    ("over_under", "2.50", (2, 1), {"over": WON, "under": LOST}),  # non-canonical text, same line
    ("over_under", "2.25", (2, 1), {"over": REVIEW, "under": REVIEW}),
    ("over_under", "2.75", (1, 1), {"over": REVIEW, "under": REVIEW}),
    ("over_under", "2.3", (2, 1), {"over": REVIEW, "under": REVIEW}),
    ("over_under", "-1", (2, 1), {"over": REVIEW, "under": REVIEW}),
    ("home_away", None, (2, 1), {"home": WON, "away": LOST}),
    ("home_away", None, (0, 1), {"home": LOST, "away": WON}),
    ("home_away", None, (0, 0), {"home": VOID, "away": VOID}),
    ("home_away", None, (2, 2), {"home": VOID, "away": VOID}),
]


@pytest.mark.parametrize(
    ("market", "line", "score", "selection", "expected"),
    [(m, line, score, sel, out) for m, line, score, outcomes in FINISHED_TABLE for sel, out in outcomes.items()],
)
def test_finished_match_settles_every_selection_on_the_regulation_score(market, line, score, selection, expected):
    decision = judge(market, selection, finished(*score), line=line)
    assert decision.outcome == expected, decision.reason


def test_table_covers_every_market_and_selection():
    covered = {(m, sel) for m, _, _, outcomes in FINISHED_TABLE for sel in outcomes}
    assert covered == {(m, sel) for m in MARKETS for sel in SELECTIONS[m]}


@pytest.mark.parametrize("status", ["AET", "Pen."])
@pytest.mark.parametrize(
    ("market", "selection", "expected"),
    [("1x2", "draw", WON), ("1x2", "home", LOST), ("double_chance", "home_draw", WON),
     ("double_chance", "home_away", LOST), ("home_away", "home", VOID), ("over_under", "over", VOID)],
)
def test_extra_time_and_penalties_settle_on_the_regulation_draw(status, market, selection, expected):
    line = "2" if market == "over_under" else None
    assert judge(market, selection, finished(1, 1, status), line=line).outcome == expected


def test_reasons_name_the_score_and_the_line():
    assert judge("1x2", "home", finished(2, 1)).reason == "regulation score 2-1"
    assert judge("over_under", "over", finished(2, 1), line="3").reason == "exact line 3"
    assert judge("over_under", "over", finished(2, 1), line="2.5").reason == "total goals 3 vs line 2.5"
    assert "quarter line 2.25" in judge("over_under", "over", finished(2, 1), line="2.25").reason


@pytest.mark.parametrize(("home", "away"), [(None, None), (2, None), (None, 0)])
def test_finished_without_a_regulation_score_needs_review(home, away):
    decision = judge("1x2", "home", finished(home, away))
    assert decision == Decision(REVIEW, "no regulation-time score (status 'FT')", "no_score")


def test_negative_score_needs_review():
    assert judge("1x2", "home", finished(-1, 0)).outcome == REVIEW


# --- bets the rules do not understand --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("market", "line", "selection", "reason_part"),
    [("correct_score", None, "1-0", "unknown market 'correct_score'"),
     ("unknown", None, "home", "unknown market"),
     ("1X2", None, "home", "unknown market '1X2'"),
     ("1x2", None, "Home Win", "unknown selection 'Home Win'"),
     ("btts", None, "over", "unknown selection"),
     ("double_chance", None, "home", "unknown selection"),
     ("1x2", "2.5", "home", "has no line"),
     ("home_away", "0", "home", "has no line"),
     ("over_under", None, "over", "missing or non-numeric line"),
     ("over_under", "two and a half", "under", "missing or non-numeric line"),
     ("over_under", "", "under", "missing or non-numeric line"),
     ("over_under", "NaN", "over", "missing or non-numeric line")],
)
@pytest.mark.parametrize(
    "result",
    [finished(2, 1), finished(0, 0), MatchResult("m1", "Cancl.", CANCELLED),
     MatchResult("m1", "Postp.", POSTPONED), MatchResult("m1", "45", NOT_FINISHED), None],
)
def test_a_bet_the_rules_do_not_understand_goes_to_review_never_lost(market, line, selection, reason_part, result):
    decision = judge(market, selection, result, line=line, now=REVIEW_AT + timedelta(days=30))
    assert decision.outcome == REVIEW
    assert reason_part in decision.reason


# --- match states ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["Cancl.", "Cancelled", "Abandoned", "WO"])
def test_cancelled_match_voids_every_well_formed_bet(status):
    result = MatchResult("m1", status, CANCELLED)
    for market in MARKETS:
        line = "2.25" if market == "over_under" else None  # even a quarter line: nothing to split
        for selection in SELECTIONS[market]:
            assert judge(market, selection, result, line=line, now=KICKOFF).outcome == VOID


@pytest.mark.parametrize("status", ["Weird", "Susp.", "Awarded"])
def test_unknown_status_goes_to_review_naming_the_raw_status(status):
    decision = judge("1x2", "home", MatchResult("m1", status, UNKNOWN))
    assert decision == Decision(REVIEW, f"unknown status {status!r}", "unknown_status")


def test_state_outside_the_vocabulary_goes_to_review():
    decision = judge("1x2", "home", MatchResult("m1", "FT", "settled-by-magic", 1, 0))
    assert decision.outcome == REVIEW
    assert "settled-by-magic" in decision.reason


@pytest.mark.parametrize(
    ("now", "expected"),
    [(KICKOFF - timedelta(days=1), PENDING), (KICKOFF, PENDING), (POSTPONED_VOID_AT - ONE_SECOND, PENDING),
     (POSTPONED_VOID_AT, VOID), (POSTPONED_VOID_AT + ONE_SECOND, VOID), (REVIEW_AT + timedelta(days=30), VOID)],
)
def test_postponed_match_waits_then_voids(now, expected):
    assert judge("1x2", "home", MatchResult("m1", "Postp.", POSTPONED), now=now).outcome == expected


def test_postponed_pending_reason_says_until_when():
    decision = judge("1x2", "home", MatchResult("m1", "Postp.", POSTPONED), now=KICKOFF)
    assert decision == Decision(PENDING, f"postponed, waiting until {POSTPONED_VOID_AT.isoformat()}")


NOT_YET = [MatchResult("m1", "Not Started", NOT_FINISHED), MatchResult("m1", "90", NOT_FINISHED),
           MatchResult("m1", "HT", NOT_FINISHED), None]


@pytest.mark.parametrize("result", NOT_YET)
@pytest.mark.parametrize(
    ("now", "expected"),
    [(KICKOFF - timedelta(hours=3), PENDING), (AFTER_MATCH, PENDING), (REVIEW_AT - ONE_SECOND, PENDING),
     (REVIEW_AT, REVIEW), (REVIEW_AT + timedelta(days=7), REVIEW)],
)
def test_unfinished_or_missing_result_waits_then_goes_to_review(result, now, expected):
    assert judge("over_under", "over", result, line="2.5", now=now).outcome == expected


def test_missing_result_reasons_say_why_and_until_when():
    pending = judge("1x2", "home", None)
    assert pending == Decision(PENDING, f"not in the results feed, waiting until {REVIEW_AT.isoformat()}")
    review = judge("1x2", "home", MatchResult("m1", "90", NOT_FINISHED), now=REVIEW_AT)
    assert review.outcome == REVIEW
    assert "not finished (status '90')" in review.reason


def test_policy_waits_are_configurable():
    policy = SettlementPolicy(postponed_void_after_s=3600, missing_result_review_after_s=7200)
    hour = timedelta(hours=1)
    assert judge("1x2", "home", MatchResult("m1", "Postp.", POSTPONED), now=KICKOFF + hour,
                 policy=policy).outcome == VOID
    assert judge("1x2", "home", None, now=KICKOFF + hour, policy=policy).outcome == PENDING
    assert judge("1x2", "home", None, now=KICKOFF + 2 * hour, policy=policy).outcome == REVIEW


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_policy_rejects_negative_or_non_finite_waits(bad):
    with pytest.raises(ValueError):
        SettlementPolicy(postponed_void_after_s=bad)
    with pytest.raises(ValueError):
        SettlementPolicy(missing_result_review_after_s=bad)


def test_finished_result_settles_regardless_of_the_clock():
    early = judge("1x2", "home", finished(1, 0), now=KICKOFF - timedelta(hours=1))
    late = judge("1x2", "home", finished(1, 0), now=REVIEW_AT + timedelta(days=100))
    assert early.outcome == late.outcome == WON


# --- credits ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("outcome", "stake", "odds", "expected"),
    [(WON, 1000, Decimal("2.50"), 2500), (WON, 333, Decimal("1.07"), 356),  # 356.31 floored
     (WON, 1, Decimal("1.99"), 1), (WON, 0, Decimal("3"), 0),
     (VOID, 1000, Decimal("2.50"), 1000), (VOID, 333, Decimal("1.07"), 333),
     (LOST, 1000, Decimal("2.50"), 0)],
)
def test_credit_is_gross_payout_stake_back_or_nothing(outcome, stake, odds, expected):
    assert credit_cents(outcome, stake, odds) == expected


@pytest.mark.parametrize("outcome", [PENDING, REVIEW, "cashed_out", "WON", ""])
def test_credit_refuses_outcomes_that_are_not_settled(outcome):
    with pytest.raises(ValueError):
        credit_cents(outcome, 1000, Decimal("2"))


def test_credit_refuses_a_negative_stake():
    with pytest.raises(ValueError):
        credit_cents(VOID, -1, Decimal("2"))
