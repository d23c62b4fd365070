"""Interaction functions and a gate for tests that need to hold pool connections on purpose.

``Gate`` keeps a connection inside an interaction until the test opens it; ``entered`` tells the
reactor the connection is held, so tests wait for an event rather than sleep. The ``notes`` table is
a scratch table for checking whether a write ran.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet.defer import Deferred

GATE_TIMEOUT_S = 10.0


def signal_entered(entered: Deferred) -> None:
    """From inside an interaction (a pool thread): fire ``entered`` on the reactor thread."""
    from twisted.internet import reactor

    reactor.callFromThread(entered.callback, None)


class Gate:
    """Holds a pool connection inside an interaction until ``open()``; ``entered`` fires once it is held."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.entered: Deferred = Deferred()

    def hold_txn(self, txn: Any, note: str | None = None) -> str:
        """Interaction body (test only): optionally write, signal the reactor, then block until opened."""
        if note is not None:
            insert_note_txn(txn, note)
        signal_entered(self.entered)
        if not self._event.wait(GATE_TIMEOUT_S):
            raise RuntimeError("gate was never opened")
        return "held"

    def open(self) -> None:
        """Let the held interaction finish."""
        self._event.set()


def sleep_txn(txn: Any, seconds: float) -> None:
    """Interaction body (test only, Postgres): hold the connection in ``pg_sleep``."""
    txn.execute("SELECT pg_sleep(%s)", (seconds,))


def sleep_once_entered_txn(txn: Any, entered: Deferred, seconds: float) -> None:
    """Interaction body (test only, Postgres): signal that the connection is held, then ``pg_sleep``."""
    signal_entered(entered)
    sleep_txn(txn, seconds)


def create_notes_txn(txn: Any) -> None:
    """Create the scratch ``notes`` table."""
    txn.execute("CREATE TABLE notes (note VARCHAR(20) NOT NULL)")


def insert_note_txn(txn: Any, note: str) -> None:
    """Write one note."""
    txn.execute("INSERT INTO notes (note) VALUES (%s)", (note,))


def notes_txn(txn: Any) -> list[str]:
    """Every note, sorted."""
    return [row["note"] for row in txn.all("SELECT note FROM notes ORDER BY note")]
