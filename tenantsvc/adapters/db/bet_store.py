"""Bet transactions: place a bet against the stored price, list bets, and settle each bet exactly once.

Each public function is a synchronous ``*_txn(txn, …)`` run by ``run_interaction``: no network, no sleep.
Money moves only through conditional updates in the same transaction as its ledger row:

- Placing re-prices the bet from the ``odds`` table (the client's odds must equal the current price) and
  debits with ``UPDATE wallets … WHERE balance_cents >= stake``, so concurrent bets can never overdraw.
  On Postgres the match and price rows are read ``FOR SHARE``: an odds save that already changed them is
  seen (and the bet refused), one that comes later waits until the bet commits. A price is fresh when its
  sport's last save (``feed_status.fetched_at``) is: saves write only the prices that changed. On SQLite
  every transaction is ``BEGIN IMMEDIATE``, so no other writer can run between the price check and the debit.
- The same (user, idempotency key) returns the first bet (``replayed``) or, with a different request
  fingerprint, ``IdempotencyConflict``. The wallet row is locked before the replay check
  (``tenant_store.lock_wallet``), so identical requests at once queue behind the first and then replay
  its bet. Should one still slip through, ``UNIQUE (user_id, idempotency_key)`` refuses its insert
  (``IntegrityViolation``, its debit rolled back with it) and the caller answers with ``replay_bet_txn``
  in a new transaction.
- Settling claims the bet (``FOR UPDATE SKIP LOCKED`` on Postgres), then flips it with
  ``UPDATE bets … WHERE id = %s AND status = 'pending'``; only the transaction that flipped it credits the
  wallet, and ``UNIQUE (bet_id, kind)`` on the ledger is the last fence against paying twice.

Timestamps and decimals are converted by the ``odds_store`` helpers (see that module).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tenantsvc.adapters.db.odds_store import (
    from_db_decimal,
    from_db_line,
    from_db_timestamp,
    to_db_decimal,
    to_db_line,
    to_db_timestamp,
)
from tenantsvc.adapters.db.pool import Txn
from tenantsvc.adapters.db.tenant_store import lock_wallet, to_iso
from tenantsvc.core.odds import BetRequest, odds_text, payout_cents

OUTCOMES = ("won", "lost", "void")
LISTABLE_STATUSES = ("review", "pending", "won", "lost", "void")
REASON_MAX_CHARS = 200  # VARCHAR(200) of review_reason / settle_reason
_CREDIT_KIND = {"won": "bet_payout", "void": "bet_refund"}

REJECTION_CODES = (
    "unknown_match", "match_started", "market_closed", "stale_price", "price_changed", "stake_too_low",
    "stake_too_high", "payout_too_high", "insufficient_funds", "unknown_user",
)

_BET_COLUMNS = (
    "b.id, b.match_id, m.sport, m.home, m.away, m.kickoff_at, b.market, b.line, b.selection, b.odds,"
    " b.stake_cents, b.potential_payout_cents, b.status, b.payout_cents, b.created_at, b.settled_at,"
    " b.user_id, b.review_reason, b.settle_reason"
)
_BET_TABLES = "bets b JOIN matches m ON m.id = b.match_id JOIN tenants t ON t.id = b.tenant_id"


def _bet_query(where: str, *, extra_columns: str = "", extra_joins: str = "") -> str:
    """A query of bets joined with their match and tenant (plus ``extra_*``), filtered by ``where``."""
    return f"SELECT {_BET_COLUMNS}{extra_columns} FROM {_BET_TABLES}{extra_joins} WHERE {where}"


class BetRejected(Exception):
    """A bet refused for a reason the player can act on; ``code`` is one of ``REJECTION_CODES``.

    ``current_odds`` is set (to the price now on offer) when ``code`` is ``price_changed``.
    """

    def __init__(self, code: str, message: str, current_odds: Decimal | None = None):
        assert code in REJECTION_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.current_odds = current_odds


class IdempotencyConflict(Exception):
    """The idempotency key was already used by this user for a different request."""


@dataclass(frozen=True)
class PlacedBet:
    """A placed (or replayed) bet as JSON, and the wallet balance right after its stake was taken."""

    bet: dict[str, Any]
    balance_cents: int
    replayed: bool


@dataclass(frozen=True)
class PendingMatch:
    """A match that has kicked off and still has pending bets."""

    match_id: str
    sport: str
    kickoff_at: datetime


@dataclass(frozen=True)
class PendingBet:
    """A pending bet as settlement needs it; ``review_reason`` is set when it already waits for review."""

    bet_id: int
    tenant: str
    user_id: int
    market: str
    line: str | None
    selection: str
    stake_cents: int
    odds: Decimal
    kickoff_at: datetime
    review_reason: str | None = None


@dataclass(frozen=True)
class Settlement:
    """What settling one bet did: ``settled`` False means someone else settled it (or it is not ours)."""

    bet_id: int
    outcome: str
    credited_cents: int
    settled: bool


# ---- rendering ---------------------------------------------------------------------------------


def bet_json(row: dict[str, Any]) -> dict[str, Any]:
    """A bet row (from a query selecting the bet, its match's sport/home/away/kickoff_at) as the player sees it."""
    return {
        "id": int(row["id"]),
        "match_id": row["match_id"],
        "sport": row["sport"],
        "home": row["home"],
        "away": row["away"],
        "kickoff": to_iso(from_db_timestamp(row["kickoff_at"])),
        "market": row["market"],
        "line": from_db_line(row["line"]),
        "selection": row["selection"],
        "odds": odds_text(from_db_decimal(row["odds"])),
        "stake_cents": int(row["stake_cents"]),
        "potential_payout_cents": int(row["potential_payout_cents"]),
        "status": row["status"],
        "payout_cents": None if row["payout_cents"] is None else int(row["payout_cents"]),
        "created_at": to_iso(row["created_at"]),
        "settled_at": to_iso(row["settled_at"]),
    }


def _admin_bet_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**bet_json(row), "user_id": int(row["user_id"]), "username": row["username"],
            "review_reason": row["review_reason"], "settle_reason": row["settle_reason"]}


def _reason(text: str) -> str:
    return text[:REASON_MAX_CHARS]


# ---- placing -----------------------------------------------------------------------------------


def _stored_bet(txn: Txn, user_id: int, idempotency_key: str) -> dict[str, Any] | None:
    return txn.one(
        _bet_query("b.user_id = %s AND b.idempotency_key = %s",
                   extra_columns=", b.request_fingerprint, l.balance_after_cents",
                   extra_joins=" JOIN ledger l ON l.bet_id = b.id AND l.kind = 'bet_stake'"),
        (user_id, idempotency_key),
    )


def replay_bet_txn(txn: Txn, user_id: int, idempotency_key: str, fingerprint: str) -> PlacedBet | None:
    """The bet already placed by this user under ``idempotency_key`` (``replayed=True``), or None.

    Raises ``IdempotencyConflict`` when that bet was placed by a request with another fingerprint.
    """
    row = _stored_bet(txn, user_id, idempotency_key)
    if row is None:
        return None
    if row["request_fingerprint"].rstrip() != fingerprint.rstrip():  # CHAR(64) comes back space-padded
        raise IdempotencyConflict(f"idempotency key {idempotency_key!r} was used for a different bet")
    return PlacedBet(bet_json(row), int(row["balance_after_cents"]), replayed=True)


def _lock_clause(txn: Txn, of: str = "") -> str:
    """``FOR SHARE`` (of the rows of table alias ``of`` only, when given) on Postgres; nothing on SQLite."""
    if txn.dialect != "postgres":
        return ""
    return f" FOR SHARE OF {of}" if of else " FOR SHARE"


def _player(txn: Txn, slug: str, user_id: int) -> dict[str, Any]:
    row = txn.one(
        "SELECT u.tenant_id, t.min_stake_cents, t.max_stake_cents, t.max_payout_cents"
        " FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " WHERE t.slug = %s AND u.id = %s AND u.is_active = TRUE AND t.is_active = TRUE",
        (slug, user_id),
    )
    if row is None:
        raise BetRejected("unknown_user", "no such active player in this sportsbook")
    return row


def _open_match(txn: Txn, match_id: str, now: datetime) -> dict[str, Any]:
    match = txn.one(f"SELECT id, kickoff_at FROM matches WHERE id = %s{_lock_clause(txn)}", (match_id,))
    if match is None:
        raise BetRejected("unknown_match", "no such match")
    if from_db_timestamp(match["kickoff_at"]) <= now:
        raise BetRejected("match_started", "the match has already started")
    return match


def _current_price(txn: Txn, bet: BetRequest, now: datetime, max_odds_age_s: float) -> Decimal:
    """The price on offer for ``bet``, confirmed by its sport's last save no more than ``max_odds_age_s`` ago.

    A save writes only the prices that changed, so a price row's own ``updated_at`` says nothing about
    freshness; the feed confirmed every unsuspended price of a sport at its ``feed_status.fetched_at``
    (a price it stopped offering was suspended in that same save). The price row is read ``FOR SHARE``
    on Postgres; ``feed_status`` is not locked: it only moves forward, and a save takes its row lock for
    its whole transaction, so locking it would make every bet of the sport wait for each save (and each
    save for every bet). Reading the committed ``fetched_at`` can only be older than the one a concurrent
    save is writing, so at worst a bet is refused as stale; whether the price is still offered is on the
    locked price row itself.
    """
    row = txn.one(
        "SELECT o.price, o.suspended, f.fetched_at FROM odds o JOIN matches m ON m.id = o.match_id"
        " LEFT JOIN feed_status f ON f.sport = m.sport"
        " WHERE o.match_id = %s AND o.market = %s AND o.line = %s AND o.selection = %s"
        f"{_lock_clause(txn, of='o')}",
        (bet.match_id, bet.market, to_db_line(bet.line), bet.selection),
    )
    if row is None or row["suspended"]:
        raise BetRejected("market_closed", "this selection is not on offer")
    if row["fetched_at"] is None or from_db_timestamp(row["fetched_at"]) < now - timedelta(seconds=max_odds_age_s):
        raise BetRejected("stale_price", "the price is out of date; try again shortly")
    price = from_db_decimal(row["price"])
    if bet.odds != price:
        raise BetRejected("price_changed", f"the price is now {odds_text(price)}", current_odds=price)
    return price


def _check_limits(player: dict[str, Any], stake_cents: int, price: Decimal) -> int:
    """The bet's potential payout, once its stake and payout are within the tenant's limits."""
    if stake_cents < int(player["min_stake_cents"]):
        raise BetRejected("stake_too_low", f"the minimum stake is {int(player['min_stake_cents'])} cents")
    if stake_cents > int(player["max_stake_cents"]):
        raise BetRejected("stake_too_high", f"the maximum stake is {int(player['max_stake_cents'])} cents")
    payout = payout_cents(stake_cents, price)
    if payout > int(player["max_payout_cents"]):
        raise BetRejected("payout_too_high", f"the maximum payout is {int(player['max_payout_cents'])} cents")
    return payout


def _debit(txn: Txn, user_id: int, tenant_id: int, stake_cents: int) -> int:
    """Take the stake if the balance covers it; the balance after, else ``insufficient_funds``."""
    wallet = txn.one(
        "UPDATE wallets SET balance_cents = balance_cents - %s, updated_at = CURRENT_TIMESTAMP"
        " WHERE user_id = %s AND tenant_id = %s AND balance_cents >= %s RETURNING balance_cents",
        (stake_cents, user_id, tenant_id, stake_cents),
    )
    if wallet is None:
        raise BetRejected("insufficient_funds", "the balance does not cover the stake")
    return int(wallet["balance_cents"])


def _bet_by_id(txn: Txn, bet_id: int) -> dict[str, Any]:
    row = txn.one(_bet_query("b.id = %s"), (bet_id,))
    assert row is not None
    return row


def _insert_bet(txn: Txn, player: dict[str, Any], user_id: int, bet: BetRequest, price: Decimal, payout: int,
                idempotency_key: str, fingerprint: str, now: datetime) -> int:
    row = txn.one(
        "INSERT INTO bets (tenant_id, user_id, match_id, market, line, selection, odds, stake_cents,"
        " potential_payout_cents, idempotency_key, request_fingerprint, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (player["tenant_id"], user_id, bet.match_id, bet.market, to_db_line(bet.line), bet.selection,
         to_db_decimal(txn, price), bet.stake_cents, payout, idempotency_key, fingerprint,
         to_db_timestamp(txn, now)),
    )
    assert row is not None
    return int(row["id"])


def _write_ledger(txn: Txn, tenant_id: int, user_id: int, bet_id: int, kind: str, amount_cents: int,
                  balance_after: int, reason: str) -> None:
    txn.execute(
        "INSERT INTO ledger (tenant_id, user_id, bet_id, kind, amount_cents, balance_before_cents,"
        " balance_after_cents, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, user_id, bet_id, kind, amount_cents, balance_after - amount_cents, balance_after, reason),
    )


def place_bet_txn(txn: Txn, slug: str, user_id: int, bet: BetRequest, idempotency_key: str, fingerprint: str,
                  now: datetime, max_odds_age_s: float) -> PlacedBet:
    """Place a single bet at the stored price, or replay the one placed under ``idempotency_key``.

    Checks, in order: player in tenant ``slug`` (``unknown_user``); replay (``IdempotencyConflict`` on a
    different fingerprint); match exists and kicks off after ``now``; the price exists, is not suspended
    and its sport was last saved within ``max_odds_age_s`` (``stale_price``); ``bet.odds`` equals it; stake
    and payout within the tenant's limits; the balance covers the stake (conditional debit). Then the pending
    bet and its ``bet_stake`` ledger row are written. Refusals raise ``BetRejected`` and write nothing. A concurrent identical request
    can make the bet insert raise ``IntegrityViolation`` (unique): use ``replay_bet_txn`` in a new transaction.
    """
    player = _player(txn, slug, user_id)
    lock_wallet(txn, user_id)  # same-key requests queue here, and each later one replays the first
    replayed = replay_bet_txn(txn, user_id, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed
    _open_match(txn, bet.match_id, now)
    price = _current_price(txn, bet, now, max_odds_age_s)
    payout = _check_limits(player, bet.stake_cents, price)
    balance = _debit(txn, user_id, player["tenant_id"], bet.stake_cents)
    bet_id = _insert_bet(txn, player, user_id, bet, price, payout, idempotency_key, fingerprint, now)
    _write_ledger(txn, player["tenant_id"], user_id, bet_id, "bet_stake", -bet.stake_cents, balance, "bet placed")
    return PlacedBet(bet_json(_bet_by_id(txn, bet_id)), balance, replayed=False)


# ---- listing -----------------------------------------------------------------------------------


def list_bets_txn(txn: Txn, slug: str, user_id: int, limit: int = 50,
                  before_id: int | None = None) -> list[dict[str, Any]]:
    """A player's bets in tenant ``slug``, newest first; ``before_id`` pages to bets older than that id."""
    where, params = "t.slug = %s AND b.user_id = %s", [slug, user_id]
    if before_id is not None:
        where, params = f"{where} AND b.id < %s", [*params, before_id]
    rows = txn.all(f"{_bet_query(where)} ORDER BY b.id DESC LIMIT %s", (*params, limit))
    return [bet_json(row) for row in rows]


def bets_by_status_txn(txn: Txn, slug: str, status: str, limit: int = 200) -> list[dict[str, Any]] | None:
    """Tenant ``slug``'s bets in ``status``, newest first, with ``user_id``, ``username``, ``review_reason``
    and ``settle_reason``; None if there is no such tenant. ``"review"`` is pending bets waiting for review,
    ``"pending"`` the other pending ones.
    """
    if status not in LISTABLE_STATUSES:
        raise ValueError(f"unknown bet status {status!r}")
    if txn.one("SELECT id FROM tenants WHERE slug = %s", (slug,)) is None:
        return None
    condition = {
        "review": "b.status = 'pending' AND b.review_reason IS NOT NULL",
        "pending": "b.status = 'pending' AND b.review_reason IS NULL",
    }.get(status, "b.status = %s")
    params: tuple[Any, ...] = (slug,) if status in ("review", "pending") else (slug, status)
    query = _bet_query(f"t.slug = %s AND {condition}", extra_columns=", u.username",
                       extra_joins=" JOIN users u ON u.id = b.user_id")
    rows = txn.all(f"{query} ORDER BY b.id DESC LIMIT %s", (*params, limit))
    return [_admin_bet_json(row) for row in rows]


def bet_status_txn(txn: Txn, slug: str, bet_id: int) -> str | None:
    """The status (pending, won, lost, void) of bet ``bet_id`` of tenant ``slug``, or None if it has no such bet."""
    row = txn.one("SELECT b.status FROM bets b JOIN tenants t ON t.id = b.tenant_id WHERE t.slug = %s AND b.id = %s",
                  (slug, bet_id))
    return None if row is None else row["status"]


# ---- settlement --------------------------------------------------------------------------------


def matches_with_pending_bets_txn(txn: Txn, now: datetime, limit: int = 500) -> list[PendingMatch]:
    """Matches that kicked off at or before ``now`` and still have pending bets, oldest kickoff first."""
    rows = txn.all(
        "SELECT id, sport, kickoff_at FROM matches"
        " WHERE id IN (SELECT match_id FROM bets WHERE status = 'pending') AND kickoff_at <= %s"
        " ORDER BY kickoff_at, id LIMIT %s",
        (to_db_timestamp(txn, now), limit),
    )
    return [PendingMatch(row["id"], row["sport"], from_db_timestamp(row["kickoff_at"])) for row in rows]


def pending_bets_txn(txn: Txn, match_id: str) -> list[PendingBet]:
    """Every pending bet on ``match_id`` (those waiting for review included), oldest first."""
    rows = txn.all(
        "SELECT b.id, t.slug, b.user_id, b.market, b.line, b.selection, b.stake_cents, b.odds, m.kickoff_at,"
        " b.review_reason FROM bets b JOIN tenants t ON t.id = b.tenant_id JOIN matches m ON m.id = b.match_id"
        " WHERE b.match_id = %s AND b.status = 'pending' ORDER BY b.id",
        (match_id,),
    )
    return [
        PendingBet(int(row["id"]), row["slug"], int(row["user_id"]), row["market"], from_db_line(row["line"]),
                   row["selection"], int(row["stake_cents"]), from_db_decimal(row["odds"]),
                   from_db_timestamp(row["kickoff_at"]), row["review_reason"])
        for row in rows
    ]


def _claim(txn: Txn, bet_id: int, tenant: str | None) -> dict[str, Any] | None:
    """The pending bet, row-locked on Postgres (skipped if another settler holds it), else None."""
    tenant_filter = "" if tenant is None else " AND b.tenant_id = (SELECT id FROM tenants WHERE slug = %s)"
    lock = " FOR UPDATE SKIP LOCKED" if txn.dialect == "postgres" else ""
    params = (bet_id,) if tenant is None else (bet_id, tenant)
    return txn.one(
        "SELECT b.id, b.tenant_id, b.user_id, b.stake_cents, b.potential_payout_cents FROM bets b"
        f" WHERE b.id = %s AND b.status = 'pending'{tenant_filter}{lock}",
        params,
    )


def _credit_for(outcome: str, bet: dict[str, Any]) -> int:
    if outcome == "won":
        return int(bet["potential_payout_cents"])
    if outcome == "void":
        return int(bet["stake_cents"])
    return 0


def _credit(txn: Txn, bet: dict[str, Any], outcome: str, amount_cents: int, reason: str) -> None:
    wallet = txn.one(
        "UPDATE wallets SET balance_cents = balance_cents + %s, updated_at = CURRENT_TIMESTAMP"
        " WHERE user_id = %s RETURNING balance_cents",
        (amount_cents, bet["user_id"]),
    )
    assert wallet is not None
    _write_ledger(txn, int(bet["tenant_id"]), int(bet["user_id"]), int(bet["id"]), _CREDIT_KIND[outcome],
                  amount_cents, int(wallet["balance_cents"]), reason)


def settle_bet_txn(txn: Txn, bet_id: int, outcome: str, reason: str, tenant: str | None = None) -> Settlement:
    """Settle a pending bet as ``won`` (credit its potential payout), ``lost`` (nothing) or ``void`` (refund).

    Exactly once: a bet that is not pending, is held by another settler, or (with ``tenant``) belongs to
    another tenant gives ``settled=False`` and changes nothing. ``reason`` is stored as ``settle_reason``
    and any ``review_reason`` is cleared.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    claimed = _claim(txn, bet_id, tenant)
    if claimed is None:
        return Settlement(bet_id, outcome, 0, settled=False)
    credit = _credit_for(outcome, claimed)
    txn.execute(
        "UPDATE bets SET status = %s, payout_cents = %s, settled_at = CURRENT_TIMESTAMP, settle_reason = %s,"
        " review_reason = NULL WHERE id = %s AND status = 'pending'",
        (outcome, credit, _reason(reason), bet_id),
    )
    if txn.rowcount != 1:
        return Settlement(bet_id, outcome, 0, settled=False)
    if credit > 0:
        _credit(txn, claimed, outcome, credit, _reason(reason))
    return Settlement(bet_id, outcome, credit, settled=True)


def mark_review_txn(txn: Txn, bet_id: int, reason: str) -> bool:
    """Flag a pending bet as waiting for review with ``reason`` (it stays pending).

    True when the bet is newly marked (or its reason changed); False when it is not pending or already
    waits for review for this same reason, so a settler judging it again each cycle counts it once.
    """
    reason = _reason(reason)
    txn.execute(
        "UPDATE bets SET review_reason = %s WHERE id = %s AND status = 'pending'"
        " AND (review_reason IS NULL OR review_reason <> %s)",
        (reason, bet_id, reason),
    )
    return txn.rowcount == 1
