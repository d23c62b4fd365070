"""The throwaway server fixtures work and their fault helpers do what they say."""

from __future__ import annotations

from contextlib import closing

import psycopg2
import pytest

from tests.support.processes import descendants, is_alive, process_state

pytestmark = pytest.mark.integration


def test_postgres_is_private_to_the_session(postgres_server):
    assert postgres_server.port != 5432
    rows = postgres_server.execute("SELECT current_user, inet_server_port(), current_setting('fsync')")
    assert rows == [("postgres", postgres_server.port, "off")]


def test_postgres_databases_are_created_and_dropped(postgres_server):
    name = postgres_server.create_database()
    assert postgres_server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)) == [(1,)]
    postgres_server.drop_database(name)
    assert postgres_server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)) == []


def test_pgbouncer_runs_queries_in_transaction_mode_and_keeps_set_local(pgbouncer_server, postgres_database_url):
    dbname = postgres_database_url.rsplit("/", 1)[1]
    with closing(pgbouncer_server.connect(dbname)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '1234ms'")
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("1234ms",)
            cursor.execute("SELECT inet_server_port()")
            assert cursor.fetchone() == (pgbouncer_server.postgres.port,)
        connection.commit()
    pools = [row for row in pgbouncer_server.admin("SHOW POOLS") if row["database"] == dbname]
    assert pools and pools[0]["pool_mode"] == "transaction"


def test_postgres_pause_freezes_every_process_and_resume_recovers(postgres_server):
    with closing(postgres_server.connect()) as connection:
        postgres_server.pause()
        try:
            pid = postgres_server.postmaster_pid()
            backends = [p for p in descendants(pid) if is_alive(p)]  # exited backends wait unreaped
            assert backends and {process_state(p) for p in [pid, *backends]} == {"T"}
        finally:
            postgres_server.resume()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)


def test_postgres_stop_immediate_breaks_connections_and_start_brings_it_back(postgres_server):
    connection = postgres_server.connect()
    try:
        postgres_server.stop_immediate()
        assert not postgres_server.is_running()
        with pytest.raises(psycopg2.OperationalError), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()
        if not postgres_server.is_running():
            postgres_server.start()
    assert postgres_server.execute("SELECT 1") == [(1,)]


def test_redis_stop_start_pause_resume(redis_server):
    assert redis_server.ping()
    redis_server.pause()
    try:
        assert process_state(redis_server.pid) == "T"
    finally:
        redis_server.resume()
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.ping()
    redis_server.flushall()


def test_pgbouncer_pause_stop_and_start(pgbouncer_server, postgres_database_url):
    dbname = postgres_database_url.rsplit("/", 1)[1]
    pgbouncer_server.pause()
    try:
        assert process_state(pgbouncer_server.pid) == "T"
    finally:
        pgbouncer_server.resume()
    pgbouncer_server.stop()
    with pytest.raises(psycopg2.OperationalError):
        pgbouncer_server.connect(dbname).close()
    pgbouncer_server.start()
    with closing(pgbouncer_server.connect(dbname, autocommit=True)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
