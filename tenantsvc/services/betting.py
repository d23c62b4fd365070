"""Placing and listing a player's bets, and an operator's view and manual settlement of a tenant's bets.

The server prices every bet: the body names the price it saw (match, market, line, selection, odds) and
the placement transaction (``bet_store.place_bet_txn``) checks it against the stored price, the kick-off,
the price's age and the tenant's stake and payout limits, then debits the wallet with a conditional update
and writes the bet and its ledger row — all or nothing. An ``Idempotency-Key`` makes a retried request
return the bet it already placed; the same key with a different body is refused.
"""

from __future__ import annotations

from typing import Any, Mapping

from eliot import MessageType, fields

from tenantsvc.adapters.db import bet_store
from tenantsvc.core.storage_errors import IntegrityViolation
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.deferreds import shield
from tenantsvc.core.clock import utc_datetime
from tenantsvc.core.bets import bet_fingerprint, parse_bet_request
from tenantsvc.core.odds import odds_text
from tenantsvc.core.settlement import SETTLED_OUTCOMES
from tenantsvc.core.validation import ValidationFailed, check_text, check_unknown_fields
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.errors import Conflict, NotFoundError, Unprocessable
from tenantsvc.services.settlement import MAX_REASON_LENGTH, SETTLED_OUTCOMES_IN_ORDER, record_settlement

BET_PLACED = MessageType("tenantsvc:bets:placed", fields(tenant=str, bet_id=int, replayed=bool),
                         "A bet was accepted (or an identical retry was answered with it).")
BET_REFUSED = MessageType("tenantsvc:bets:refused", fields(tenant=str, code=str),
                          "A bet was refused by the server-side checks.")

# How each refusal is answered: 409 for "the world changed, look again" (the client may retry with the
# current price), 422 for "this bet can never be accepted as asked".
CONFLICT_CODES = frozenset({"match_started", "market_closed", "stale_price", "price_changed", "insufficient_funds"})
LIST_LIMIT_MAX = 100


class BettingService:
    """Bets of every tenant; ``reads``/``writes`` are the DB runners for each request class."""

    def __init__(self, reads: InteractionRunner, writes: InteractionRunner, clock: Any, *, max_odds_age_s: float,
                 metrics: Metrics):
        self._reads = reads
        self._writes = writes
        self._clock = clock
        self._max_odds_age_s = max_odds_age_s
        self._metrics = metrics
        zero(metrics.bets_placed, [("accepted",), ("replayed",), ("rejected",)])
        zero(metrics.bets_settled, [(outcome,) for outcome in SETTLED_OUTCOMES_IN_ORDER])  # operators settle too

    async def place(self, tenant: str, user_id: int, payload: Mapping[str, Any],
                    idempotency_key: str) -> bet_store.PlacedBet:
        """Place a single bet; ``ValidationFailed`` (422) for a bad body, ``Conflict`` (409) or
        ``Unprocessable`` (422) when the server-side checks refuse it."""
        bet = parse_bet_request(payload)
        fingerprint = bet_fingerprint(bet)
        try:
            placed = await shield(self._writes.run_interaction(
                "place_bet", bet_store.place_bet_txn, tenant, user_id, bet, idempotency_key, fingerprint,
                utc_datetime(self._clock.seconds()), self._max_odds_age_s))
        except bet_store.BetRejected as rejected:
            self._refused(tenant, rejected.code)
            raise self._as_service_error(rejected) from None
        except bet_store.IdempotencyConflict:
            self._refused(tenant, "idempotency_key_reused")
            raise Unprocessable("idempotency_key_reused",
                                "this Idempotency-Key was used for a different bet; use a new key") from None
        except IntegrityViolation as violation:
            if violation.kind != "unique":
                raise
            # An identical request won the race for this key; answer with its bet.
            placed = await self._replay_after_race(user_id, idempotency_key, fingerprint)
        self._metrics.bets_placed.labels("replayed" if placed.replayed else "accepted").inc()
        BET_PLACED.log(tenant=tenant, bet_id=int(placed.bet["id"]), replayed=placed.replayed)
        return placed

    async def list_bets(self, tenant: str, user_id: int, limit: object = None,
                        before_id: object = None) -> list[dict[str, Any]]:
        """The player's bets, newest first (``limit`` 1–100, default 50; ``before_id`` pages back)."""
        return await self._reads.run_interaction(
            "list_bets", bet_store.list_bets_txn, tenant, user_id,
            _bounded_int(limit, "limit", 50, 1, LIST_LIMIT_MAX), _optional_id(before_id))

    async def tenant_bets(self, tenant: str, status: str) -> list[dict[str, Any]]:
        """For operators: the tenant's bets with ``status`` (``review`` = pending bets waiting for a human)."""
        bets = await self._reads.run_interaction("tenant_bets", bet_store.bets_by_status_txn, tenant, status)
        if bets is None:
            raise NotFoundError(f"no tenant {tenant!r}")
        return bets

    async def settle_by_operator(self, tenant: str, bet_id: int, payload: dict[str, Any]) -> bet_store.Settlement:
        """An operator settles one bet of ``tenant`` as won, lost or void with a reason (exactly once).

        ``NotFoundError`` if the tenant has no such bet, ``Conflict("already_settled")`` if it is settled.
        """
        errors: dict[str, str] = {}
        check_unknown_fields(errors, payload, {"outcome", "reason"})
        outcome = payload.get("outcome")
        if outcome not in SETTLED_OUTCOMES:
            errors["outcome"] = "must be won, lost or void"
        reason = check_text(errors, "reason", payload.get("reason"), min_len=1, max_len=MAX_REASON_LENGTH - 8)
        if errors:
            raise ValidationFailed(errors)
        assert isinstance(outcome, str) and reason is not None
        settlement = await shield(self._writes.run_interaction(
            "settle_bet_manually", bet_store.settle_bet_txn, bet_id, outcome, "manual: " + reason, tenant))
        if not settlement.settled:
            status = await self._reads.run_interaction("bet_status", bet_store.bet_status_txn, tenant, bet_id)
            if status is None:
                raise NotFoundError(f"no bet {bet_id} in tenant {tenant!r}")
            if status == "pending":  # a settler holds it right now (SKIP LOCKED)
                raise Conflict("settlement_in_progress", f"bet {bet_id} is being settled right now; look again")
            raise Conflict("already_settled", f"bet {bet_id} is already {status}", {"status": status})
        record_settlement(self._metrics, bet_id, outcome, settlement.credited_cents, reason)
        return settlement

    async def _replay_after_race(self, user_id: int, idempotency_key: str, fingerprint: str) -> bet_store.PlacedBet:
        try:
            replay = await self._reads.run_interaction(
                "replay_bet", bet_store.replay_bet_txn, user_id, idempotency_key, fingerprint)
        except bet_store.IdempotencyConflict:
            raise Unprocessable("idempotency_key_reused",
                                "this Idempotency-Key was used for a different bet; use a new key") from None
        if replay is None:
            raise Conflict("retry", "a concurrent request with this Idempotency-Key did not complete; retry")
        return replay

    def _refused(self, tenant: str, code: str) -> None:
        self._metrics.bets_placed.labels("rejected").inc()
        BET_REFUSED.log(tenant=tenant, code=code)

    @staticmethod
    def _as_service_error(rejected: bet_store.BetRejected) -> Exception:
        extra: dict[str, Any] = {}
        if rejected.current_odds is not None:
            extra["current_odds"] = odds_text(rejected.current_odds)
        if rejected.code == "unknown_user":
            return NotFoundError(rejected.message)
        if rejected.code in CONFLICT_CODES:
            return Conflict(rejected.code, rejected.message, extra)
        return Unprocessable(rejected.code, rejected.message, extra)


def _bounded_int(value: object, name: str, default: int, low: int, high: int) -> int:
    """A query parameter as an int within [low, high]; 422 naming it otherwise."""
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit() and low <= int(value) <= high:
        return int(value)
    raise ValidationFailed({name: f"must be a whole number from {low} to {high}"})


def _optional_id(value: object) -> int | None:
    if value is None:
        return None
    return _bounded_int(value, "before_id", 0, 1, 2**62)
