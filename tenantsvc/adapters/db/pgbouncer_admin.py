"""PgBouncer's admin console (``SHOW POOLS``), read for ``/health/detailed`` in a thread, never on the reactor."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

CONNECT_TIMEOUT_S = 2
POOL_FIELDS = ("database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait",
               "maxwait_us", "pool_mode")


def show_pools(admin_url: str) -> list[dict[str, Any]]:
    """Blocking: connect to the admin console and return ``SHOW POOLS`` rows (selected columns)."""
    import psycopg2

    connection = psycopg2.connect(admin_url, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        connection.autocommit = True  # the admin console has no transactions
        with connection.cursor() as cursor:
            cursor.execute("SHOW POOLS")
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return [{key: row[key] for key in POOL_FIELDS if key in row} for row in rows]


def pgbouncer_pools_probe(admin_url: str | None, reactor: Any) -> Callable[[], Deferred] | None:
    """A callable that reads ``SHOW POOLS`` off the reactor thread, or None when no admin URL is configured."""
    if admin_url is None:
        return None
    return lambda: deferToThreadPool(reactor, reactor.getThreadPool(), show_pools, admin_url)
