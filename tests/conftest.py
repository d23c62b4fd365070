"""Shared fixtures: throwaway servers from the system binaries, and fresh tenantsvc databases.

Session-scoped servers (started on first use, on free 127.0.0.1 ports in temp dirs, stopped at the end;
the machine's own Postgres/Redis are never touched):

- ``postgres_server`` → ``tests.support.postgres.PostgresServer``: ``host``, ``port``, ``user``,
  ``dsn(db)``, ``database_url(db)``, ``connect(db)``, ``execute(sql, params, dbname=)``,
  ``create_database() -> name``, ``drop_database(name)``; faults: ``stop_immediate()``, ``start()``,
  ``pause()`` (SIGSTOP postmaster + backends), ``resume()``.
- ``redis_server`` → ``tests.support.redis_server.RedisServer``: ``host``, ``port``, ``url``,
  ``flushall()``, ``ping()``; faults: ``stop()`` (SIGKILL), ``start()`` (same port), ``pause()``, ``resume()``.
- ``pgbouncer_server`` → ``tests.support.pgbouncer.PgBouncerServer`` (transaction pooling, every db name
  forwarded to ``postgres_server``): ``database_url(db)``, ``connect(db)``, ``admin("SHOW POOLS")``;
  faults: ``stop()``, ``start()``, ``pause()``, ``resume()`` (or ``admin("PAUSE <db>")``).
- ``production_pgbouncer`` → ``tests.support.pgbouncer.ProductionPgBouncer``: the same, running the settings
  of deploy/pgbouncer.ini (timeouts, retries, pool sizes).

Per test:

- ``postgres_database_url``: a fresh empty Postgres database's ``DATABASE_URL`` (dropped afterwards),
  e.g. for a ``twistd tenantsvc`` subprocess.
- ``database_factory`` → ``tests.support.databases.DatabaseFactory``: ``open("sqlite"|"postgres"|
  "pgbouncer", url=None, **ENV)`` returns a started, UNmigrated ``tenantsvc.adapters.db.pool.Database``
  on a new database (``url=`` to share one); ``new_url(backend)``; all closed/dropped after the test.
  ``tests.support.databases.migrate(db)`` applies migrations (a Deferred).
- ``database``: parametrized ``sqlite``/``postgres``; a started, migrated ``Database`` on a fresh database.

A test that stops or pauses a session server must bring it back (``try``/``finally``): later tests share it.
Tests are ``@pytest_twisted.ensureDeferred async def`` (or ``pytest_twisted.inlineCallbacks``) on the real
reactor. Tests using the servers are marked ``integration`` automatically (mark them explicitly too).
Tests marked ``load`` are opt-in: deselected unless the ``-m`` expression names them (``pytest -m load``).
This module must not import klein, txredisapi or ``twisted.internet.reactor`` at module scope:
pytest-twisted installs the reactor first.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import pytest_twisted

from tests.support.databases import DatabaseFactory, migrate
from tests.support.pgbouncer import PgBouncerServer, ProductionPgBouncer
from tests.support.postgres import PostgresServer
from tests.support.redis_server import RedisServer

SERVER_FIXTURES = frozenset({"postgres_server", "redis_server", "pgbouncer_server", "production_pgbouncer",
                             "postgres_database_url"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server as ``integration`` (so ``-m "not integration"`` skips them),
    and deselect the opt-in ``load`` tests unless the ``-m`` expression names them (``pytest -m load``)."""
    if "load" not in (config.getoption("markexpr") or ""):
        deselected = [item for item in items if item.get_closest_marker("load")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("load")]
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or params.get("database") == "postgres":
            item.add_marker(pytest.mark.integration)


def _running(server: Any) -> Iterator[Any]:
    """Start ``server``, hand it to the session, and close it (files included) at the end."""
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole session."""
    yield from _running(PostgresServer())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server for the whole session (call ``flushall()`` to start clean)."""
    yield from _running(RedisServer())


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server: PostgresServer) -> Iterator[PgBouncerServer]:
    """A throwaway PgBouncer (transaction pooling) in front of ``postgres_server``."""
    yield from _running(PgBouncerServer(postgres_server))


@pytest.fixture(scope="session")
def production_pgbouncer(postgres_server: PostgresServer) -> Iterator[ProductionPgBouncer]:
    """A throwaway PgBouncer running deploy/pgbouncer.ini's settings in front of ``postgres_server``."""
    yield from _running(ProductionPgBouncer(postgres_server))


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The ``DATABASE_URL`` of a new, empty Postgres database, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.database_url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def database_factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[DatabaseFactory]:
    """Opens ``Database`` objects on fresh databases; closes and drops them after the test."""
    factory = DatabaseFactory(
        str(tmp_path),
        postgres=lambda: request.getfixturevalue("postgres_server"),
        pgbouncer=lambda: request.getfixturevalue("pgbouncer_server"),
    )
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, database_factory: DatabaseFactory):
    """A started ``Database`` with migrations applied, on a fresh SQLite file or Postgres database."""
    db = database_factory.open(request.param)
    pytest_twisted.blockon(migrate(db))
    return db
