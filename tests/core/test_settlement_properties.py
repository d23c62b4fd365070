"""Settlement rules, as properties over any score, line, state and price (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.odds import (
    CANCELLED, FINISHED, MARKETS, NOT_FINISHED, POSTPONED, RESULT_STATES, SELECTIONS, UNKNOWN, MatchResult,
)
from tenantsvc.core.settlement import LOST, REVIEW, VOID, WON, credit_cents, decide

KICKOFF = datetime(2024, 5, 1, 18, 0, tzinfo=timezone.utc)

goals = st.integers(min_value=0, max_value=30)
half_lines = st.integers(min_value=0, max_value=40).map(lambda n: Decimal(n) / 2)  # 0, 0.5, 1, … 20
any_now = st.integers(min_value=-10 * 86400, max_value=60 * 86400).map(lambda s: KICKOFF + timedelta(seconds=s))
stakes = st.integers(min_value=0, max_value=10**9)
odds_values = st.decimals(min_value=Decimal("1.01"), max_value=Decimal("1000"), places=2)


def outcomes(market: str, home: int, away: int, line: str | None = None) -> dict[str, str]:
    """Every selection of ``market`` → its outcome on a FINISHED ``home``-``away`` result."""
    result = MatchResult("m1", "FT", FINISHED, home, away)
    return {sel: decide(market, line, sel, result, kickoff=KICKOFF, now=KICKOFF).outcome
            for sel in SELECTIONS[market]}


@given(home=goals, away=goals)
def test_exactly_one_1x2_selection_wins(home, away):
    results = outcomes("1x2", home, away)
    assert sorted(results.values()) == [LOST, LOST, WON]


@given(home=goals, away=goals)
def test_exactly_two_double_chance_selections_win(home, away):
    results = outcomes("double_chance", home, away)
    assert sorted(results.values()) == [LOST, WON, WON]


@given(home=goals, away=goals)
def test_double_chance_agrees_with_1x2(home, away):
    match_winner = next(sel for sel, out in outcomes("1x2", home, away).items() if out == WON)
    for selection, outcome in outcomes("double_chance", home, away).items():
        assert (outcome == WON) == (match_winner in selection.split("_"))


@given(home=goals, away=goals, line=half_lines)
def test_over_and_under_are_complementary_or_both_void_on_an_exact_line(home, away, line):
    results = outcomes("over_under", home, away, str(line))
    if home + away == line:
        assert results == {"over": VOID, "under": VOID}
    else:
        assert sorted(results.values()) == [LOST, WON]
        assert (results["over"] == WON) == (home + away > line)


@given(home=goals, away=goals)
def test_btts_yes_and_no_are_complementary(home, away):
    results = outcomes("btts", home, away)
    assert sorted(results.values()) == [LOST, WON]
    assert (results["yes"] == WON) == (home > 0 and away > 0)


@given(home=goals, away=goals)
def test_home_away_is_complementary_or_both_void_on_a_tie(home, away):
    results = outcomes("home_away", home, away)
    if home == away:
        assert results == {"home": VOID, "away": VOID}
    else:
        assert sorted(results.values()) == [LOST, WON]


unknown_markets = st.text(max_size=20).filter(lambda m: m not in MARKETS)
results_of_any_state = st.one_of(
    st.none(),
    st.builds(MatchResult, match_id=st.just("m1"), status=st.text(max_size=10),
              state=st.one_of(st.sampled_from(RESULT_STATES), st.text(max_size=10)),
              home_score=st.one_of(st.none(), goals), away_score=st.one_of(st.none(), goals)),
)
lines = st.one_of(st.none(), st.text(max_size=6), half_lines.map(str))


@given(market=unknown_markets, line=lines, selection=st.text(max_size=10), result=results_of_any_state,
       now=any_now)
def test_an_unknown_market_is_never_lost(market, line, selection, result, now):
    assert decide(market, line, selection, result, kickoff=KICKOFF, now=now).outcome != LOST


@given(market=st.sampled_from(MARKETS), line=lines, data=st.data(), now=any_now,
       state=st.sampled_from([NOT_FINISHED, POSTPONED, CANCELLED, UNKNOWN]), scores=st.tuples(goals, goals))
def test_no_state_but_finished_ever_settles_a_bet_as_lost(market, line, data, now, state, scores):
    selection = data.draw(st.sampled_from(SELECTIONS[market]))
    result = MatchResult("m1", "whatever", state, *scores)
    for candidate in (result, None):
        assert decide(market, line, selection, candidate, kickoff=KICKOFF, now=now).outcome != LOST


@given(stake=stakes, low=odds_values, high=odds_values)
def test_won_credit_is_monotone_in_odds(stake, low, high):
    low, high = min(low, high), max(low, high)
    assert credit_cents(WON, stake, low) <= credit_cents(WON, stake, high)


@given(stake=stakes, odds=odds_values)
def test_won_credit_never_exceeds_stake_times_odds_and_is_within_a_cent(stake, odds):
    exact = Decimal(stake) * odds
    credit = credit_cents(WON, stake, odds)
    assert isinstance(credit, int)
    assert exact - 1 < credit <= exact


@given(stake=stakes, odds=odds_values)
def test_void_credit_is_exactly_the_stake(stake, odds):
    assert credit_cents(VOID, stake, odds) == stake


@given(st.sampled_from(["1x2", "over_under", "correct_score"]), st.sampled_from(["home", "over", "x"]),
       st.sampled_from(RESULT_STATES), st.integers(0, 5), st.integers(0, 5))
def test_every_review_names_a_bounded_kind_and_nothing_else_does(market, selection, state, home, away):
    from tenantsvc.core.settlement import REVIEW_KINDS

    result = MatchResult("m", "status", state, home, away)
    line = "2.25" if market == "over_under" else None
    decision = decide(market, line, selection, result, kickoff=KICKOFF, now=KICKOFF + timedelta(days=30))
    assert (decision.review_kind in REVIEW_KINDS) == (decision.outcome == REVIEW)
