"""deploy/pgbouncer.ini: its key settings and sizing rule, and the guardrails through a real PgBouncer
running those very settings (only the environment-specific keys are swapped for the test's)."""

from __future__ import annotations

import re
from contextlib import closing
from typing import Any

import pytest
import pytest_twisted

from tenantsvc.core.storage_errors import StatementTimeout
from tenantsvc.config import load_settings
from tests.support.pgbouncer import PRODUCTION_INI as INI
from tests.support.pgbouncer import production_config as production

SIZING_LINE = re.compile(r"^;\s*sizing\.(\w+)\s*=\s*(\d+)", re.MULTILINE)
DEFAULTS = load_settings({})


def setting(name: str) -> str:
    """One value of the [pgbouncer] section."""
    return production()["pgbouncer"][name]


def sizing() -> dict[str, int]:
    """The "; sizing.<name> = <n>" inputs written next to the pool settings."""
    return {name: int(value) for name, value in SIZING_LINE.findall(INI.read_text())}


def test_pooling_is_per_transaction_with_nothing_to_reset():
    assert setting("pool_mode") == "transaction"
    assert setting("server_reset_query") == ""


def test_startup_parameters_that_clients_send_are_ignored_rather_than_refused():
    ignored = {name.strip() for name in setting("ignore_startup_parameters").split(",")}
    assert {"extra_float_digits", "options"} <= ignored


def test_waiting_for_a_server_connection_is_short_and_bounded():
    assert 0 < int(setting("query_wait_timeout")) <= DEFAULTS.db_conn_timeout_s


def test_a_failed_server_login_is_retried_within_about_a_second():
    assert 0 < int(setting("server_login_retry")) <= 1


def test_pooler_backstops_sit_above_the_postgres_guardrails():
    assert int(setting("query_timeout")) * 1000 > DEFAULTS.db_statement_timeout_ms
    assert int(setting("idle_transaction_timeout")) * 1000 > DEFAULTS.db_idle_in_transaction_timeout_ms


def test_sizing_inputs_are_the_application_pool_ceilings():
    inputs = sizing()
    assert set(inputs) == {"web_instances", "db_web_pool_max", "worker_instances", "db_worker_pool_max",
                           "postgres_max_connections", "postgres_reserved"}
    assert (inputs["db_web_pool_max"], inputs["db_worker_pool_max"]) == (
        DEFAULTS.db_web_pool_max, DEFAULTS.db_worker_pool_max)


def test_pool_sizes_follow_the_written_sizing_rule():
    inputs = sizing()
    clients = (inputs["web_instances"] * inputs["db_web_pool_max"]
               + inputs["worker_instances"] * inputs["db_worker_pool_max"])
    server_cap = inputs["postgres_max_connections"] - inputs["postgres_reserved"]
    default_pool, reserve = int(setting("default_pool_size")), int(setting("reserve_pool_size"))
    assert default_pool == min(clients, server_cap - reserve)
    assert default_pool + reserve <= int(setting("max_db_connections")) <= server_cap
    assert int(setting("max_client_conn")) >= clients + inputs["db_web_pool_max"]


# ---- the production settings in a real pgbouncer -----------------------------------------------


def show_then_sleep_txn(txn: Any, seen: list[str]) -> None:
    """Record the transaction's statement_timeout, then sleep past it."""
    row = txn.one("SHOW statement_timeout")
    assert row is not None
    seen.append(row["statement_timeout"])
    txn.execute("SELECT pg_sleep(2)")


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_guardrails_hold_through_a_pgbouncer_running_the_production_settings(
        production_pgbouncer, database_factory):
    dbname = database_factory.new_url("postgres").rsplit("/", 1)[1]
    db = database_factory.open(url=production_pgbouncer.database_url(dbname), DB_STATEMENT_TIMEOUT="500ms")
    seen: list[str] = []
    with pytest.raises(StatementTimeout):
        await db.run_interaction("show_then_sleep", show_then_sleep_txn, seen)
    assert seen == ["500ms"]
    loaded = {row["key"]: row["value"] for row in production_pgbouncer.admin("SHOW CONFIG")}
    assert (loaded["pool_mode"], loaded["query_wait_timeout"], loaded["default_pool_size"]) == (
        "transaction", setting("query_wait_timeout"), setting("default_pool_size"))
    # SET LOCAL ended with its transaction: the next client of the pooled server connection sees the default.
    with closing(production_pgbouncer.connect(dbname, autocommit=True)) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
