"""A throwaway PgBouncer in transaction pooling mode in front of a ``PostgresServer``.

Every database name is forwarded (``* =``) to the Postgres fixture (``ProductionPgBouncer``: with the
settings of deploy/pgbouncer.ini); user ``postgres`` with trust
auth (listed in a userlist in the temp dir) is also an admin, so ``admin(...)`` can run ``SHOW POOLS``,
``PAUSE`` or ``RESUME`` on the ``pgbouncer`` console. Fault helpers: ``stop``/``start``,
``pause``/``resume`` (SIGSTOP/SIGCONT of the process; ``admin("PAUSE")`` is the polite variant).
"""

from __future__ import annotations

import configparser
import io
import os
import shutil
import signal
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.support.postgres import SUPERUSER, PostgresServer
from tests.support.processes import (
    DisposableServer,
    accepts_connections,
    as_service_user,
    free_port,
    freeze_tree,
    is_alive,
    owned_temp_dir,
    read_pid_file,
    signal_quietly,
    wait_until,
)

CONFIG = """\
[databases]
* = host={pg_host} port={pg_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir = {base_dir}
auth_type = trust
auth_file = {base_dir}/userlist.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
pidfile = {base_dir}/pgbouncer.pid
"""


PRODUCTION_INI = Path(__file__).resolve().parents[2] / "deploy" / "pgbouncer.ini"


def production_config() -> configparser.ConfigParser:
    """deploy/pgbouncer.ini as PgBouncer would read it."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(PRODUCTION_INI.read_text())
    return parser


class PgBouncerServer(DisposableServer):
    """One pgbouncer process (as the ``postgres`` user when we are root); ``close()`` at the end."""

    def __init__(self, postgres: PostgresServer) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.path.exists(binary):
            raise RuntimeError("pgbouncer not found (run scripts/setup)")
        self.binary = binary
        self.postgres = postgres
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = SUPERUSER
        self.base_dir = owned_temp_dir("tenantsvc-pgbouncer-")
        self.config_file = os.path.join(self.base_dir, "pgbouncer.ini")
        self.log_file = os.path.join(self.base_dir, "pgbouncer.log")
        self._pid_file = os.path.join(self.base_dir, "pgbouncer.pid")
        self._process: subprocess.Popen | None = None
        self._paused = False
        self._write_config()

    def config_text(self) -> str:
        """The pgbouncer.ini this server runs with (a subclass may derive it from another file)."""
        return CONFIG.format(pg_host=self.postgres.host, pg_port=self.postgres.port, host=self.host,
                             port=self.port, base_dir=self.base_dir, user=self.user)

    def _write_config(self) -> None:
        with open(self.config_file, "w") as handle:
            handle.write(self.config_text())
        with open(os.path.join(self.base_dir, "userlist.txt"), "w") as handle:
            handle.write(f'"{self.user}" ""\n')
        for name in ("pgbouncer.ini", "userlist.txt"):
            os.chmod(os.path.join(self.base_dir, name), 0o644)

    @property
    def pid(self) -> int:
        """The pgbouncer process id (not that of ``runuser``)."""
        return read_pid_file(self._pid_file)

    def start(self) -> None:
        """Start pgbouncer (again, after ``stop``) in the foreground and wait until it listens."""
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(as_service_user([self.binary, self.config_file]),
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._ready, f"pgbouncer on port {self.port}")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self._process.returncode}; see {self.log_file}")
        return accepts_connections(self.host, self.port) and os.path.exists(self._pid_file)

    def stop(self) -> None:
        """Shut pgbouncer down at once (SIGTERM to the pgbouncer process) and wait for it to exit."""
        if self._process is None:
            return
        self.resume()
        pid = self.pid
        signal_quietly(pid, signal.SIGTERM)
        self._process.wait(timeout=15)
        wait_until(lambda: not is_alive(pid), "pgbouncer to exit", timeout_s=15)
        self._process = None
        if os.path.exists(self._pid_file):
            os.remove(self._pid_file)  # so the next start() waits for the new process's pid

    def pause(self) -> None:
        """Freeze the pgbouncer process (SIGSTOP)."""
        freeze_tree(self.pid)
        self._paused = True

    def resume(self) -> None:
        """Undo ``pause`` (SIGCONT); harmless when not paused.

        ``runuser`` stops itself when its child stops (job control), so it is continued as well.
        """
        if self._paused:
            signal_quietly(self.pid, signal.SIGCONT)
            if self._process is not None:
                signal_quietly(self._process.pid, signal.SIGCONT)
        self._paused = False


    def database_url(self, dbname: str) -> str:
        """A ``DATABASE_URL`` for ``dbname`` through the pooler."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str, autocommit: bool = False) -> Any:
        """A psycopg2 connection to ``dbname`` through the pooler; the caller closes it."""
        import psycopg2

        connection = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname,
                                      connect_timeout=5)
        connection.autocommit = autocommit
        return connection

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a console command (``SHOW POOLS``, ``PAUSE db``, ``RESUME db``…); rows as dicts."""
        with closing(self.connect("pgbouncer", autocommit=True)) as connection, connection.cursor() as cursor:
            cursor.execute(command)
            if cursor.description is None:
                return []
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


class ProductionPgBouncer(PgBouncerServer):
    """A PgBouncer running deploy/pgbouncer.ini, with addresses, auth and files pointed at the test's own."""

    def config_text(self) -> str:
        """The production [pgbouncer] section with the environment-specific keys replaced."""
        settings = dict(production_config()["pgbouncer"])
        settings.update(listen_addr=self.host, listen_port=str(self.port), unix_socket_dir=self.base_dir,
                        auth_type="trust", auth_file=f"{self.base_dir}/userlist.txt", admin_users=self.user,
                        stats_users=self.user, pidfile=f"{self.base_dir}/pgbouncer.pid")
        config = configparser.ConfigParser(interpolation=None)
        config["databases"] = {"*": f"host={self.postgres.host} port={self.postgres.port}"}
        config["pgbouncer"] = settings
        text = io.StringIO()
        config.write(text)
        return text.getvalue()
