"""Settlement rules: what one single bet's outcome is, given the match's result — pure, time comes in as ``now``.

``decide`` judges a bet (market, line, selection) against a ``MatchResult`` from the results feed and says
WON, LOST or VOID (settle now), PENDING (look again next cycle) or REVIEW (a human must decide). It never
guesses: a bet it does not understand, a status nobody taught us, or a result that never arrives goes to
REVIEW — never to LOST (notes §6.2 items 25–26).

Order of the checks:
1. The bet itself: a market outside ``MARKETS``, a selection outside ``SELECTIONS[market]``, a line on a
   market without lines, or a missing/non-numeric line on a line market → REVIEW, whatever the match did.
2. The match state: CANCELLED → VOID; POSTPONED → PENDING until ``kickoff + postponed_void_after_s``, then
   VOID; NOT_FINISHED or absent from the feed (``result is None``) → PENDING until
   ``kickoff + missing_result_review_after_s``, then REVIEW; UNKNOWN → REVIEW naming the raw status;
   FINISHED without a score → REVIEW.
3. A FINISHED match is settled on its regulation-time score (``MatchResult`` scores already are, also after
   extra time or penalties): each market names the selections that win; none winning means the market is
   void (an exact Over/Under line, a home/away tie). Quarter lines (split stakes) go to REVIEW.

``credit_cents`` turns a settled outcome into the wallet credit: the gross payout, the stake back, or nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from tenantsvc.core.odds import (
    BOTH_TEAMS_TO_SCORE,
    CANCELLED,
    DOUBLE_CHANCE,
    FINISHED,
    HOME_AWAY,
    LINE_MARKETS,
    MARKETS,
    MATCH_WINNER,
    NOT_FINISHED,
    OVER_UNDER,
    POSTPONED,
    SELECTIONS,
    UNKNOWN,
    MatchResult,
    canonical_line,
    payout_cents,
)

WON = "won"
LOST = "lost"
VOID = "void"
PENDING = "pending"  # not decidable yet: look again next cycle
REVIEW = "review"    # a human must decide; never settle it as lost
OUTCOMES: tuple[str, ...] = (WON, LOST, VOID, PENDING, REVIEW)
SETTLED_OUTCOMES: frozenset[str] = frozenset({WON, LOST, VOID})  # outcomes that move money and close the bet

# Which 1x2 results each double-chance selection covers.
DOUBLE_CHANCE_COVERS: dict[str, frozenset[str]] = {
    "home_draw": frozenset({"home", "draw"}),
    "home_away": frozenset({"home", "away"}),
    "draw_away": frozenset({"draw", "away"}),
}


@dataclass(frozen=True)
class Decision:
    """The verdict on one bet: an outcome (WON, LOST, VOID, PENDING, REVIEW) and a short human-readable reason."""

    outcome: str
    reason: str
    # For REVIEW, a bounded label saying why (a metric label): one of REVIEW_KINDS.
    review_kind: str = ""


REVIEW_KINDS: tuple[str, ...] = ("unknown_market", "unknown_status", "no_score", "missing_result", "quarter_line")


@dataclass(frozen=True)
class SettlementPolicy:
    """How long to wait, counted from kickoff, before a postponed match voids and a missing result needs review.

    A postponed match voids only once ``now >= kickoff + postponed_void_after_s`` (it may be played later
    the same day or the next); a match still not finished, or absent from the results feed, goes to REVIEW
    once ``now >= kickoff + missing_result_review_after_s`` so bets never sit pending forever.
    """

    postponed_void_after_s: float = 48 * 3600
    missing_result_review_after_s: float = 3 * 86400

    def __post_init__(self) -> None:
        for name in ("postponed_void_after_s", "missing_result_review_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def decide(market: str, line: str | None, selection: str, result: MatchResult | None, *, kickoff: datetime,
           now: datetime, policy: SettlementPolicy = SettlementPolicy()) -> Decision:
    """Judge one bet against its match's result (None: the match is not in the results feed).

    See the module docstring for the rules; ``kickoff`` and ``now`` must both be timezone-aware (or both naive).
    """
    problem = _bet_problem(market, line, selection)
    if problem is not None:
        return Decision(REVIEW, problem, "unknown_market")
    if result is None:
        return _wait_for_result("not in the results feed", kickoff, now, policy)
    if result.state == FINISHED:
        return _decide_finished(market, line, selection, result)
    if result.state == CANCELLED:
        return Decision(VOID, f"match cancelled (status {result.status!r})")
    if result.state == POSTPONED:
        return _decide_postponed(kickoff, now, policy)
    if result.state == NOT_FINISHED:
        return _wait_for_result(f"not finished (status {result.status!r})", kickoff, now, policy)
    if result.state == UNKNOWN:
        return Decision(REVIEW, f"unknown status {result.status!r}", "unknown_status")
    return Decision(REVIEW, f"unknown result state {result.state!r} (status {result.status!r})", "unknown_status")


def credit_cents(outcome: str, stake_cents: int, odds: Decimal) -> int:
    """The wallet credit for a settled bet: WON → gross payout (stake × odds, floored to the cent), VOID → the
    stake back, LOST → 0. Any other outcome (PENDING, REVIEW, a typo) or a negative stake raises ValueError.
    """
    if stake_cents < 0:
        raise ValueError(f"stake_cents must be >= 0, got {stake_cents}")
    if outcome == WON:
        return payout_cents(stake_cents, odds)
    if outcome == VOID:
        return stake_cents
    if outcome == LOST:
        return 0
    raise ValueError(f"no credit for outcome {outcome!r}: only won, lost and void are settled")


def _bet_problem(market: str, line: str | None, selection: str) -> str | None:
    """Why the bet cannot be judged automatically whatever the match did, or None if it is well-formed."""
    if market not in MARKETS:
        return f"unknown market {market!r}"
    if selection not in SELECTIONS[market]:
        return f"unknown selection {selection!r} for market {market!r}"
    if market not in LINE_MARKETS and line is not None:
        return f"line {line!r} given for market {market!r}, which has no line"
    if market in LINE_MARKETS and _line_value(line) is None:
        return f"missing or non-numeric line {line!r} for market {market!r}"
    return None


def _line_value(line: str | None) -> Decimal | None:
    """A bet's line as a number, or None when it is missing or not numeric."""
    canonical = canonical_line(line)
    return None if canonical is None else Decimal(canonical)


def _deadline(kickoff: datetime, after_s: float) -> datetime:
    """The moment ``after_s`` seconds after kickoff."""
    return kickoff + timedelta(seconds=after_s)


def _decide_postponed(kickoff: datetime, now: datetime, policy: SettlementPolicy) -> Decision:
    """A postponed match: pending while it may still be played, void once the wait is over."""
    void_at = _deadline(kickoff, policy.postponed_void_after_s)
    if now >= void_at:
        return Decision(VOID, f"postponed, not played by {void_at.isoformat()}")
    return Decision(PENDING, f"postponed, waiting until {void_at.isoformat()}")


def _wait_for_result(why: str, kickoff: datetime, now: datetime, policy: SettlementPolicy) -> Decision:
    """No final result yet: pending until the review deadline, then a human looks at it."""
    review_at = _deadline(kickoff, policy.missing_result_review_after_s)
    if now >= review_at:
        return Decision(REVIEW, f"{why}, no result by {review_at.isoformat()}", "missing_result")
    return Decision(PENDING, f"{why}, waiting until {review_at.isoformat()}")


def _decide_finished(market: str, line: str | None, selection: str, result: MatchResult) -> Decision:
    """Settle a well-formed bet on a FINISHED match's regulation-time score."""
    home, away = result.home_score, result.away_score
    if home is None or away is None:
        return Decision(REVIEW, f"no regulation-time score (status {result.status!r})", "no_score")
    if home < 0 or away < 0:
        return Decision(REVIEW, f"impossible score {home}-{away}", "no_score")
    if market == OVER_UNDER:
        return _decide_over_under(line, selection, home + away)
    winners = _WINNERS[market](home, away)
    score = f"regulation score {home}-{away}"
    if not winners:
        return Decision(VOID, f"{score}: a tie voids {market}")
    return Decision(WON if selection in winners else LOST, score)


def _decide_over_under(line_text: str | None, selection: str, total: int) -> Decision:
    """Over/Under on total goals: above or below the line decides, an exact hit voids, quarter lines need review."""
    line = _line_value(line_text)
    if line is None:
        return Decision(REVIEW, f"missing or non-numeric line {line_text!r}", "unknown_market")
    if line < 0:
        return Decision(REVIEW, f"negative total line {line}", "unknown_market")
    if (line * 2) % 1 != 0:
        kind = "quarter" if (line * 4) % 1 == 0 else "unsupported"
        return Decision(REVIEW, f"{kind} line {line} needs a human", "quarter_line")
    if total == line:
        return Decision(VOID, f"exact line {line}")
    winner = "over" if total > line else "under"
    return Decision(WON if selection == winner else LOST, f"total goals {total} vs line {line}")


def _match_winner(home: int, away: int) -> str:
    """The 1x2 result of a score: home, draw or away."""
    if home > away:
        return "home"
    if home < away:
        return "away"
    return "draw"


def _match_winner_winners(home: int, away: int) -> frozenset[str]:
    """1x2: exactly one of home, draw, away wins."""
    return frozenset({_match_winner(home, away)})


def _double_chance_winners(home: int, away: int) -> frozenset[str]:
    """Double chance: the two selections that cover the 1x2 result win."""
    result = _match_winner(home, away)
    return frozenset(name for name, covers in DOUBLE_CHANCE_COVERS.items() if result in covers)


def _btts_winners(home: int, away: int) -> frozenset[str]:
    """Both teams to score: yes when each side scored at least once, otherwise no."""
    return frozenset({"yes" if home >= 1 and away >= 1 else "no"})


def _home_away_winners(home: int, away: int) -> frozenset[str]:
    """Home/away (no draw): the winning side; a tie wins nothing, which voids the market."""
    result = _match_winner(home, away)
    return frozenset() if result == "draw" else frozenset({result})


# Winning selections of each market without a line, from the regulation score; empty means void.
_WINNERS: dict[str, Callable[[int, int], frozenset[str]]] = {
    MATCH_WINNER: _match_winner_winners,
    DOUBLE_CHANCE: _double_chance_winners,
    BOTH_TEAMS_TO_SCORE: _btts_winners,
    HOME_AWAY: _home_away_winners,
}
