"""The database pool: ``run_interaction`` over adbapi, instrumented and safe to abandon.

Every piece of DB work is a synchronous ``fn(txn, …)`` run in a pool thread inside one transaction.
The pool counts connections in use and interactions waiting, so the circuit breaker and metrics see
real pressure, and an interaction whose caller stopped waiting before it began is never run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

from eliot import ActionType, Field, fields
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tenantsvc.adapters.db.dialects import PostgresDialect, SqliteDialect, dialect_for
from tenantsvc.adapters.db.errors import DatabaseError, InteractionAbandoned
from tenantsvc.config import Settings

T = TypeVar("T")

DB_INTERACTION = ActionType(
    "tenantsvc:db:interaction",
    fields(name=str),
    [Field.for_types("wait_ms", [float], "time waiting for a connection"),
     Field.for_types("hold_ms", [float], "time the connection was held")],
    "One transaction run on a pooled connection.",
)


@dataclass(frozen=True)
class PoolSnapshot:
    """Pool pressure at one moment."""

    size: int
    in_use: int
    waiting: int

    @property
    def usage_percent(self) -> float:
        """Connections in use as a percentage of the pool ceiling."""
        return 100.0 * self.in_use / self.size if self.size else 0.0


class Txn:
    """The cursor handed to interaction functions: dialect-neutral SQL, rows as dicts."""

    def __init__(self, cursor: Any, dialect: PostgresDialect | SqliteDialect):
        self._cursor = cursor
        self._dialect = dialect
        self.dialect = dialect.name

    def execute(self, sql: str, params: tuple | list = ()) -> "Txn":
        """Run one statement written with ``%s`` placeholders; driver errors become ours."""
        try:
            self._cursor.execute(self._dialect.adapt_sql(sql), tuple(params))
        except Exception as error:
            translated = self._dialect.translate(error)
            if translated is None:
                raise
            raise translated from error
        return self

    @property
    def rowcount(self) -> int:
        """Rows affected by the last statement."""
        return self._cursor.rowcount

    def _column_names(self) -> list[str]:
        return [column[0] for column in self._cursor.description]

    def one(self, sql: str, params: tuple | list = ()) -> dict[str, Any] | None:
        """Run a statement and return its first row as a dict, or None."""
        self.execute(sql, params)
        row = self._cursor.fetchone()
        return None if row is None else dict(zip(self._column_names(), row))

    def all(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        """Run a statement and return every row as a dict."""
        self.execute(sql, params)
        rows = self._cursor.fetchall()
        names = self._column_names() if rows else []
        return [dict(zip(names, row)) for row in rows]


class InteractionRunner(Protocol):
    """What services need from the database: run one named transaction function."""

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args, **kwargs)`` in one transaction on a pooled connection."""


class _Ticket:
    """One submitted interaction: whether its caller still waits and whether it began."""

    __slots__ = ("abandoned", "started", "submitted_at", "wait_s", "hold_s")

    def __init__(self, submitted_at: float):
        self.abandoned = False
        self.started = False
        self.submitted_at = submitted_at
        self.wait_s = 0.0
        self.hold_s = 0.0


class PendingInteraction:
    """A submitted interaction: the Deferred of its result, and a way to withdraw it while it still waits."""

    __slots__ = ("name", "deferred", "_ticket", "_lock")

    def __init__(self, name: str, deferred: Deferred, ticket: _Ticket, lock: threading.Lock):
        self.name = name
        self.deferred = deferred
        self._ticket = ticket
        self._lock = lock

    @property
    def began(self) -> bool:
        """True once a pool thread has taken the interaction (it will then run to the end)."""
        with self._lock:
            return self._ticket.started

    def withdraw(self) -> bool:
        """Withdraw the interaction if it has not begun: it will then never run, and ``deferred`` fails
        with ``CancelledError``. Returns False, changing nothing, when it already began or finished.

        The check and the withdrawal are one step under the pool lock, so there is no window in which
        a pool thread could start the interaction after it was withdrawn.
        """
        with self._lock:
            if self._ticket.started or self.deferred.called:
                return False
            self._ticket.abandoned = True
        self.deferred.cancel()
        return True


class Database:
    """An adbapi pool with counted pressure, per-name call counts and driver-neutral errors."""

    def __init__(self, settings: Settings, reactor: Any, pool_factory: Callable[..., Any] = adbapi.ConnectionPool):
        self.dialect = dialect_for(settings)
        self.process_type = settings.role
        spec = self.dialect.pool_spec()
        self.size = 1 if self.dialect.name == "sqlite" else settings.pool_max
        minimum = 1 if self.dialect.name == "sqlite" else settings.pool_min
        self._pool = pool_factory(
            spec.module,
            *spec.args,
            cp_min=minimum,
            cp_max=self.size,
            cp_reconnect=True,
            cp_noisy=False,
            cp_openfun=self.dialect.open_connection,
            cp_reactor=reactor,
            **spec.kwargs,
        )
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiting = 0
        self.calls: Counter[str] = Counter()
        self._observers: list[Callable[[str, float, float, Failure | None], None]] = []

    def snapshot(self) -> PoolSnapshot:
        """Current size, connections in use and interactions waiting for a connection."""
        with self._lock:
            return PoolSnapshot(self.size, self._in_use, self._waiting)

    def add_observer(self, observer: Callable[[str, float, float, Failure | None], None]) -> None:
        """Call ``observer(name, wait_s, hold_s, failure)`` on the reactor thread after each interaction.

        ``failure`` is None on success, else a Failure of a ``tenantsvc.adapters.db.errors`` exception
        (or of whatever the interaction function raised). An interaction that never got a connection
        reports the time until it failed as ``wait_s`` and ``0.0`` as ``hold_s``.
        """
        self._observers.append(observer)

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args, **kwargs)`` in one transaction on a pooled connection.

        The returned Deferred may be cancelled: if the interaction has not begun by then it never
        runs (``InteractionAbandoned`` inside); if it has, it completes and its result is dropped.
        Driver errors arrive as ``tenantsvc.adapters.db.errors`` exceptions.
        """
        return self.submit_interaction(name, fn, *args, **kwargs).deferred

    def submit_interaction(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> PendingInteraction:
        """Like ``run_interaction``, but return a handle that can also ``withdraw()`` the interaction
        while it is still waiting for a connection (bounded waits: see ``services.db_guard``).
        """
        self.calls[name] += 1
        ticket = _Ticket(time.perf_counter())
        with self._lock:
            self._waiting += 1
        action = DB_INTERACTION(name=name)
        with action.context():
            inner = self._pool.runInteraction(self._in_thread, ticket, name, fn, args, kwargs)

        def cancel(_: Deferred) -> None:
            ticket.abandoned = True

        outer: Deferred = Deferred(cancel)

        def finished(result: object) -> None:
            with self._lock:
                if not ticket.started:  # failed before our code ran (e.g. could not connect)
                    self._waiting -= 1
                    ticket.wait_s = time.perf_counter() - ticket.submitted_at
            failure = self._translate(result) if isinstance(result, Failure) else None
            with action.context():
                if failure is None:
                    action.addSuccessFields(wait_ms=round(ticket.wait_s * 1000, 3), hold_ms=round(ticket.hold_s * 1000, 3))
                    action.finish()
                else:
                    action.finish(failure.value)
            for observer in self._observers:
                observer(name, ticket.wait_s, ticket.hold_s, failure)
            if outer.called:
                return None
            if failure is not None:
                outer.errback(failure)
            else:
                outer.callback(result)
            return None

        inner.addBoth(finished)
        return PendingInteraction(name, outer, ticket, self._lock)

    def _translate(self, failure: Failure) -> Failure:
        """Driver errors raised outside the interaction (e.g. while connecting) become ours too."""
        if isinstance(failure.value, DatabaseError):
            return failure
        translated = self.dialect.translate(failure.value)
        return failure if translated is None else Failure(translated)

    def _in_thread(self, cursor: Any, ticket: _Ticket, name: str, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        began = time.perf_counter()
        with self._lock:
            ticket.started = True
            self._waiting -= 1
            self._in_use += 1
        ticket.wait_s = began - ticket.submitted_at
        try:
            if ticket.abandoned:
                raise InteractionAbandoned(name)
            self.dialect.begin(cursor)
            result = fn(Txn(cursor, self.dialect), *args, **kwargs)
            # Commit here rather than after we return (adbapi's own commit is then a no-op), so the COMMIT
            # round trip (a WAL flush in production) counts as holding the connection, in the hold-time
            # histogram, the in-use figure and the breaker's view of pressure; its errors translate too.
            cursor.connection.commit()
            return result
        except DatabaseError:
            raise
        except Exception as error:
            translated = self.dialect.translate(error)
            if translated is None:
                raise
            raise translated from error
        finally:
            ticket.hold_s = time.perf_counter() - began
            with self._lock:
                self._in_use -= 1

    def close(self) -> None:
        """Close every pooled connection and stop the pool's threads."""
        self._pool.close()
