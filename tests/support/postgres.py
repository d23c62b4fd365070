"""A throwaway PostgreSQL cluster: ``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin``.

It listens on 127.0.0.1 on a free port with its socket in its own temp dir, so the machine's own
Postgres (on 5432) is never touched. Trust authentication; user ``postgres``. Durability is switched
off for speed. Fault helpers: ``stop_immediate``/``start`` and ``pause``/``resume`` (SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import glob
import os
import uuid
from contextlib import closing
from typing import Any

from tests.support.processes import (
    as_service_user,
    freeze_tree,
    free_port,
    is_alive,
    owned_temp_dir,
    read_pid_file,
    remove_dir,
    run_checked,
    thaw_tree,
)

SUPERUSER = "postgres"
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "checkpoint_timeout": "1h",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


def postgres_bin_dir() -> str:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (run scripts/setup)")

    def version(path: str) -> tuple[int, ...]:
        name = path.split("/")[4]
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return os.path.dirname(max(candidates, key=version))


def quote_ident(name: str) -> str:
    """A safely quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """One cluster in a temp dir; ``start()`` it, use ``database_url(name)``, ``close()`` at the end."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = SUPERUSER
        self.base_dir = owned_temp_dir("tenantsvc-pg-")
        self.data_dir = os.path.join(self.base_dir, "data")
        self.log_file = os.path.join(self.base_dir, "postgres.log")
        self._paused = False
        self._initdb()

    def _tool(self, name: str, *args: str) -> list[str]:
        return as_service_user([os.path.join(self.bin_dir, name), *args])

    def _initdb(self) -> None:
        run_checked(self._tool("initdb", "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust",
                               "--encoding=UTF8", "--no-locale", "--no-sync"), "initdb")
        settings = dict(SERVER_SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.base_dir}'")
        # postgresql.conf belongs to the service user; appending as root keeps its owner.
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as conf:
            conf.write("\n# tenantsvc test fixture\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (again, after ``stop_immediate``) and wait until it accepts connections."""
        run_checked(self._tool("pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", "30"),
                    "pg_ctl start", timeout_s=40)

    def stop_immediate(self) -> None:
        """Crash-stop the server (``pg_ctl stop -m immediate``): every connection breaks at once."""
        self.resume()
        run_checked(self._tool("pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w", "-t", "30"),
                    "pg_ctl stop", timeout_s=40)

    def postmaster_pid(self) -> int:
        """The pid of the running postmaster."""
        return read_pid_file(os.path.join(self.data_dir, "postmaster.pid"))

    def is_running(self) -> bool:
        """True while a postmaster runs for this cluster."""
        try:
            return is_alive(self.postmaster_pid())
        except (OSError, ValueError):
            return False

    def pause(self) -> None:
        """Freeze the postmaster and every backend (SIGSTOP): connections hang instead of failing."""
        freeze_tree(self.postmaster_pid())
        self._paused = True

    def resume(self) -> None:
        """Undo ``pause`` (SIGCONT); harmless when not paused."""
        if self._paused:
            thaw_tree(self.postmaster_pid())
            self._paused = False

    def close(self) -> None:
        """Stop the server if it runs and delete its files."""
        try:
            if self.is_running():
                self.resume()
                run_checked(self._tool("pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w", "-t", "30"),
                            "pg_ctl stop", timeout_s=40)
        finally:
            remove_dir(self.base_dir)

    # ---- addressing and databases ---------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq keyword DSN for ``dbname`` (as the superuser)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def database_url(self, dbname: str) -> str:
        """A ``DATABASE_URL`` for ``dbname`` as tenantsvc reads it."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> Any:
        """A psycopg2 connection to ``dbname`` (autocommit by default); the caller closes it."""
        import psycopg2

        connection = psycopg2.connect(self.dsn(dbname), connect_timeout=5)
        connection.autocommit = autocommit
        return connection

    def execute(self, sql: str, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
        """Run one statement on a short-lived autocommit connection; return its rows (if any)."""
        with closing(self.connect(dbname)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str | None = None, template: str = "template0") -> str:
        """Create an empty database (a unique name unless given) and return its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected."""
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
