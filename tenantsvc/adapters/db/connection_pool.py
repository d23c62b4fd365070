"""adbapi's connection pool, made to drop a broken connection quietly and to replace one on demand.

adbapi keeps one DB-API connection per pool thread. When a transaction fails it rolls back and, with
``cp_reconnect``, runs ``select 1`` to see whether the connection survived, logging a traceback each
time either step fails (twice for every connection that died with the database). This pool:

- rolls back a failed transaction without the extra ``select 1`` round trip: a connection that cannot
  roll back, or that psycopg2 has marked closed, is dropped from its thread (closed, forgotten) and the
  thread connects afresh next time; nothing is logged here, because the failure itself reaches the caller
  (as ``DatabaseUnavailable``) and is counted and logged there;
- claims an interaction (``claim()``) before connecting for it, so a connection attempt that hangs holds
  a counted pool slot instead of looking like a wait for one;
- lets an interaction replace its thread's connection (``replace_connection``), which
  ``tenantsvc.adapters.db.pool.Database`` does when the transaction's first statement finds the
  connection dead — nothing of the transaction ran, so beginning again on a new connection is safe.

Everything else (threads, per-thread connections, start and shutdown) is adbapi's own.
"""

from __future__ import annotations

from typing import Any

from twisted.enterprise import adbapi


class QuietConnection(adbapi.Connection):
    """adbapi's connection wrapper whose rollback never raises and never logs."""

    def rollback(self) -> None:
        """Roll back; drop the connection from its thread if it cannot, or if it turned out closed."""
        try:
            self._connection.rollback()
        except Exception:  # the connection is broken: the caller already has the transaction's own error
            self.discard()
            return
        if getattr(self._connection, "closed", 0):
            self.discard()

    def discard(self) -> None:
        """Close the underlying connection and forget it, so this thread connects afresh next time."""
        pool, raw = self._pool, self._connection
        if pool.connections.get(pool.threadID()) is raw:
            del pool.connections[pool.threadID()]
        try:
            raw.close()
        except Exception:  # closing a dead connection may fail too; it is gone either way
            pass


class ConnectionPool(adbapi.ConnectionPool):
    """``adbapi.ConnectionPool`` with ``QuietConnection`` wrappers (see the module docstring).

    An interaction that offers ``claim()`` (a context manager) is claimed by the pool thread before the
    thread connects: the interaction's owner then counts connecting as holding a pool slot, and a
    withdrawn interaction is refused before any connection is made.
    """

    connectionFactory = QuietConnection

    def _runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:  # noqa: N802 - adbapi's name
        claim = getattr(interaction, "claim", None)
        if claim is None:
            return super()._runInteraction(interaction, *args, **kw)
        with claim():
            return super()._runInteraction(interaction, *args, **kw)


def replace_connection(transaction: Any) -> None:
    """Give ``transaction`` (an ``adbapi.Transaction``, in its pool thread) a new connection and cursor.

    The old connection is closed and forgotten first. Raises the driver's error if connecting fails;
    the transaction then still holds the old (closed) connection, which the rollback drops.
    """
    transaction.reconnect()
    transaction.reopen()


def can_replace_connection(transaction: Any) -> bool:
    """True for an ``adbapi.Transaction`` (test pools hand interactions a bare cursor)."""
    return isinstance(transaction, adbapi.Transaction)
