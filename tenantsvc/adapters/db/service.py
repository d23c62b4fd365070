"""The database's place in the service tree: apply migrations at start (retrying with backoff), close on stop."""

from __future__ import annotations

import random
from typing import Any, Callable

from eliot import start_action, write_failure
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed

from tenantsvc.adapters.db.migrations import apply_migrations_txn
from tenantsvc.adapters.db.pool import Database
from tenantsvc.core.backoff import backoff_delay
from tenantsvc.runtime.actions import add_fields, traced

RETRY_BASE_S = 0.5
RETRY_CAP_S = 30.0


class DatabaseService(Service):
    """Migrates the schema once the DB answers; ``when_ready()`` fires after that."""

    def __init__(self, db: Database, clock: Any, random_fn: Callable[[], float] = random.random):
        self.setName("db")
        self.db = db
        self._clock = clock
        self._random = random_fn
        self._attempt = 0
        self._retry: Any = None
        self._ready = False
        self._waiters: list[Deferred] = []

    def when_ready(self) -> Deferred:
        """A Deferred that fires once migrations have been applied."""
        if self._ready:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
        return waiter

    @property
    def ready(self) -> bool:
        """True once the schema is current."""
        return self._ready

    def startService(self) -> None:
        """Begin migrating (in the background; the web tier starts regardless)."""
        super().startService()
        self._try_migrate()

    def _try_migrate(self) -> None:
        self._retry = None

        async def migrate() -> list[int]:
            applied = await self.db.run_interaction("migrate", apply_migrations_txn, self.db.dialect.types)
            add_fields(applied=applied)
            return applied

        traced(start_action(action_type="tenantsvc:db:migrate", attempt=self._attempt), migrate).addCallbacks(
            self._migrated, self._migration_failed)

    def _migrated(self, _: object) -> None:
        self._ready = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _migration_failed(self, failure: Any) -> None:
        write_failure(failure)
        if not self.running:
            return
        delay = backoff_delay(self._attempt, RETRY_BASE_S, RETRY_CAP_S, self._random)
        self._attempt += 1
        self._retry = self._clock.callLater(delay, self._try_migrate)

    def stopService(self) -> Any:
        """Stop retrying and close the pool."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self.db.close()
        return None

