"""The two SQL dialects: how to connect, how each transaction begins, and how driver errors translate.

SQL in tenantsvc is written once with ``%s`` placeholders; the SQLite dialect rewrites them to ``?``.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

from tenantsvc.core.storage_errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityViolation,
    StatementTimeout,
    TransactionConflict,
)
from tenantsvc.core.targets import PostgresTarget, SqliteTarget


class DatabaseOptions(Protocol):
    """The settings the DB adapter reads, and nothing more (``config.Settings`` provides them)."""

    @property
    def database(self) -> PostgresTarget | SqliteTarget: ...
    @property
    def role(self) -> str: ...
    @property
    def pool_max(self) -> int: ...
    @property
    def pool_min(self) -> int: ...
    @property
    def db_conn_timeout_s(self) -> float: ...
    @property
    def db_statement_timeout_ms(self) -> int: ...
    @property
    def db_idle_in_transaction_timeout_ms(self) -> int: ...

# Types and fragments that differ between the dialects, used by the migrations.
POSTGRES_TYPES = {
    "pk": "BIGSERIAL PRIMARY KEY",
    "ts": "TIMESTAMPTZ",
    "decimal": "NUMERIC(12,4)",
    "decimal_gt_one": "CHECK ({col} > 1)",
}
SQLITE_TYPES = {
    "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "ts": "TEXT",
    "decimal": "TEXT",  # exact decimal strings; SQLite's NUMERIC affinity would turn them into floats
    "decimal_gt_one": "CHECK (CAST({col} AS REAL) > 1)",
}


INTEGRITY_SQLSTATES = {"23505": "unique", "23514": "check", "23503": "foreign_key", "23502": "not_null"}
CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")
CONNECTION_SQLSTATES = frozenset({"53300"})
# libpq's words for a connection that broke (psycopg2 may raise them without an SQLSTATE).
CONNECTION_LOST_PHRASES = (
    "server closed the connection", "connection already closed", "terminating connection",
    "could not receive data from server", "could not send data to server", "ssl syscall error",
    "no connection to the server", "connection not open", "lost synchronization with server",
)


@dataclass(frozen=True)
class PoolSpec:
    """Arguments for ``adbapi.ConnectionPool``."""

    module: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class PostgresDialect:
    """psycopg2 behind adbapi; guardrails applied per transaction with SET LOCAL (PgBouncer-safe)."""

    name = "postgres"
    types = POSTGRES_TYPES

    def __init__(self, target: PostgresTarget, settings: DatabaseOptions):
        self._target = target
        self._settings = settings
        # Validated integers, so formatting them into SQL is safe; one round trip for both settings.
        self._guard_sql = (
            f"SET LOCAL statement_timeout = {int(settings.db_statement_timeout_ms)}; "
            f"SET LOCAL idle_in_transaction_session_timeout = {int(settings.db_idle_in_transaction_timeout_ms)}"
        )

    def pool_spec(self) -> PoolSpec:
        """Connection arguments: connect timeout, keepalives and an application name per role."""
        target = self._target
        kwargs: dict[str, Any] = dict(target.options)
        kwargs.update(
            host=target.host,
            port=target.port,
            dbname=target.dbname,
            connect_timeout=max(1, math.ceil(self._settings.db_conn_timeout_s)),
            application_name=f"tenantsvc-{self._settings.role}",
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        if target.user:
            kwargs["user"] = target.user
        if target.password:
            kwargs["password"] = target.password
        return PoolSpec("psycopg2", (), kwargs)

    def open_connection(self, connection: Any) -> None:
        """Nothing to do per connection: psycopg2 starts transactions implicitly, autocommit off."""

    def adapt_sql(self, sql: str) -> str:
        """psycopg2 takes ``%s`` placeholders as written."""
        return sql

    def begin(self, cursor: Any) -> None:
        """Apply the statement and idle-in-transaction timeouts to this transaction only."""
        cursor.execute(self._guard_sql)

    def translate(self, error: BaseException, connection: Any = None) -> DatabaseError | None:
        """Map a psycopg2 error to ours, or None when it is not a driver error we know.

        ``connection`` is the psycopg2 connection the error came from, when the caller knows it: a
        connection that psycopg2 has marked closed makes any error a connection failure.
        """
        import psycopg2

        if not isinstance(error, psycopg2.Error):
            return None
        code = getattr(error, "pgcode", None) or ""
        if code == "57014":
            return StatementTimeout("statement cancelled by statement_timeout")
        if code in INTEGRITY_SQLSTATES:
            detail = str(getattr(error, "diag", None) and error.diag.constraint_name or error).strip()
            return IntegrityViolation(INTEGRITY_SQLSTATES[code], detail)
        if self.connection_lost(error, connection):
            return DatabaseUnavailable(_first_line(error) or type(error).__name__)
        if code.startswith("40"):
            return TransactionConflict(f"transaction aborted by the database ({code}); retry")
        if isinstance(error, psycopg2.OperationalError):  # disk full, out of memory, I/O error: the DB is sick
            return DatabaseUnavailable(_first_line(error) or type(error).__name__)
        return None

    def connection_lost(self, error: BaseException, connection: Any = None) -> bool:
        """True when ``error`` means the connection is gone or unusable, whichever way psycopg2 said so.

        psycopg2 reports a lost connection as OperationalError, InterfaceError, or — when it notices only
        while reading a result — a bare DatabaseError with no SQLSTATE; the reliable signs are the
        connection's ``closed`` flag, the SQLSTATE classes 08 (connection exception), 57P (operator
        intervention: admin/crash shutdown, cannot connect now) and 53300 (too many connections), and
        libpq's own wording.
        """
        import psycopg2

        if not isinstance(error, psycopg2.Error):
            return False
        code = getattr(error, "pgcode", None) or ""
        if code.startswith(CONNECTION_SQLSTATE_PREFIXES) or code in CONNECTION_SQLSTATES:
            return True
        if isinstance(error, psycopg2.InterfaceError):
            return True
        if connection is None:
            connection = getattr(getattr(error, "cursor", None), "connection", None)
        if connection is not None and getattr(connection, "closed", False):
            return True
        if not code and isinstance(error, psycopg2.OperationalError):  # libpq: connect failed, socket broke
            return True
        message = str(error).lower()
        return any(phrase in message for phrase in CONNECTION_LOST_PHRASES)


def _first_line(error: BaseException) -> str:
    """The first line of a driver message (libpq's carry hints on the lines after)."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""


class SqliteDialect:
    """The embedded default: one SQLite file, one connection, explicit BEGIN IMMEDIATE per transaction."""

    name = "sqlite"
    types = SQLITE_TYPES
    _placeholder = re.compile(r"%s")

    def __init__(self, target: SqliteTarget, settings: DatabaseOptions):
        self._path = target.path
        self._busy_timeout_s = settings.db_conn_timeout_s

    def pool_spec(self) -> PoolSpec:
        """One connection shared through one thread: SQLite serialises writers anyway."""
        directory = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(directory, exist_ok=True)
        return PoolSpec(
            "sqlite3",
            (self._path,),
            {"check_same_thread": False, "isolation_level": None, "timeout": self._busy_timeout_s},
        )

    def open_connection(self, connection: Any) -> None:
        """Turn on foreign keys and write-ahead logging for each new connection."""
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    def adapt_sql(self, sql: str) -> str:
        """Rewrite ``%s`` placeholders to sqlite3's ``?``."""
        return self._placeholder.sub("?", sql)

    def begin(self, cursor: Any) -> None:
        """Start the transaction explicitly (autocommit connection), taking the write lock up front."""
        cursor.execute("BEGIN IMMEDIATE")

    def translate(self, error: BaseException, connection: Any = None) -> DatabaseError | None:
        """Map a sqlite3 error to ours, or None when it is not a driver error."""
        if isinstance(error, sqlite3.IntegrityError):
            message = str(error)
            for prefix, kind in (
                ("UNIQUE", "unique"),
                ("CHECK", "check"),
                ("FOREIGN KEY", "foreign_key"),
                ("NOT NULL", "not_null"),
            ):
                if message.startswith(prefix):
                    return IntegrityViolation(kind, message)
            return IntegrityViolation("unknown", message)
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return DatabaseUnavailable("database is locked")
        return None

    def connection_lost(self, error: BaseException, connection: Any = None) -> bool:
        """Never: the embedded file has no connection to lose (a locked file is not a broken connection)."""
        return False


def dialect_for(settings: DatabaseOptions) -> PostgresDialect | SqliteDialect:
    """The dialect matching ``settings.database``."""
    if isinstance(settings.database, PostgresTarget):
        return PostgresDialect(settings.database, settings)
    return SqliteDialect(settings.database, settings)
