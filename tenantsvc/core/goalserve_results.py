"""Parse a Goalserve results document (notes §4.2) into ``MatchResult`` values for settlement.

The shape is XML converted to JSON: ``scores.category`` (one or a list) holds ``matches.match`` (soccer)
or ``match`` (other sports), each one object or a list; attributes carry an ``@`` prefix (plain keys are
accepted too). ``classify_status`` turns the feed's status text into a result state; a number is never
full time (bug 26: "90", "120" and "90+3" are minutes of play).

Decisions on statuses the brief left open:
- "Delayed" and "Int."/"Interrupted" are ``NOT_FINISHED``: the match is expected to go on today, so
  settlement simply looks again; a real postponement is reported as "Postp.".
- "Susp."/"Suspended" is ``POSTPONED``: play stopped and may resume another day, so bets must wait
  (never voided at once) until the feed says finished or cancelled, or settlement's own timeout.
- "WO"/walkover, "Awarded" and anything unrecognised are ``UNKNOWN``: review, never guess.

Scores are the regulation-time score, set only for ``FINISHED``: the teams' ``@goals`` (or
``@totalscore``) after a normal finish; after extra time, overtime or penalties the regulation score comes
from the ``ft`` element's ``@score`` ("1-1") and is None when that is absent (settlement sends such bets
to review). Non-numeric scores ("?", "") are None.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from tenantsvc.core.feed_errors import FeedMalformed, FeedRejected
from tenantsvc.core.goalserve_shape import (
    first_of_each,
    category_objects,
    feed_field,
    feed_text,
    load_feed_document,
    match_objects,
    match_sides,
)
from tenantsvc.core.odds import CANCELLED, FINISHED, NOT_FINISHED, POSTPONED, UNKNOWN, MatchResult

# Status texts, folded by _status_key (lower case, single spaces, no trailing dot).
FINISHED_IN_REGULATION: frozenset[str] = frozenset({
    "ft", "full-time", "full time", "fulltime", "finished", "final", "game over",
})
FINISHED_AFTER_EXTRA_TIME: frozenset[str] = frozenset({
    "aet", "after extra time", "pen", "after penalties", "aot", "after over time", "after overtime",
})
IN_PLAY_OR_NOT_STARTED: frozenset[str] = frozenset({
    "not started", "ns", "tba", "ht", "half time", "half-time", "halftime", "break time", "break",
    "extra time", "et", "overtime", "ot", "penalties", "in progress", "live", "delayed", "int", "interrupted",
})
POSTPONED_STATUSES: frozenset[str] = frozenset({"postp", "postponed", "susp", "suspended"})
CANCELLED_STATUSES: frozenset[str] = frozenset({"cancl", "cancelled", "canceled", "abandoned", "aban"})

_KICKOFF_TIME = re.compile(r"\d{1,2}:\d{2}")
_MINUTE = re.compile(r"\d{1,3}(\+\d{1,2})?'?")
_PERIOD = re.compile(r"(1st|2nd|3rd|4th|5th) (half|quarter|period|set|inning|innings)")
_SCORE = re.compile(r"[0-9]{1,4}")
_SCORE_PAIR = re.compile(r"([0-9]{1,4})\s*[-:]\s*([0-9]{1,4})")


def parse_results_document(body: bytes) -> tuple[MatchResult, ...]:
    """Parse a results document into one ``MatchResult`` per match id (the first one wins).

    Raises ``FeedRejected`` for an error status or message (or no ``scores`` at all) and ``FeedMalformed``
    for a body that is not JSON or whose scores/categories/matches have the wrong types. An empty
    ``scores`` or category gives ``()``. Matches without an id are skipped.
    """
    document = load_feed_document(body)
    if "scores" not in document and "@scores" not in document:
        raise FeedRejected("results document has no scores object")
    scores = feed_field(document, "scores")
    if scores is None or scores == "":
        return ()
    if not isinstance(scores, dict):
        raise FeedMalformed(f"scores is a JSON {type(scores).__name__}, not an object")
    return first_of_each(_match_results(category_objects(scores)), lambda result: result.match_id)


def _match_results(categories: Iterable[Mapping[str, Any]]) -> Iterable[MatchResult]:
    """The result of every match with an id, in feed order."""
    for category in categories:
        for match in match_objects(category):
            result = match_result(match)
            if result is not None:
                yield result


def match_result(match: Mapping[str, Any]) -> MatchResult | None:
    """One match object as a ``MatchResult``; None when it has no id."""
    match_id = feed_text(feed_field(match, "id"))
    if match_id is None:
        return None
    status = feed_text(feed_field(match, "status")) or ""
    state = classify_status(status)
    if state != FINISHED:
        return MatchResult(match_id=match_id, status=status, state=state)
    home, away = _regulation_score(match, _status_key(status))
    return MatchResult(match_id=match_id, status=status, state=state, home_score=home, away_score=away)


def classify_status(status: str) -> str:
    """The result state (``core.odds.RESULT_STATES``) of a feed status text; unrecognised → ``UNKNOWN``."""
    key = _status_key(status)
    if key in FINISHED_IN_REGULATION or key in FINISHED_AFTER_EXTRA_TIME:
        return FINISHED
    if key in IN_PLAY_OR_NOT_STARTED or any(
        pattern.fullmatch(key) for pattern in (_KICKOFF_TIME, _MINUTE, _PERIOD)
    ):
        return NOT_FINISHED
    if key in POSTPONED_STATUSES:
        return POSTPONED
    if key in CANCELLED_STATUSES:
        return CANCELLED
    return UNKNOWN


def _status_key(status: str) -> str:
    """A status folded for lookup: lower case, single spaces, no trailing dot ("Pen." → "pen")."""
    return " ".join(status.casefold().split()).rstrip(".")


def _regulation_score(match: Mapping[str, Any], status_key: str) -> tuple[int | None, int | None]:
    """The regulation-time (home, away) score of a finished match, or (None, None) when unknown."""
    if status_key in FINISHED_AFTER_EXTRA_TIME:
        return _ft_score(feed_field(match, "ft"))
    sides = match_sides(match)
    if sides is None:
        return None, None
    home, away = (_team_score(side) for side in sides)
    return (home, away) if home is not None and away is not None else (None, None)


def _team_score(team: object) -> int | None:
    """A team's ``@goals``, else its ``@totalscore``, as a non-negative int; None when neither is a number."""
    if not isinstance(team, dict):
        return None
    for key in ("goals", "totalscore"):
        score = _score_number(feed_field(team, key))
        if score is not None:
            return score
    return None


def _score_number(value: object) -> int | None:
    """Feed score text ("2") as an int; None for "?", "", "250/7" and other non-numbers."""
    text = feed_text(value)
    return int(text) if text is not None and _SCORE.fullmatch(text) else None


def _ft_score(ft: object) -> tuple[int | None, int | None]:
    """The score of an ``ft`` element (``{"@score": "1-1"}`` or "1-1"), or (None, None)."""
    text = feed_text(feed_field(ft, "score")) if isinstance(ft, dict) else feed_text(ft)
    pair = _SCORE_PAIR.fullmatch(text or "")
    return (int(pair.group(1)), int(pair.group(2))) if pair else (None, None)
