"""Lost connections on a real Postgres: how each is reported, and how the pool gets working connections back.

The server closes connections under the pool in every way it can — ``pg_terminate_backend`` between
transactions, in the middle of one and just before its COMMIT, a backend terminating itself, a crash
restart (``pg_ctl stop -m immediate``) with every pooled connection open, a stop with the database down.
Each error must arrive as ``DatabaseUnavailable`` (a 503, never a 500), and a connection that died since
its last use must be replaced at the start of the next transaction, before any of its work runs, so the
caller never sees it. Through PgBouncer the same restart must leave every client connection usable.

A test that stops the session's Postgres brings it back in ``finally``.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread

from tenantsvc.core.storage_errors import DatabaseUnavailable
from tests.support.interactions import Gate, create_notes_txn, insert_note_txn, notes_txn
from tests.support.postgres import quote_ident
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def backend_pid_txn(txn: Any) -> int:
    """The server process serving this connection."""
    return int(txn.one("SELECT pg_backend_pid() AS pid")["pid"])


def pid_then_hold_txn(txn: Any, gate: Gate, seen: list[int] | None = None) -> int:
    """Read the backend pid (into ``seen``), hold the connection until the gate opens, then run one more
    statement."""
    pid = backend_pid_txn(txn)
    if seen is not None:
        seen.append(pid)
    gate.hold_txn(txn)
    txn.execute("SELECT 1")
    return pid


def note_then_hold_txn(txn: Any, gate: Gate, note: str) -> None:
    """Write a note, then hold until the gate opens; the COMMIT comes right after."""
    gate.hold_txn(txn, note)


def terminate_self_txn(txn: Any) -> None:
    """The backend terminates itself (SQLSTATE 57P01 admin_shutdown for its own statement)."""
    txn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def terminate(postgres_server: Any, pid: int) -> None:
    """Terminate one backend from outside, as an operator (or a failover) would."""
    postgres_server.execute("SELECT pg_terminate_backend(%s)", (pid,))


def backend_alive(postgres_server: Any, pid: int) -> bool:
    return bool(postgres_server.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


def restore(postgres_server: Any) -> None:
    if not postgres_server.is_running():
        postgres_server.start()


async def pids_of_every_thread(db: Any, count: int) -> list[int]:
    """Run ``count`` interactions at once, each held until all are in: one per pool thread (and connection)."""
    gates = [Gate() for _ in range(count)]
    held = [db.run_interaction("hold", pid_then_hold_txn, gate) for gate in gates]
    try:
        await gatherResults([gate.entered for gate in gates])
    finally:
        for gate in gates:
            gate.open()
    return await gatherResults(held)


def durable_url(postgres_server: Any, database_factory: Any, backend: str = "postgres") -> str:
    """A new database whose commits survive a crash stop (the session cluster trades durability for speed)."""
    url = database_factory.new_url(backend)
    postgres_server.execute(f"ALTER DATABASE {quote_ident(url.rsplit('/', 1)[1])} SET synchronous_commit = on")
    return url


@pytest.fixture
def pool_of_one(postgres_server, database_factory) -> Any:
    db = database_factory.open(url=durable_url(postgres_server, database_factory), DB_WEB_POOL_MAX="1",
                               DB_POOL_MIN="1")
    pytest_twisted.blockon(db.run_interaction("create_notes", create_notes_txn))
    return db


@pytest_twisted.ensureDeferred
async def test_a_connection_the_server_closed_is_replaced_before_the_next_transaction_runs(postgres_server,
                                                                                          pool_of_one):
    db = pool_of_one
    first = await db.run_interaction("pid", backend_pid_txn)
    terminate(postgres_server, first)
    await eventually(lambda: not backend_alive(postgres_server, first), within_s=5, what="the backend to exit")
    second = await db.run_interaction("pid", backend_pid_txn)
    assert second != first
    assert db.replacements == {"replaced": 1}


@pytest_twisted.ensureDeferred
async def test_a_connection_lost_midway_is_unavailable_and_dropped(postgres_server, pool_of_one):
    db, gate, seen = pool_of_one, Gate(), []
    running = db.run_interaction("lost_midway", pid_then_hold_txn, gate, seen)
    await gate.entered
    (pid,) = seen
    terminate(postgres_server, pid)
    await eventually(lambda: not backend_alive(postgres_server, pid), within_s=5, what="the backend to exit")
    gate.open()
    with pytest.raises(DatabaseUnavailable):
        await running
    assert await db.run_interaction("pid", backend_pid_txn) != pid
    assert db.replacements == {}  # the rollback dropped it: the next transaction connected afresh


@pytest_twisted.ensureDeferred
async def test_a_connection_lost_before_commit_is_unavailable_and_nothing_is_kept(postgres_server, pool_of_one):
    db, gate = pool_of_one, Gate()
    pid = await db.run_interaction("pid", backend_pid_txn)
    running = db.run_interaction("lost_at_commit", note_then_hold_txn, gate, "lost")
    await gate.entered
    terminate(postgres_server, pid)
    await eventually(lambda: not backend_alive(postgres_server, pid), within_s=5, what="the backend to exit")
    gate.open()
    with pytest.raises(DatabaseUnavailable):
        await running
    assert await db.run_interaction("notes", notes_txn) == []


@pytest_twisted.ensureDeferred
async def test_a_backend_terminated_by_an_administrator_is_unavailable(pool_of_one):
    with pytest.raises(DatabaseUnavailable):
        await pool_of_one.run_interaction("terminate_self", terminate_self_txn)
    await pool_of_one.run_interaction("note", insert_note_txn, "after")
    assert await pool_of_one.run_interaction("notes", notes_txn) == ["after"]


@pytest_twisted.ensureDeferred
async def test_with_the_database_down_a_dead_connection_is_unavailable_and_works_again_once_it_is_up(
        postgres_server, pool_of_one):
    db = pool_of_one
    await db.run_interaction("pid", backend_pid_txn)
    try:
        await deferToThread(postgres_server.stop_immediate)
        with pytest.raises(DatabaseUnavailable):
            await db.run_interaction("note", insert_note_txn, "while down")
        assert db.replacements == {"failed": 1}
    finally:
        await deferToThread(restore, postgres_server)
    await db.run_interaction("note", insert_note_txn, "after")
    assert await db.run_interaction("notes", notes_txn) == ["after"]


@pytest.mark.parametrize("backend", ["postgres", "pgbouncer"])
@pytest_twisted.ensureDeferred
async def test_after_a_crash_restart_every_pooled_connection_works_again_without_an_error(
        postgres_server, database_factory, backend):
    size = 6
    db = database_factory.open(url=durable_url(postgres_server, database_factory, backend),
                               DB_WEB_POOL_MAX=str(size), DB_POOL_MIN=str(size))
    before = await pids_of_every_thread(db, size)
    assert len(set(before)) == size or backend == "pgbouncer"
    try:
        await deferToThread(postgres_server.stop_immediate)
        await deferToThread(postgres_server.start)
    finally:
        await deferToThread(restore, postgres_server)
    after = await pids_of_every_thread(db, size)  # every thread's connection died with the server
    assert not set(after) & set(before)
    if backend == "postgres":
        assert db.replacements == {"replaced": size}
