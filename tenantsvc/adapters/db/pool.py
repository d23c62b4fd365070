"""The database pool: ``run_interaction`` over adbapi, instrumented and safe to abandon.

Every piece of DB work is a synchronous ``fn(txn, …)`` run in a pool thread inside one transaction.
The pool counts connections in use and interactions waiting, so the circuit breaker and metrics see
real pressure, and an interaction whose caller stopped waiting before it began is never run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, TypeVar

from eliot import ActionType, Field, fields
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tenantsvc.adapters.db.connection_pool import ConnectionPool, can_replace_connection, replace_connection
from tenantsvc.adapters.db.dialects import DatabaseOptions, PostgresDialect, SqliteDialect, dialect_for
from tenantsvc.core.storage_errors import DatabaseError, InteractionAbandoned
from tenantsvc.core.peak_window import PeakWindow
from tenantsvc.runtime.deferreds import relay

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


PEAK_WINDOW_S = 60.0  # pool peaks are kept this long: longer than any sane scrape interval



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
            translated = self._dialect.translate(error, getattr(self._cursor, "connection", None))
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


def select_one_txn(txn: Txn) -> int:
    """The cheapest round trip that proves a connection works (health checks, the breaker's probes)."""
    row = txn.one("SELECT 1 AS ok")
    return int(row["ok"]) if row else 0


class InteractionRunner(Protocol):
    """What services need from the database: run one named transaction function."""

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args, **kwargs)`` in one transaction on a pooled connection."""


class _Ticket:
    """One submitted interaction: whether its caller still waits and whether it began."""

    __slots__ = ("name", "abandoned", "started", "submitted_at", "began_at", "wait_s", "hold_s", "overdue")

    def __init__(self, name: str, submitted_at: float):
        self.name = name
        self.abandoned = False
        self.started = False
        self.submitted_at = submitted_at
        self.began_at = 0.0
        self.wait_s = 0.0
        self.hold_s = 0.0
        self.overdue = False  # already reported by ``Database.overdue``


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


class _Work:
    """One submitted interaction as a pool thread runs it: ``claim()`` it, then call it with a cursor.

    ``connection_pool.ConnectionPool`` claims the work before connecting, so connecting counts as holding
    a pool slot (and can no longer be withdrawn: the caller's deadline bounds it instead). A pool that does
    not claim (the tests' threadless pool) gets the same claim when it calls the work.
    """

    __slots__ = ("_db", "_ticket", "_fn", "_args", "_kwargs")

    def __init__(self, db: "Database", ticket: _Ticket, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self._db, self._ticket, self._fn, self._args, self._kwargs = db, ticket, fn, args, kwargs

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold a pool slot for the duration of the block; ``InteractionAbandoned`` if it was withdrawn."""
        self._db._claim(self._ticket)
        try:
            yield
        finally:
            self._db._release(self._ticket)

    def __call__(self, cursor: Any) -> Any:
        """Run the interaction in one transaction on ``cursor``'s connection."""
        if self._ticket.started:
            return self._db._run(cursor, self._ticket, self._fn, self._args, self._kwargs)
        with self.claim():
            return self._db._run(cursor, self._ticket, self._fn, self._args, self._kwargs)


class Database:
    """An adbapi pool with counted pressure, per-name call counts and driver-neutral errors."""

    def __init__(self, settings: DatabaseOptions, reactor: Any, pool_factory: Callable[..., Any] = ConnectionPool):
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
        self._running: set[_Ticket] = set()
        self.calls: Counter[str] = Counter()
        # Connections found dead at the start of a transaction: replaced (the transaction then ran) or not
        # (connecting failed too). Plain ints updated under the lock, exported at scrape time.
        self.replacements: Counter[str] = Counter()
        self._observers: list[Callable[[str, float, float, Failure | None], None]] = []
        # The highest in-use and waiting counts of the last minute (core.peak_window), updated under the lock.
        self._in_use_peak = PeakWindow(PEAK_WINDOW_S)
        self._waiting_peak = PeakWindow(PEAK_WINDOW_S)

    def snapshot(self) -> PoolSnapshot:
        """Current size, connections in use and interactions waiting for a connection."""
        with self._lock:
            return PoolSnapshot(self.size, self._in_use, self._waiting)

    def peaks(self) -> PoolSnapshot:
        """The most connections in use and the most interactions waiting at any moment of the last
        ``PEAK_WINDOW_S`` seconds (now included): what a scrape-time ``snapshot`` misses between scrapes."""
        now = time.perf_counter()
        with self._lock:
            return PoolSnapshot(self.size, int(self._in_use_peak.peak(now, self._in_use)),
                                int(self._waiting_peak.peak(now, self._waiting)))

    def overdue(self, threshold_s: float) -> list[str]:
        """Names of the interactions that have now held their connection for ``threshold_s`` or more.

        Each running interaction is named at most once over its life, so a caller polling this sees
        every slow call once, while it is still running (a frozen database never lets it finish).
        """
        now = time.perf_counter()
        found = []
        with self._lock:
            for ticket in self._running:
                if not ticket.overdue and now - ticket.began_at >= threshold_s:
                    ticket.overdue = True
                    found.append(ticket.name)
        return found

    def add_observer(self, observer: Callable[[str, float, float, Failure | None], None]) -> None:
        """Call ``observer(name, wait_s, hold_s, failure)`` on the reactor thread after each interaction.

        ``failure`` is None on success, else a Failure of a ``tenantsvc.core.storage_errors`` exception
        (or of whatever the interaction function raised). ``wait_s`` is the time until a pool thread took
        the interaction, ``hold_s`` the time the thread then spent on it, connecting included (a failed
        connection attempt held a slot too); one withdrawn before any thread took it reports the time
        until then as ``wait_s`` and ``0.0`` as ``hold_s``.
        """
        self._observers.append(observer)

    def run_interaction(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        """Run ``fn(txn, *args, **kwargs)`` in one transaction on a pooled connection.

        The returned Deferred may be cancelled: if the interaction has not begun by then it never
        runs (``InteractionAbandoned`` inside); if it has, it completes and its result is dropped.
        Driver errors arrive as ``tenantsvc.core.storage_errors`` exceptions.
        """
        return self.submit_interaction(name, fn, *args, **kwargs).deferred

    def submit_interaction(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> PendingInteraction:
        """Like ``run_interaction``, but return a handle that can also ``withdraw()`` the interaction
        while it is still waiting for a connection (bounded waits: see ``services.db_guard``).
        """
        self.calls[name] += 1
        ticket = _Ticket(name, time.perf_counter())
        with self._lock:
            self._waiting += 1
            self._waiting_peak.observe(self._waiting, ticket.submitted_at)
        action = DB_INTERACTION(name=name)
        with action.context():
            inner = self._pool.runInteraction(_Work(self, ticket, fn, args, kwargs))

        def cancel(_: Deferred) -> None:
            ticket.abandoned = True

        outer: Deferred = Deferred(cancel)

        def finished(result: object) -> None:
            with self._lock:
                if not ticket.started:  # never claimed by a pool thread (withdrawn, or the pool refused it)
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
            return relay(result if failure is None else failure, outer)

        inner.addBoth(finished)
        return PendingInteraction(name, outer, ticket, self._lock)

    def _translate(self, failure: Failure) -> Failure:
        """Driver errors raised outside the interaction (e.g. while connecting) become ours too."""
        if isinstance(failure.value, DatabaseError):
            return failure
        translated = self.dialect.translate(failure.value)
        return failure if translated is None else Failure(translated)

    def _claim(self, ticket: _Ticket) -> None:
        """A pool thread takes the interaction, before connecting: from now on it holds a pool slot.

        Raises ``InteractionAbandoned`` (changing nothing) if it was withdrawn first. The check and the
        claim are one step under the lock, so a withdrawal and a claim can never both succeed.
        """
        with self._lock:
            if ticket.abandoned:
                raise InteractionAbandoned(ticket.name)
            ticket.started = True
            ticket.began_at = time.perf_counter()
            self._waiting -= 1
            self._in_use += 1
            self._in_use_peak.observe(self._in_use, ticket.began_at)
            self._running.add(ticket)
        ticket.wait_s = ticket.began_at - ticket.submitted_at

    def _release(self, ticket: _Ticket) -> None:
        """The interaction is over (committed, failed, or could not connect): its slot is free."""
        ticket.hold_s = time.perf_counter() - ticket.began_at
        with self._lock:
            self._in_use -= 1
            self._running.discard(ticket)

    def _run(self, cursor: Any, ticket: _Ticket, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        """In a pool thread, on a connection: begin, run ``fn``, commit; driver errors become ours."""
        try:
            self._begin(cursor)
            result = fn(Txn(cursor, self.dialect), *args, **kwargs)
            # Commit here rather than after we return (adbapi's own commit is then a no-op), so the COMMIT
            # round trip (a WAL flush in production) counts as holding the connection, in the hold-time
            # histogram, the in-use figure and the breaker's view of pressure; its errors translate too.
            cursor.connection.commit()
            return result
        except DatabaseError:
            raise
        except Exception as error:
            translated = self.dialect.translate(error, getattr(cursor, "connection", None))
            if translated is None:
                raise
            raise translated from error

    def _begin(self, cursor: Any) -> None:
        """Begin the transaction (its guardrails), first replacing the connection if it turns out dead.

        The first statement is where a connection that died since its last use (a database restart,
        a PgBouncer or network reset) shows up. Nothing of the transaction has run yet, so replacing the
        connection and beginning again is safe — the rule Go's database/sql applies to ``driver.ErrBadConn``
        — and the caller never sees the dead connection. Only one replacement is tried: if connecting
        fails too, the database is down and the error goes to the caller.
        """
        try:
            self.dialect.begin(cursor)
            return
        except Exception as error:
            lost = self.dialect.connection_lost(error, getattr(cursor, "connection", None))
            if not lost or not can_replace_connection(cursor):
                raise
        try:
            replace_connection(cursor)
            self.dialect.begin(cursor)
        except Exception:
            with self._lock:
                self.replacements["failed"] += 1
            raise
        with self._lock:
            self.replacements["replaced"] += 1

    def close(self) -> None:
        """Close every pooled connection and stop the pool's threads."""
        self._pool.close()
