"""Where the service's stores live: parsed connection targets, plain values with log-safe descriptions.

``config`` builds them from ``DATABASE_URL`` and ``REDIS_URL``; the adapters connect to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class PostgresTarget:
    """Where to reach Postgres (directly or through PgBouncer)."""

    host: str
    port: int
    dbname: str
    user: str | None
    password: str | None = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A log-safe description (no password)."""
        return f"postgresql://{self.user or ''}@{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class SqliteTarget:
    """The embedded SQLite database file."""

    path: str

    def describe(self) -> str:
        """A log-safe description."""
        return f"sqlite:{self.path}"


@dataclass(frozen=True)
class RedisTarget:
    """Where to reach Redis."""

    host: str
    port: int
    db: int
    password: str | None = field(repr=False)
    tls: bool = False

    def describe(self) -> str:
        """A log-safe description (no password)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"
