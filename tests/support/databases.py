"""Fresh tenantsvc ``Database`` objects for tests, on SQLite, Postgres or Postgres through PgBouncer.

Each ``DatabaseFactory.open`` builds settings with ``tenantsvc.config.load_settings`` (so tests go
through the same parsing as production) and a ``Database`` on the running reactor. Everything opened
is closed, and every Postgres database created is dropped, by ``close()``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable

BACKENDS = ("sqlite", "postgres", "pgbouncer")


def migrate(db: Any) -> Any:
    """Apply the schema migrations through ``run_interaction``; a Deferred of the versions applied."""
    from tenantsvc.adapters.db.migrations import apply_migrations_txn

    return db.run_interaction("migrate", apply_migrations_txn, db.dialect.types)


class DatabaseFactory:
    """Opens started, unmigrated ``Database`` objects on fresh databases and cleans up after the test.

    ``postgres`` and ``pgbouncer`` are callables returning the session servers, so a test that only
    uses SQLite never starts them.
    """

    def __init__(self, tmp_dir: str, postgres: Callable[[], Any], pgbouncer: Callable[[], Any]):
        self._tmp_dir = tmp_dir
        self._postgres = postgres
        self._pgbouncer = pgbouncer
        self._opened: list[Any] = []
        self._created: list[str] = []

    def new_url(self, backend: str) -> str:
        """A ``DATABASE_URL`` for a new, empty database on ``backend`` (sqlite, postgres or pgbouncer)."""
        if backend == "sqlite":
            return os.path.join(self._tmp_dir, f"tenantsvc-{uuid.uuid4().hex[:12]}.sqlite3")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        name = self._postgres().create_database()
        self._created.append(name)
        server = self._pgbouncer() if backend == "pgbouncer" else self._postgres()
        return server.database_url(name)

    def settings(self, url: str, **env: str) -> Any:
        """Validated ``Settings`` for ``url`` plus extra environment variables (e.g. DB_STATEMENT_TIMEOUT)."""
        from tenantsvc.config import load_settings

        return load_settings({"DATABASE_URL": url, **env})

    def open(self, backend: str = "sqlite", *, url: str | None = None, **env: str) -> Any:
        """A started ``Database`` on a new database of ``backend`` (or on ``url``); not migrated yet."""
        from twisted.internet import reactor

        from tenantsvc.adapters.db.pool import Database

        db = Database(self.settings(url or self.new_url(backend), **env), reactor)
        self._opened.append(db)
        return db

    def close(self) -> None:
        """Close every pool opened (joins its threads) and drop every Postgres database created."""
        opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        created, self._created = self._created, []
        for name in created:
            self._postgres().drop_database(name)
