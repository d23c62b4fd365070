"""Storage errors in the service's own terms, independent of the driver (psycopg2 or sqlite3).

The DB adapter raises them; services, web and obs classify them; they are plain exceptions, so they live in core.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error the DB adapter raises."""


class DatabaseUnavailable(DatabaseError):
    """The database could not be reached, or the connection broke mid-transaction."""


class TransactionConflict(DatabaseError):
    """Postgres aborted the transaction to resolve a conflict (deadlock 40P01, serialization failure 40001).

    The database answered and nothing was applied: the request may simply be retried.
    """


class StatementTimeout(DatabaseError):
    """Postgres cancelled a statement that ran past ``statement_timeout`` (SQLSTATE 57014)."""


class InteractionAbandoned(DatabaseError):
    """The caller stopped waiting before the interaction began, so it was never run."""


class IntegrityViolation(DatabaseError):
    """A constraint refused the write; ``kind`` is unique, check, foreign_key or not_null."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind} violation: {detail}")
        self.kind = kind
        self.detail = detail

    def involves(self, name: str) -> bool:
        """True when the violated constraint or column mentions ``name``."""
        return name in self.detail
