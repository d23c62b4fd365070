"""Bet requests as players send them: validation into a ``BetRequest`` and the idempotency fingerprint.

The body of ``POST /<tenant>/api/bets`` is ``{"match_id", "market", "selection", "line", "stake_cents",
"odds"}``. Odds and lines are decimals sent as strings (JSON numbers are accepted and read through their
text, never through binary floating point arithmetic). Every problem is reported per field, so a client
gets all of them at once as a 422.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from tenantsvc.core.odds import LINE_MARKETS, MARKETS, SELECTIONS, BetRequest, canonical_line
from tenantsvc.core.validation import ValidationFailed

MATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}")
MAX_STAKE_CENTS = 10**12  # a sanity ceiling before the tenant's own limits are consulted
MAX_ODDS = Decimal("100000")
ODDS_DECIMALS = 4  # the schema stores NUMERIC(12,4)
FIELDS = ("match_id", "market", "selection", "line", "stake_cents", "odds")


def _decimal(value: object) -> Decimal | None:
    """A finite Decimal read from a JSON string or number's text, or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _odds(value: object, errors: dict[str, str]) -> Decimal:
    odds = _decimal(value)
    exponent = odds.as_tuple().exponent if odds is not None else 0
    if odds is None or not isinstance(exponent, int):
        errors["odds"] = 'must be decimal odds such as "1.76"'
        return Decimal(0)
    if not Decimal(1) < odds <= MAX_ODDS or -exponent > ODDS_DECIMALS:
        errors["odds"] = f"must be greater than 1, at most {MAX_ODDS} and have at most {ODDS_DECIMALS} decimals"
    return odds


def _stake(value: object, errors: dict[str, str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_STAKE_CENTS:
        errors["stake_cents"] = "must be a whole number of cents greater than 0"
        return 0
    return value


def _market_selection_line(payload: Mapping[str, Any], errors: dict[str, str]) -> tuple[str, str, str | None]:
    market, selection, raw_line = payload.get("market"), payload.get("selection"), payload.get("line")
    if market not in MARKETS:
        errors["market"] = "must be one of " + ", ".join(MARKETS)
        return "", "", None
    assert isinstance(market, str)
    if selection not in SELECTIONS[market]:
        errors["selection"] = f"for {market} must be one of " + ", ".join(SELECTIONS[market])
    line: str | None = None
    if market in LINE_MARKETS:
        line = canonical_line(raw_line) if isinstance(raw_line, (str, int, float)) else None
        if line is None:
            errors["line"] = f'{market} needs its line, e.g. "2.5"'
    elif raw_line is not None:
        errors["line"] = f"{market} has no line: send null or leave it out"
    return market, str(selection), line


def parse_bet_request(payload: Mapping[str, Any]) -> BetRequest:
    """Validate a bet body into a ``BetRequest``; ``ValidationFailed`` lists every bad or unknown field."""
    errors: dict[str, str] = {}
    for unknown in sorted(set(payload) - set(FIELDS)):
        errors[unknown] = "unknown field"
    match_id = payload.get("match_id")
    if not isinstance(match_id, str) or not MATCH_ID.fullmatch(match_id):
        errors["match_id"] = "must be the id of a match from the odds list"
    market, selection, line = _market_selection_line(payload, errors)
    stake_cents = _stake(payload.get("stake_cents"), errors)
    odds = _odds(payload.get("odds"), errors)
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(match_id, str)
    return BetRequest(match_id=match_id, market=market, line=line, selection=selection,
                      stake_cents=stake_cents, odds=odds)


def bet_fingerprint(bet: BetRequest) -> str:
    """A sha256 hex digest identifying what was asked for, so a reused Idempotency-Key can be told apart.

    ``"1.760"`` and ``"1.76"`` are the same price and give the same fingerprint.
    """
    canonical = json.dumps(
        [bet.match_id, bet.market, bet.line, bet.selection, bet.stake_cents, format(bet.odds.normalize(), "f")],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
