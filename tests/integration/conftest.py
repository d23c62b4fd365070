"""Fixtures for fleet tests (``tests.support.fleet``): the fleet's database, the fleet itself, and a raw Redis client.

``seed_db`` is a migrated ``Database`` on the test's Postgres database, for writing behind every cache's
back; ``fleet`` an empty ``Fleet`` on that database and a flushed ``redis_server``, every instance stopped
after the test; ``raw_redis`` a blocking ``RawRedis`` on the same Redis, for a test acting as another
instance or inspecting keys. Like ``tests/conftest.py``, this module imports neither klein, txredisapi
nor the reactor at module scope.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred

from tests.support.databases import migrate
from tests.support.fleet import Fleet, RawRedis


@pytest.fixture
def seed_db(postgres_database_url: str, database_factory: Any) -> Any:
    """A ``Database`` on the fleet's database (migrated), for writing tenants behind every cache's back."""
    db = database_factory.open("postgres", url=postgres_database_url)
    pytest_twisted.blockon(migrate(db))
    return db


@pytest.fixture
def fleet(postgres_database_url: str, redis_server: Any, seed_db: Any) -> Iterator[Fleet]:
    """An empty fleet on the test's database and a flushed Redis; every instance is stopped afterwards."""
    redis_server.flushall()
    fleet = Fleet(postgres_database_url, redis_server.url)
    try:
        yield fleet
    finally:
        pytest_twisted.blockon(ensureDeferred(fleet.close()))


@pytest.fixture
def raw_redis(redis_server: Any) -> RawRedis:
    """A plain Redis client playing "another instance" (or a test looking at keys)."""
    return RawRedis(redis_server.host, redis_server.port)
