"""Versioned schema migrations for both dialects, applied at start-up and safe to run repeatedly.

Each migration is SQL with ``{pk}``/``{ts}``/``{decimal}`` holes filled per dialect. All pending
migrations run in one transaction; on Postgres an advisory lock keeps concurrent instances from
racing, on SQLite ``BEGIN IMMEDIATE`` does the same.
"""

from __future__ import annotations

from typing import Sequence

from tenantsvc.adapters.db.pool import Txn

MIGRATION_LOCK_KEY = 7_263_514_001
MIGRATION_STATEMENT_TIMEOUT_MS = 60_000

LEDGER_KINDS = ("opening_balance", "admin_credit", "admin_debit", "bet_stake", "bet_payout", "bet_refund")
BET_STATUSES = ("pending", "won", "lost", "void")


def _in_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "tenants, themes, users, wallets, ledger, matches, odds, bets",
        [
            """CREATE TABLE tenants (
                id {pk},
                slug VARCHAR(63) NOT NULL UNIQUE,
                name VARCHAR(100) NOT NULL,
                is_active BOOLEAN NOT NULL DEFAULT TRUE,
                default_user_balance_cents BIGINT NOT NULL DEFAULT 100000 CHECK (default_user_balance_cents >= 0),
                min_stake_cents BIGINT NOT NULL DEFAULT 100 CHECK (min_stake_cents > 0),
                max_stake_cents BIGINT NOT NULL DEFAULT 1000000 CHECK (max_stake_cents >= min_stake_cents),
                max_payout_cents BIGINT NOT NULL DEFAULT 10000000 CHECK (max_payout_cents > 0),
                created_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP,
                updated_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP
            )""",
            """CREATE TABLE themes (
                tenant_id BIGINT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
                primary_color CHAR(7) NOT NULL,
                secondary_color CHAR(7) NOT NULL,
                accent_color CHAR(7) NOT NULL,
                background_color CHAR(7) NOT NULL,
                text_color CHAR(7) NOT NULL,
                font_family VARCHAR(100) NOT NULL,
                layout_style VARCHAR(16) NOT NULL,
                button_style VARCHAR(16) NOT NULL,
                card_style VARCHAR(16) NOT NULL,
                logo_type VARCHAR(16) NOT NULL,
                logo_url VARCHAR(2048) NOT NULL DEFAULT '',
                sportsbook_name VARCHAR(100) NOT NULL,
                updated_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP
            )""",
            """CREATE TABLE users (
                id {pk},
                tenant_id BIGINT NOT NULL REFERENCES tenants(id),
                username VARCHAR(32) NOT NULL,
                password_hash TEXT NOT NULL,
                is_active BOOLEAN NOT NULL DEFAULT TRUE,
                created_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP,
                last_login_at {ts},
                UNIQUE (tenant_id, username)
            )""",
            """CREATE TABLE wallets (
                user_id BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
                tenant_id BIGINT NOT NULL REFERENCES tenants(id),
                balance_cents BIGINT NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
                updated_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP
            )""",
            """CREATE TABLE matches (
                id VARCHAR(64) PRIMARY KEY,
                sport VARCHAR(32) NOT NULL,
                league VARCHAR(200) NOT NULL,
                home VARCHAR(200) NOT NULL,
                away VARCHAR(200) NOT NULL,
                kickoff_at {ts} NOT NULL,
                status VARCHAR(32) NOT NULL,
                updated_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP
            )""",
            "CREATE INDEX matches_sport_kickoff ON matches (sport, kickoff_at)",
            """CREATE TABLE odds (
                match_id VARCHAR(64) NOT NULL REFERENCES matches(id) ON DELETE CASCADE,
                market VARCHAR(32) NOT NULL,
                line VARCHAR(16) NOT NULL DEFAULT '',
                selection VARCHAR(32) NOT NULL,
                price {decimal} NOT NULL {price_check},
                suspended BOOLEAN NOT NULL DEFAULT FALSE,
                updated_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP,
                PRIMARY KEY (match_id, market, line, selection)
            )""",
            """CREATE TABLE bets (
                id {pk},
                tenant_id BIGINT NOT NULL REFERENCES tenants(id),
                user_id BIGINT NOT NULL REFERENCES users(id),
                match_id VARCHAR(64) NOT NULL REFERENCES matches(id),
                market VARCHAR(32) NOT NULL,
                line VARCHAR(16) NOT NULL DEFAULT '',
                selection VARCHAR(32) NOT NULL,
                odds {decimal} NOT NULL {odds_check},
                stake_cents BIGINT NOT NULL CHECK (stake_cents > 0),
                potential_payout_cents BIGINT NOT NULL CHECK (potential_payout_cents >= stake_cents),
                status VARCHAR(16) NOT NULL DEFAULT 'pending' CHECK (status IN ({bet_statuses})),
                payout_cents BIGINT CHECK (payout_cents >= 0),
                idempotency_key VARCHAR(128) NOT NULL,
                request_fingerprint CHAR(64) NOT NULL,
                created_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP,
                settled_at {ts},
                UNIQUE (user_id, idempotency_key)
            )""",
            "CREATE INDEX bets_status_match ON bets (status, match_id)",
            "CREATE INDEX bets_user_created ON bets (user_id, created_at)",
            """CREATE TABLE ledger (
                id {pk},
                tenant_id BIGINT NOT NULL REFERENCES tenants(id),
                user_id BIGINT NOT NULL REFERENCES users(id),
                bet_id BIGINT REFERENCES bets(id),
                kind VARCHAR(32) NOT NULL CHECK (kind IN ({ledger_kinds})),
                amount_cents BIGINT NOT NULL,
                balance_before_cents BIGINT NOT NULL,
                balance_after_cents BIGINT NOT NULL CHECK (balance_after_cents = balance_before_cents + amount_cents),
                reason VARCHAR(200),
                idempotency_key VARCHAR(128),
                created_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP,
                UNIQUE (bet_id, kind),
                UNIQUE (user_id, idempotency_key)
            )""",
            "CREATE INDEX ledger_user ON ledger (user_id, id)",
        ],
    ),
    (
        2,
        "bet review and settle reasons, feed status, settlement and bet-listing indexes",
        [
            # NULL = not waiting for review; set by the settlement worker on a pending bet it cannot judge.
            "ALTER TABLE bets ADD COLUMN review_reason VARCHAR(200)",
            # Why a bet was settled (result text, "manual: …"); NULL while pending.
            "ALTER TABLE bets ADD COLUMN settle_reason VARCHAR(200)",
            """CREATE TABLE feed_status (
                sport VARCHAR(32) PRIMARY KEY,
                fetched_at {ts} NOT NULL,
                feed_ts BIGINT NOT NULL
            )""",
            # "Matches with pending bets" reads only the (few) pending bets, never the settled history.
            "CREATE INDEX bets_pending_match ON bets (match_id) WHERE status = 'pending'",
            # A player's bets newest first, paged by id (list_bets_txn's keyset pagination).
            "CREATE INDEX bets_user_id ON bets (user_id, id)",
            # Admin listings of one tenant's bets by status (review queue, pending, settled).
            "CREATE INDEX bets_tenant_status ON bets (tenant_id, status, id)",
        ],
    ),
]


def render(statement: str, types: dict[str, str]) -> str:
    """Fill a migration statement's dialect holes."""
    return statement.format(
        pk=types["pk"],
        ts=types["ts"],
        decimal=types["decimal"],
        price_check=types["decimal_gt_one"].format(col="price"),
        odds_check=types["decimal_gt_one"].format(col="odds"),
        bet_statuses=_in_list(BET_STATUSES),
        ledger_kinds=_in_list(LEDGER_KINDS),
    )


def apply_migrations_txn(txn: Txn, types: dict[str, str]) -> list[int]:
    """Apply every migration not yet recorded in ``schema_migrations``; return the versions applied."""
    if txn.dialect == "postgres":
        txn.execute(f"SET LOCAL statement_timeout = {MIGRATION_STATEMENT_TIMEOUT_MS}")
        txn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
    txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL,"
        f" applied_at {types['ts']} NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    done = {row["version"] for row in txn.all("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            txn.execute(render(statement, types))
        txn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        applied.append(version)
    return applied
