"""Load check (issue 4, item 8): under a sustained mixed load the DB pool stays under 85 % and no interaction
holds a connection for longer than its SQL takes.

What it does, in order:

1. Starts a throwaway Postgres (``tests.support.postgres.PostgresServer``: ``initdb`` + ``pg_ctl`` as the
   ``postgres`` user, 127.0.0.1 on a free port, durability off) with ``pg_stat_statements`` preloaded when
   the library is installed, creates the service's database, and pins Postgres to ``--postgres-cpu``
   (default: the load CPU, so that tenantsvc has its CPU to itself, as with a database on another host).
2. Starts ``twistd -n tenantsvc --role web`` against it, pinned to ``--server-cpu`` (0) with ``taskset``:
   ``DB_WEB_POOL_MAX`` = ``--pool-max`` (10), ``LOG_FILE`` in a temp dir, every ``RATE_LIMIT_*`` raised to
   ``100000/100000`` so the check measures the DB and not the rate limiter, and ``THEME_CACHE_TTL`` =
   ``--theme-ttl`` (1 s) so theme hits keep causing background ``refresh_theme`` reads. No ``REDIS_URL``:
   sessions and rate limits are in-process. The web role only: the worker roles would fetch feeds from
   the internet.
3. Seeds ``--tenants`` (10) tenants with their own themes (admin API) and ``--users`` (50) players spread
   over them (``POST /<tenant>/api/auth/register``), and logs every player in
   (``POST /<tenant>/api/auth/login``) for a ``tsid`` session cookie.
4. Runs ``bench/load_client.py`` as a SECOND process pinned to ``--load-cpu`` (1) for ``--duration`` (60 s):
   ``--connections`` (32) keep-alive connections, each with one request in flight, drawing each request
   from the ``--mix`` of theme hits (every tenant), ``/me`` reads, admin credits (unique
   ``Idempotency-Key``) and admin theme saves (the first half of the tenants only: a save refreshes the
   cached theme, so the other half go stale and are refreshed from the DB); a closed loop unless
   ``--rate`` caps the total request rate.
5. While it runs (this script's threads stay on the load CPU unless said otherwise):
   - scrapes ``/metrics`` every ``--scrape-interval`` (0.5 s): ``db_pool_usage_percent``,
     ``db_pool_waiting_connections``, ``db_active_connections`` and ``circuit_breaker_state``;
   - samples ``pg_stat_activity`` every 20 ms: how many of the service's backends are inside a
     transaction, Postgres's own view of the connections in use (it includes the COMMIT, which the
     pool's count does not);
   - measures the SQL of each interaction directly (``SqlProbe``): the same ``*_txn`` functions the
     service runs, with the same ``SET LOCAL`` guardrails, on a psycopg2 connection of its own (another
     role, so ``pg_stat_statements`` keeps the two apart), timed from ``BEGIN`` to the end of the last
     statement, the span ``db_connection_hold_seconds`` measures, and the ``COMMIT`` apart. Its thread
     runs on ``--probe-cpu`` (default: the server's CPU, like the server's pool threads, so both see the
     same CPU contention; the probe just has no GIL to share);
   - reads the CPU time of tenantsvc, Postgres (postmaster and backends), the load client and itself.
6. Afterwards: the same direct measurement on the idle server; ``pg_stat_statements`` (mean execution
   time per statement of the service's role, summed per interaction); the differences of the ``/metrics``
   histograms and counters over the window; and the exact ``hold_ms``/``wait_ms`` of every interaction
   of the window from tenantsvc's eliot log (the histograms only give bucket bounds).
7. Prints the tables and PASS/FAIL lines and writes ``bench/results/load-check-<UTC timestamp>.json``.

The checks:

- **pool**: the highest sampled ``db_pool_usage_percent`` is below 85 % (the breaker's threshold);
- **no 5xx** among the load's answers, and no transport errors;
- **hold within a bound of SQL**, per interaction name with at least ``MIN_OBSERVATIONS`` holds in the
  window: the hold p99 from the histogram (its bucket's upper bound) is at most the bucket bound that
  holds ``SQL p99 + round trips × 5 ms``, and the exact hold p99 from the log is at most that sum. SQL p99
  is the direct measurement during the load. The allowance: the pool threads share the GIL with the
  busy reactor thread, and after each round trip to Postgres a pool thread may wait up to one switch
  interval (``sys.getswitchinterval()``, 5 ms by default) to get it back. An interaction that fetched
  something over the network, slept, or waited on anything but Postgres while holding its connection
  would exceed that; the table also shows the mean difference (hold − SQL), which is far more sensitive.

Everything listens on and connects to 127.0.0.1 only. Every child (Postgres, twistd, the load client)
is stopped when the script exits, fails or gets Ctrl-C/SIGTERM/SIGHUP; every wait has a deadline. A
default run takes about 2 minutes (seeding hashes 100 passwords with argon2id on the server's CPU).

Run it with the repository venv's python: ``.venv/bin/python bench/load_check.py [--duration 60]``.
It measures and reports; like the other scripts in ``bench/`` it exits 0 when the measurement ran (1 when
it could not), whatever the checks say, unless ``--strict`` is given (then 3 when a check failed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import resource
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402 - the helpers shared by the bench scripts
    REPO, BenchError, Children, cpu_ticks, log_tails, machine_info, pinning, run_bench, start_tenantsvc,
    text_table)

from bench.load_client import KINDS  # noqa: E402
from tests.support.metrics import Series, sample_value, scraped_samples  # noqa: E402
from tenantsvc.adapters.db import tenant_store, user_store  # noqa: E402
from tenantsvc.adapters.db.dialects import dialect_for  # noqa: E402
from tenantsvc.adapters.db.pool import Txn  # noqa: E402
from tenantsvc.config import load_settings  # noqa: E402
from tenantsvc.core.theme import DEFAULT_THEME, parse_theme  # noqa: E402
from tenantsvc.obs.metrics import DB_BUCKETS  # noqa: E402
from tenantsvc.services.health import select_one_txn  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
LOAD_CLIENT = REPO / "bench" / "load_client.py"
DATABASE = "tenantsvc_load"
PROBE_ROLE = "loadcheck_probe"
SERVICE_ROLE = "postgres"  # PostgresServer's superuser, which the service connects as
POOL_LIMIT_PERCENT = 85.0  # the breaker opens at >= 85 % in use (DESIGN.md §5)
UNLIMITED = "100000/100000"
# RATE_LIMIT_LOGIN_CLIENT: the per-client auth bucket's old name, which older trees (--code-dir) read too
RATE_LIMIT_VARIABLES = ("RATE_LIMIT_PUBLIC", "RATE_LIMIT_AUTH", "RATE_LIMIT_READ", "RATE_LIMIT_WRITE",
                        "RATE_LIMIT_LOGIN_CLIENT", "RATE_LIMIT_READ_CLIENT", "RATE_LIMIT_WRITE_CLIENT",
                        "RATE_LIMIT_LOGIN_USER")
PASSWORD = "load-check-password"
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 30.0  # seeding: registration and login hash passwords (argon2id)
ACTIVITY_INTERVAL_S = 0.02
PROBE_RATE_PER_S = 40.0  # direct SQL measurements per second during the load, over all interaction names
IDLE_PROBES_PER_NAME = 300
MIN_OBSERVATIONS = 50  # fewer holds than this in the window: reported, not judged
GIL_SWITCH_INTERVAL_S = 0.005  # CPython's default sys.getswitchinterval(); the server does not change it
DEFAULT_MIX = "theme=50,read=35,credit=12,theme_put=3"
# Interactions the load causes, and what each one runs (the service's own functions; see SqlProbe).
LOAD_INTERACTIONS = ("get_balance", "credit_wallet", "save_theme", "refresh_theme")


# --------------------------------------------------------------------------------------------------
# Child processes


def tree_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` and every live descendant (e.g. a postmaster and its backends)."""
    from tests.support.processes import descendants

    own = cpu_ticks(pid)
    if own is None:
        return None
    return own + sum(cpu_ticks(child) or 0 for child in descendants(pid))


def cpu_busy_ticks() -> dict[str, tuple[int, int]]:
    """Per CPU (``cpu0``, ``cpu1``, … and ``cpu`` for all): (busy ticks, total ticks) from /proc/stat."""
    out = {}
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + ticks[4]
            out[name] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_percent(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    """How busy each CPU was between two ``cpu_busy_ticks()`` readings, in percent."""
    out = {}
    for name, (busy, total) in after.items():
        busy0, total0 = before.get(name, (0, 0))
        if total > total0:
            out[name] = round((busy - busy0) / (total - total0) * 100.0, 1)
    return out


# --------------------------------------------------------------------------------------------------
# HTTP over loopback


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to 127.0.0.1:``port``; returns status, headers and body (4xx/5xx are not raised)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        all_headers = dict(headers or {})
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.msg, response.read()
    finally:
        connection.close()


def parse_metrics(text: str, only: tuple[str, ...] = ()) -> dict[Series, float]:
    """Samples of a ``/metrics`` page (prometheus_client's parser) keyed by (name, sorted labels), only the
    names starting with one of ``only`` when given; ``*_created`` left out."""
    return {key: value for key, value in scraped_samples(text).items() if not only or key[0].startswith(only)}


def scrape(port: int, only: tuple[str, ...] = ()) -> dict[Series, float]:
    """Scrape ``/metrics`` once."""
    status, _, body = call(port, "GET", "/metrics", timeout_s=10.0)
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    return parse_metrics(body.decode("utf-8", errors="replace"), only)


def grew(before: dict[Series, float], after: dict[Series, float], metric: str, by: tuple[str, ...],
         **where: str) -> dict[tuple[str, ...], float]:
    """How much ``metric`` grew between two scrapes, per value of the labels ``by``."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (name, labels), value in after.items():
        if name != metric:
            continue
        label_map = dict(labels)
        if any(label_map.get(k) != v for k, v in where.items()):
            continue
        delta = value - before.get((name, labels), 0.0)
        if delta:
            out[tuple(label_map.get(b, "") for b in by)] += delta
    return dict(out)


# --------------------------------------------------------------------------------------------------
# Histograms


def bucket_ceiling(seconds: float) -> float:
    """The smallest ``DB_BUCKETS`` bound at or above ``seconds`` (``inf`` above the last)."""
    for bound in DB_BUCKETS:
        if seconds <= bound:
            return bound
    return float("inf")


def histogram_window(before: dict[Series, float], after: dict[Series, float], metric: str) -> dict[str, dict[str, Any]]:
    """Per ``name`` label: count, sum, mean and the bucket bounds of p50/p99/max of ``metric`` over the window."""
    buckets: dict[str, dict[float, float]] = defaultdict(dict)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for (series, labels), value in after.items():
        label_map = dict(labels)
        name = label_map.get("name")
        if name is None:
            continue
        delta = value - before.get((series, labels), 0.0)
        if series == metric + "_bucket":
            buckets[name][float(label_map["le"])] = delta
        elif series == metric + "_sum":
            sums[name] = delta
        elif series == metric + "_count":
            counts[name] = delta
    out = {}
    for name, count in counts.items():
        if count <= 0:
            continue
        cumulative = sorted(buckets[name].items())

        def quantile_bound(fraction: float) -> float:
            """The upper bound of the bucket holding the ``fraction`` quantile."""
            target = fraction * count
            for bound, seen in cumulative:
                if seen >= target - 1e-9:
                    return bound
            return float("inf")

        highest = next((bound for bound, seen in cumulative if seen >= count - 1e-9), float("inf"))
        out[name] = {"count": int(round(count)), "sum_s": sums.get(name, 0.0),
                     "mean_s": sums.get(name, 0.0) / count, "p50_le_s": quantile_bound(0.50),
                     "p99_le_s": quantile_bound(0.99), "max_le_s": highest}
    return out


def quantile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank quantile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))]


# --------------------------------------------------------------------------------------------------
# Postgres: the throwaway server, pg_stat_statements, pg_stat_activity and the direct SQL measurements


def pg_stat_statements_available(bin_dir: str) -> bool:
    """True when this Postgres has the pg_stat_statements library."""
    return (Path(bin_dir).parent / "lib" / "pg_stat_statements.so").exists()


def pin_tree(pid: int, cpu: int) -> None:
    """Pin ``pid`` and its live descendants to ``cpu``; processes it forks later inherit the affinity."""
    from tests.support.processes import descendants

    for each in [pid, *descendants(pid)]:
        try:
            os.sched_setaffinity(each, {cpu})
        except (ProcessLookupError, PermissionError):
            pass


def start_postgres() -> tuple[Any, bool]:
    """A started ``PostgresServer`` with the service database, and whether pg_stat_statements is on."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    try:
        statements = pg_stat_statements_available(server.bin_dir)
        if statements:
            # postgresql.conf belongs to the service user; appending as root keeps its owner.
            with open(os.path.join(server.data_dir, "postgresql.conf"), "a") as conf:
                conf.write("\n# bench/load_check.py\nshared_preload_libraries = 'pg_stat_statements'\n"
                           "pg_stat_statements.track = top\npg_stat_statements.track_utility = on\n"
                           "pg_stat_statements.max = 5000\n")
        server.start()
        server.create_database(DATABASE)
        server.execute(f"CREATE ROLE {PROBE_ROLE} LOGIN SUPERUSER")
        if statements:
            server.execute("CREATE EXTENSION pg_stat_statements", dbname=DATABASE)
    except BaseException:
        server.close()
        raise
    return server, statements


class RecordingCursor:
    """A psycopg2 cursor that remembers every SQL string it executes (to learn what an interaction runs)."""

    def __init__(self, cursor: Any, log: list[str]):
        self._cursor = cursor
        self._log = log

    def execute(self, sql: str, params: Any = None) -> Any:
        """Record ``sql``, then run it."""
        self._log.append(sql)
        return self._cursor.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        """Everything else (``fetchone``, ``description``, ``rowcount``…) is the real cursor's."""
        return getattr(self._cursor, name)


class SqlProbe:
    """Runs each interaction's own ``*_txn`` function directly with psycopg2 and times it.

    The transaction is the service's: ``dialect.begin`` (the same ``SET LOCAL`` guardrails, which is
    also where psycopg2 sends ``BEGIN``), then the function; ``hold`` is timed from before ``begin``
    to after the function returns, exactly what ``Database._in_thread`` measures as hold time, and
    ``commit`` is the ``COMMIT`` after it. The probe connects as its own role, so ``pg_stat_statements``
    keeps its statements apart from the service's.
    """

    def __init__(self, server: Any, database_url: str, tenants: list[str], put_tenants: list[str],
                 users: list[dict[str, Any]]):
        import psycopg2

        self._connection = psycopg2.connect(host=server.host, port=server.port, user=PROBE_ROLE, dbname=DATABASE,
                                            connect_timeout=5, application_name="load_check_probe")
        settings = load_settings({"DATABASE_URL": database_url}, role="web")
        self.dialect = dialect_for(settings)
        self._tenants = tenants
        self._put_tenants = put_tenants
        self._users = users
        self._rng = random.Random(7)
        self._keys = 0
        self.hold_s: dict[str, list[float]] = defaultdict(list)
        self.commit_s: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.statements: dict[str, list[str]] = {}

    def _call(self, name: str) -> tuple[Callable[..., Any], tuple]:
        """The function the service runs for interaction ``name``, and arguments like the load's."""
        tenant = self._rng.choice(self._tenants)
        user = self._rng.choice(self._users)
        if name == "get_balance":
            return user_store.get_balance_txn, (user["tenant"], user["user_id"])
        if name == "credit_wallet":
            self._keys += 1
            return tenant_store.credit_wallet_txn, (user["tenant"], user["username"], 1, "load check probe",
                                                    f"probe-{os.getpid()}-{self._keys}")
        if name == "save_theme":
            tenant = self._rng.choice(self._put_tenants)
            colour = "#%06x" % self._rng.randrange(0x1000000)
            return tenant_store.save_theme_txn, (tenant, parse_theme({"primaryColor": colour}, DEFAULT_THEME))
        if name in ("refresh_theme", "load_theme"):
            return tenant_store.load_theme_txn, (tenant,)
        if name == "get_user_credentials":
            return user_store.get_user_by_username_txn, (user["tenant"], user["username"])
        if name == "health_check":
            return select_one_txn, ()
        raise KeyError(name)

    def run_once(self, name: str) -> None:
        """Run and time interaction ``name`` once (its statements are recorded the first time)."""
        fn, args = self._call(name)
        log: list[str] = []
        with self._connection.cursor() as raw:
            cursor = RecordingCursor(raw, log)
            began = time.perf_counter()
            try:
                self.dialect.begin(cursor)
                fn(Txn(cursor, self.dialect), *args)
                held = time.perf_counter()
                self._connection.commit()
                done = time.perf_counter()
            except Exception as error:
                self._connection.rollback()
                self.errors[f"{name}: {type(error).__name__}"] += 1
                return
        self.hold_s[name].append(held - began)
        self.commit_s[name].append(done - held)
        self.statements.setdefault(name, log)

    def round_trips(self, name: str) -> int | None:
        """Round trips inside the hold span: ``BEGIN`` plus one per ``execute`` (the ``SET LOCAL`` pair is one)."""
        log = self.statements.get(name)
        return None if log is None else 1 + len(log)

    def summary(self, name: str) -> dict[str, Any] | None:
        """Count, mean and p50/p99/max of the hold span and of the commit, in seconds."""
        holds, commits = self.hold_s.get(name), self.commit_s.get(name)
        if not holds:
            return None
        return {"count": len(holds), "mean_s": statistics.fmean(holds), "p50_s": quantile(holds, 0.5),
                "p99_s": quantile(holds, 0.99), "max_s": max(holds),
                "commit_mean_s": statistics.fmean(commits or [0.0]), "commit_p99_s": quantile(commits or [0.0], 0.99),
                "round_trips": self.round_trips(name)}

    def reset(self) -> None:
        """Forget the timings (the recorded statements stay)."""
        self.hold_s.clear()
        self.commit_s.clear()
        self.errors.clear()

    def close(self) -> None:
        """Close the probe's connection."""
        self._connection.close()


def busy_backends(connection: Any) -> tuple[int, int]:
    """The service's backends inside a transaction (running or idle in it), and all of its backends."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE state IN ('active', 'idle in transaction',"
            " 'idle in transaction (aborted)')), count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name LIKE 'tenantsvc-%%'", (DATABASE,))
        busy, total = cursor.fetchone()
    return int(busy), int(total)


def _normalise_sql(sql: str) -> str:
    text = re.sub(r"\$\d+|%s", "?", sql)
    return re.sub(r"\s+", " ", text).strip().rstrip(";").strip().lower()


def statement_times(server: Any) -> dict[str, dict[str, float]]:
    """pg_stat_statements of the service's role in the service database: normalised text → calls, mean/max ms."""
    rows = server.execute(
        "SELECT s.query, s.calls, s.mean_exec_time, s.max_exec_time FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid"
        " WHERE r.rolname = %s AND d.datname = %s", (SERVICE_ROLE, DATABASE), dbname=DATABASE)
    out: dict[str, dict[str, float]] = {}
    for query, calls, mean_ms, max_ms in rows:
        key = _normalise_sql(query)
        entry = out.setdefault(key, {"calls": 0, "total_ms": 0.0, "max_ms": 0.0})
        entry["calls"] += calls
        entry["total_ms"] += mean_ms * calls
        entry["max_ms"] = max(entry["max_ms"], max_ms)
    for entry in out.values():
        entry["mean_ms"] = entry["total_ms"] / entry["calls"] if entry["calls"] else 0.0
    return out


def server_sql_per_interaction(probe: SqlProbe, statements: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per interaction: the sum of the mean server execution times of the statements it runs.

    ``hold_ms`` covers ``BEGIN``, the ``SET LOCAL`` pair and the interaction's statements; ``commit_ms``
    is the ``COMMIT`` after them. Statements whose text could not be found are listed as unmatched.
    """
    out = {}
    for name, log in probe.statements.items():
        parts = ["BEGIN"] + [piece for sql in log for piece in sql.split(";") if piece.strip()]
        total, unmatched = 0.0, []
        for piece in parts:
            entry = statements.get(_normalise_sql(piece))
            if entry is None:
                unmatched.append(piece.strip()[:80])
            else:
                total += entry["mean_ms"]
        commit = statements.get("commit")
        out[name] = {"hold_ms": round(total, 4), "commit_ms": round(commit["mean_ms"], 4) if commit else None,
                     "statements": len(parts), "unmatched": unmatched}
    return out


# --------------------------------------------------------------------------------------------------
# tenantsvc


def start_service(args: argparse.Namespace, children: Children, workdir: Path, pin: list[str],
                  database_url: str, admin_token: str) -> tuple[subprocess.Popen, int, Path]:
    """Start ``twistd -n tenantsvc --role web`` against Postgres, pinned; wait for /readyz; return proc, port, log."""
    log_file = workdir / "tenantsvc.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "LANG": "C.UTF-8",
           "HOME": str(workdir), "DATABASE_URL": database_url, "ADMIN_TOKEN": admin_token,
           "DB_WEB_POOL_MAX": str(args.pool_max), "LOG_FILE": str(log_file),
           "THEME_CACHE_TTL": f"{args.theme_ttl:g}"}
    env.update({name: UNLIMITED for name in RATE_LIMIT_VARIABLES})
    server = start_tenantsvc(children, args.python, workdir, pin, args=("--role", "web"), env=env, wait_for="readyz")
    return server.proc, server.port, log_file


def seed(port: int, admin_token: str, tenant_count: int, user_count: int) -> tuple[list[str], list[dict[str, Any]], float]:
    """Create tenants (each with its own theme) and players, log every player in; returns tenants, users, seconds."""
    started = time.monotonic()
    auth = {"Authorization": f"Bearer {admin_token}"}
    tenants = [f"load-{i:02d}" for i in range(tenant_count)]
    for index, slug in enumerate(tenants):
        status, _, body = call(port, "POST", "/admin/api/tenants", {"slug": slug, "name": f"Load {index}"}, auth)
        if status != 201:
            raise BenchError(f"creating tenant {slug}: {status} {body[:200]!r}")
        theme = {"primaryColor": f"#{index * 40 % 256:02x}3366", "fontFamily": "Inter"}
        status, _, body = call(port, "PUT", f"/admin/api/tenants/{slug}/theme", theme, auth)
        if status != 200:
            raise BenchError(f"saving the theme of {slug}: {status} {body[:200]!r}")
    users = [{"tenant": tenants[i % tenant_count], "username": f"player{i:03d}"} for i in range(user_count)]

    def register_and_login(user: dict[str, Any]) -> dict[str, Any]:
        """Register one player, log it in, and return it with its ``tsid`` cookie."""
        credentials = {"username": user["username"], "password": PASSWORD}
        status, _, body = call(port, "POST", f"/{user['tenant']}/api/auth/register", credentials)
        if status != 201:
            raise BenchError(f"registering {user['username']}: {status} {body[:200]!r}")
        status, headers, body = call(port, "POST", f"/{user['tenant']}/api/auth/login", credentials)
        if status != 200:
            raise BenchError(f"logging {user['username']} in: {status} {body[:200]!r}")
        for header in headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() == "tsid":
                return dict(user, cookie=rest.split(";", 1)[0])
        raise BenchError(f"no tsid cookie in the login answer for {user['username']}")

    with ThreadPoolExecutor(4) as pool:
        users = list(pool.map(register_and_login, users))
    return tenants, users, round(time.monotonic() - started, 1)


# --------------------------------------------------------------------------------------------------
# The measurement


class Sampler(threading.Thread):
    """Runs ``sample()`` every ``interval_s`` until stopped, keeping (seconds since start, value) pairs."""

    def __init__(self, name: str, interval_s: float, sample: Callable[[], Any], cpu: int | None = None):
        super().__init__(name=name, daemon=True)
        self.cpu = cpu  # pin this thread alone to that CPU (Linux affinity is per thread)
        self.interval_s = interval_s
        self._sample = sample
        self._stop_event = threading.Event()
        self.samples: list[tuple[float, Any]] = []
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        """Sample on a fixed schedule (a slow sample delays the next one, never doubles it)."""
        if self.cpu is not None:
            os.sched_setaffinity(0, {self.cpu})
        started = time.monotonic()
        next_at = started
        while not self._stop_event.is_set():
            try:
                self.samples.append((round(time.monotonic() - started, 3), self._sample()))
            except Exception as error:  # a failed sample is counted; sampling goes on
                self.errors[type(error).__name__] += 1
            next_at = max(next_at + self.interval_s, time.monotonic())
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (bounded)."""
        self._stop_event.set()
        self.join(10.0)


def pool_sample(port: int) -> dict[str, float | None]:
    """The pool gauges and the breaker state from one /metrics scrape."""
    samples = scrape(port, only=("db_pool_usage_percent", "db_pool_waiting_connections", "db_active_connections",
                                 "circuit_breaker_state"))
    return {"usage_percent": sample_value(samples, "db_pool_usage_percent"),
            "waiting": sample_value(samples, "db_pool_waiting_connections"),
            "active": sample_value(samples, "db_active_connections"),
            "breaker_state": sample_value(samples, "circuit_breaker_state", breaker_name="db_pool")}


def series_stats(values: list[float]) -> dict[str, float | None]:
    """max, p95, mean of a list of samples."""
    if not values:
        return {"max": None, "p95": None, "mean": None}
    return {"max": max(values), "p95": quantile(values, 0.95), "mean": round(statistics.fmean(values), 3)}


def run_load(args: argparse.Namespace, children: Children, workdir: Path, load_pin: list[str], port: int,
             server: Any, probe: SqlProbe, activity_connection: Any, spec: dict[str, Any],
             server_pid: int) -> dict[str, Any]:
    """Run the load client while sampling the pool, Postgres's backends and the direct SQL; return what was seen."""
    spec_path, out_path = workdir / "load-spec.json", workdir / "load-result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    before = scrape(port)
    if args.statements:
        server.execute("SELECT pg_stat_statements_reset()", dbname=DATABASE)
    pool = Sampler("pool", args.scrape_interval, lambda: pool_sample(port))
    activity = Sampler("pg_stat_activity", ACTIVITY_INTERVAL_S, lambda: busy_backends(activity_connection))
    names = list(LOAD_INTERACTIONS)
    probe_turn = iter(range(10 ** 9))
    direct = Sampler("sql_probe", 1.0 / PROBE_RATE_PER_S, lambda: probe.run_once(names[next(probe_turn) % len(names)]),
                     cpu=args.probe_cpu if load_pin else None)
    probe.reset()
    argv = load_pin + [args.python, str(LOAD_CLIENT), "--spec", str(spec_path), "--out", str(out_path)]
    stderr = workdir / "load_client.stderr"
    postmaster = server.postmaster_pid()
    ticks_before = {"tenantsvc": cpu_ticks(server_pid), "postgres": tree_ticks(postmaster)}
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = cpu_busy_ticks()
    started = time.monotonic()
    client = children.start(argv, cwd=workdir, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=workdir / "load_client.stdout", stderr=stderr)
    for sampler in (pool, activity, direct):
        sampler.start()
    try:
        client.wait(args.duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the load client did not finish within {args.duration + 60:.0f}s") from None
    finally:
        for sampler in (pool, activity, direct):
            sampler.stop()
    elapsed = time.monotonic() - started
    machine_after = cpu_busy_ticks()
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    ticks_after = {"tenantsvc": cpu_ticks(server_pid), "postgres": tree_ticks(postmaster)}
    after = scrape(port)
    statements = statement_times(server) if args.statements else {}
    children.stop(client)
    if client.returncode != 0 or not out_path.exists():
        raise BenchError(f"the load client failed (exit {client.returncode})\n{log_tails([stderr])}")
    load = json.loads(out_path.read_text(encoding="utf-8"))
    hz = os.sysconf("SC_CLK_TCK")
    cpu = {name: (round((ticks_after[name] - ticks_before[name]) / hz / elapsed * 100.0, 1)
                  if ticks_before[name] is not None and ticks_after[name] is not None else None)
           for name in ticks_before}
    cpu["load_client"] = load.get("cpu_percent")
    cpu["load_check_script"] = round((own_after.ru_utime + own_after.ru_stime - own_before.ru_utime
                                      - own_before.ru_stime) / elapsed * 100.0, 1)
    under_load = {name: probe.summary(name) for name in names}
    return {"before": before, "after": after, "load": load, "pool_samples": pool.samples,
            "pool_sample_errors": dict(pool.errors), "activity_samples": activity.samples,
            "activity_errors": dict(activity.errors), "probe_under_load": under_load,
            "probe_errors_under_load": dict(probe.errors), "statements": statements,
            "cpu_percent_of_one_core": cpu, "cpu_busy_percent": busy_percent(machine_before, machine_after),
            "window_s": round(elapsed, 1)}


def logged_interactions(log_file: Path, since_unix: float, until_unix: float) -> dict[str, dict[str, Any]]:
    """Exact hold and wait times per interaction name from tenantsvc's eliot log, for interactions that
    finished within [since, until]: every ``tenantsvc:db:interaction`` action logs ``wait_ms`` and
    ``hold_ms`` when it succeeds (failures are counted, not timed).
    """
    names: dict[tuple[str, tuple[int, ...]], str] = {}
    holds: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    failed: Counter[str] = Counter()
    with open(log_file, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if '"tenantsvc:db:interaction"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level = tuple(entry.get("task_level") or ())
            key = (entry.get("task_uuid", ""), level[:-1])
            status = entry.get("action_status")
            if status == "started":
                names[key] = entry.get("name", "?")
                continue
            name = names.pop(key, None)
            if name is None or not since_unix <= entry.get("timestamp", 0.0) <= until_unix:
                continue
            if status == "succeeded" and "hold_ms" in entry:
                holds[name].append(entry["hold_ms"] / 1000.0)
                waits[name].append(entry["wait_ms"] / 1000.0)
            else:
                failed[name] += 1
    out = {}
    for name in sorted(set(holds) | set(failed)):
        h, w = holds.get(name, []), waits.get(name, [])
        out[name] = {"count": len(h), "failed": failed.get(name, 0),
                     "hold_mean_s": statistics.fmean(h) if h else None, "hold_p50_s": quantile(h, 0.5),
                     "hold_p99_s": quantile(h, 0.99), "hold_max_s": max(h) if h else None,
                     "wait_mean_s": statistics.fmean(w) if w else None, "wait_p99_s": quantile(w, 0.99),
                     "wait_max_s": max(w) if w else None}
    return out


def idle_probe(probe: SqlProbe, names: list[str]) -> dict[str, Any]:
    """The direct SQL measurement with no load: ``IDLE_PROBES_PER_NAME`` runs of each interaction."""
    probe.reset()
    for _ in range(IDLE_PROBES_PER_NAME):
        for name in names:
            probe.run_once(name)
    return {name: probe.summary(name) for name in names}


def analyse(args: argparse.Namespace, seen: dict[str, Any], idle: dict[str, Any],
            server_sql: dict[str, dict[str, Any]], logged: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Turn the raw observations into the report: pool figures, per-interaction hold vs SQL, statuses, checks."""
    before, after, load = seen["before"], seen["after"], seen["load"]
    usage = [s["usage_percent"] for _, s in seen["pool_samples"] if s["usage_percent"] is not None]
    waiting = [s["waiting"] for _, s in seen["pool_samples"] if s["waiting"] is not None]
    active = [s["active"] for _, s in seen["pool_samples"] if s["active"] is not None]
    breaker_states = Counter(int(s["breaker_state"]) for _, s in seen["pool_samples"] if s["breaker_state"] is not None)
    busy = [b for _, (b, _total) in seen["activity_samples"]]
    backends = [t for _, (_b, t) in seen["activity_samples"]]
    pool = {
        "samples": len(usage),
        "usage_percent": series_stats(usage),
        "waiting": series_stats(waiting),
        "active": series_stats(active),
        "breaker_state_samples": {str(k): v for k, v in sorted(breaker_states.items())},
        "pg_busy_backends": dict(series_stats(busy), samples=len(busy)),
        "pg_busy_backends_histogram": {str(k): v for k, v in sorted(Counter(busy).items())},
        # Postgres-side samples with at least 85 % of the pool's connections inside a transaction.
        "pg_busy_at_limit": {"threshold": math.ceil(POOL_LIMIT_PERCENT / 100.0 * args.pool_max),
                             "samples": sum(1 for b in busy if b >= math.ceil(POOL_LIMIT_PERCENT / 100.0 * args.pool_max))},
        "pg_backends_max": max(backends) if backends else None,
        "pool_max": args.pool_max,
        "scrapes": [[t, s["usage_percent"], s["waiting"], s["active"]] for t, s in seen["pool_samples"]],
        "scrape_errors": seen["pool_sample_errors"], "activity_errors": seen["activity_errors"],
    }
    hold = histogram_window(before, after, "db_connection_hold_seconds")
    wait = histogram_window(before, after, "db_pool_wait_seconds")
    outcomes = grew(before, after, "db_interactions_total", ("name", "outcome"))
    interactions = {}
    checks_hold = {}
    for name in sorted(set(hold) | set(wait) | {n for n, _ in outcomes}):
        h, w, exact = hold.get(name), wait.get(name), logged.get(name)
        direct, quiet, sql = seen["probe_under_load"].get(name), idle.get(name), server_sql.get(name)
        row: dict[str, Any] = {
            "count": h["count"] if h else 0,
            "outcomes": {o: int(v) for (n, o), v in outcomes.items() if n == name},
            "hold": h, "wait": w, "logged": exact, "sql_direct_under_load": direct, "sql_direct_idle": quiet,
            "sql_server_mean_ms": sql,
        }
        if h and direct:
            trips = direct["round_trips"] or 1
            allowance = trips * GIL_SWITCH_INTERVAL_S
            bound = direct["p99_s"] + allowance
            row["overhead_mean_ms"] = round((h["mean_s"] - direct["mean_s"]) * 1000, 3)
            judged = h["count"] >= MIN_OBSERVATIONS
            exact_p99 = exact["hold_p99_s"] if exact and exact["count"] else None
            met = h["p99_le_s"] <= bucket_ceiling(bound) and (exact_p99 is None or exact_p99 <= bound)
            checks_hold[name] = {
                "hold_p99_le_ms": h["p99_le_s"] * 1000,
                "hold_p99_exact_ms": round(exact_p99 * 1000, 3) if exact_p99 is not None else None,
                "sql_p99_ms": round(direct["p99_s"] * 1000, 3),
                "round_trips": trips, "allowance_ms": allowance * 1000,
                "bound_ms": round(bound * 1000, 3), "bound_bucket_ms": bucket_ceiling(bound) * 1000,
                "judged": judged, "met": met if judged else None,
            }
        interactions[name] = row
    statuses: Counter[str] = Counter()
    transport: Counter[str] = Counter()
    for kind, data in load["per_kind"].items():
        for code, n in data["statuses"].items():
            statuses[code] += n
        for reason, n in data["transport_errors"].items():
            transport[f"{kind}:{reason}"] += n
    server_statuses = {k[0]: int(v) for k, v in grew(before, after, "http_requests_total", ("status",)).items()}
    fivexx = sum(n for code, n in statuses.items() if code.startswith("5"))
    per_second = load["answered_per_second"]
    checks = {
        "pool_usage": {"max_percent": pool["usage_percent"]["max"], "limit_percent": POOL_LIMIT_PERCENT,
                       "met": pool["usage_percent"]["max"] is not None
                       and pool["usage_percent"]["max"] < POOL_LIMIT_PERCENT},
        "no_5xx": {"count_5xx": fivexx, "transport_errors": sum(transport.values()),
                   "met": fivexx == 0 and not transport},
        "hold_vs_sql": checks_hold,
    }
    transitions = grew(before, after, "circuit_breaker_transitions_total", ("from_state", "to_state", "reason"))
    rejections = grew(before, after, "circuit_breaker_rejections_total", ("request_class",))
    return {
        "pool": pool,
        "interactions": interactions,
        "requests": {
            "answered": load["answered"], "requests_per_s": load["requests_per_s"], "elapsed_s": load["elapsed_s"],
            "by_status": dict(sorted(statuses.items())), "transport_errors": dict(transport),
            "server_counted_by_status": dict(sorted(server_statuses.items())),
            "per_kind": load["per_kind"],
            "per_second": {"min": min(per_second) if per_second else None,
                           "median": statistics.median(per_second) if per_second else None,
                           "max": max(per_second) if per_second else None, "series": per_second},
        },
        "breaker": {"transitions": {"/".join(k): int(v) for k, v in transitions.items()},
                    "rejections": {k[0]: int(v) for k, v in rejections.items()}},
        "cpu_percent_of_one_core": seen["cpu_percent_of_one_core"],
        "cpu_busy_percent": seen["cpu_busy_percent"],
        "window_s": seen["window_s"],
        "checks": checks,
    }


def versions(python: str) -> dict[str, str | None]:
    """Twisted's and psycopg2's versions under ``python``, for ``machine_info``."""
    found = subprocess.run([python, "-c", "import twisted, psycopg2; print(twisted.__version__); "
                            "print(psycopg2.__version__.split()[0])"], capture_output=True, text=True).stdout.split()
    return {"twisted": found[0] if found else None, "psycopg2": found[1] if len(found) > 1 else None}


def parse_mix(text: str) -> dict[str, float]:
    """``theme=50,read=35,…`` → weights; an unknown kind, a negative weight or no positive weight is an error."""
    kinds = KINDS
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in kinds:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r}; expected some of {', '.join(kinds)}")
        try:
            value = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight of {name!r} must be a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"weight of {name!r} must not be negative")
        mix[name] = value
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("at least one weight must be positive")
    return mix


def check(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Run the whole load check and return the result document."""
    server_pin, load_pin, pin_note = pinning(args.server_cpu, args.load_cpu, "load client and this script")
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        print(f"load_check: warning: load average is {load_at_start[0]:.2f}; other work on these CPUs will "
              "distort the figures", flush=True)
    print(f"load_check: {pin_note}; {args.connections} connections for {args.duration:g}s, mix {args.mix_text}"
          f"{f', capped at {args.rate:g} req/s' if args.rate else ', closed loop'}; pool max {args.pool_max}",
          flush=True)
    started = time.monotonic()
    machine = machine_info(**versions(args.python))
    server, statements_on = start_postgres()
    args.statements = statements_on
    if load_pin and args.postgres_cpu >= 0:
        pin_tree(server.postmaster_pid(), args.postgres_cpu)  # backends forked later inherit it
    probe = None
    activity_connection = None
    try:
        database_url = server.database_url(DATABASE)
        admin_token = secrets.token_urlsafe(24)
        proc, port, log_file = start_service(args, children, workdir, server_pin, database_url, admin_token)
        if load_pin:
            os.sched_setaffinity(0, {args.load_cpu})  # this script's samplers and probe stay off the server's CPU
        tenants, users, seed_s = seed(port, admin_token, args.tenants, args.users)
        print(f"load_check: seeded {len(tenants)} tenants and {len(users)} logged-in players in {seed_s}s", flush=True)
        # Theme saves go to the first half of the tenants only: a save refreshes the cached entry, so the
        # other half's entries go stale every THEME_CACHE_TTL and theme hits trigger refresh_theme reads.
        put_tenants = tenants[:max(1, len(tenants) // 2)]
        ids = dict(((t, u), i) for i, u, t in server.execute(
            "SELECT u.id, u.username, t.slug FROM users u JOIN tenants t ON t.id = u.tenant_id", dbname=DATABASE))
        probe_users = [dict(u, user_id=ids[(u["tenant"], u["username"])]) for u in users]
        probe = SqlProbe(server, database_url, tenants, put_tenants, probe_users)
        for name in LOAD_INTERACTIONS:  # learn each interaction's statements before the window
            probe.run_once(name)
        import psycopg2

        activity_connection = psycopg2.connect(host=server.host, port=server.port, user=PROBE_ROLE, dbname=DATABASE,
                                               connect_timeout=5, application_name="load_check_activity")
        activity_connection.autocommit = True
        spec = {"host": "127.0.0.1", "port": port, "duration_s": args.duration, "connections": args.connections,
                "rate": args.rate, "mix": args.mix, "tenants": tenants, "put_tenants": put_tenants,
                "users": [{k: u[k] for k in ("tenant", "username", "cookie")} for u in users],
                "admin_token": admin_token, "seed": args.seed}
        print(f"load_check: loading for {args.duration:g}s …", flush=True)
        seen = run_load(args, children, workdir, load_pin, port, server, probe, activity_connection, spec, proc.pid)
        idle = idle_probe(probe, list(LOAD_INTERACTIONS))
        server_sql = server_sql_per_interaction(probe, seen["statements"]) if statements_on else {}
        exit_code = children.stop(proc)  # also flushes its log
        window_start = seen["load"]["started_at_unix"]
        logged = logged_interactions(log_file, window_start, window_start + seen["load"]["elapsed_s"])
        report = analyse(args, seen, idle, server_sql, logged)
        report["probe_errors"] = {"under_load": seen["probe_errors_under_load"], "idle": dict(probe.errors)}
        report["statements_sampled"] = {name: log for name, log in probe.statements.items()}
        report["pg_stat_statements"] = ("on" if statements_on else
                                        "not installed: server-side statement times not reported")
        report["tenantsvc_exit_code"] = exit_code
    finally:
        if probe is not None:
            probe.close()
        if activity_connection is not None:
            activity_connection.close()
        server.close()
    return {
        "benchmark": "load_check",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "settings": {"duration_s": args.duration, "connections": args.connections, "rate": args.rate,
                     "mix": args.mix, "tenants": args.tenants, "users": args.users, "pool_max": args.pool_max,
                     "theme_cache_ttl_s": args.theme_ttl, "scrape_interval_s": args.scrape_interval,
                     "rate_limits": {name: UNLIMITED for name in RATE_LIMIT_VARIABLES}, "pinning": pin_note,
                     "probe_rate_per_s": PROBE_RATE_PER_S, "idle_probes_per_name": IDLE_PROBES_PER_NAME,
                     "gil_switch_interval_s": GIL_SWITCH_INTERVAL_S, "probe_cpu": args.probe_cpu,
                     "postgres_cpu": args.postgres_cpu if load_pin and args.postgres_cpu >= 0 else None, "min_observations": MIN_OBSERVATIONS},
        "machine": dict(machine, loadavg_at_start=[round(x, 2) for x in load_at_start],
                        loadavg_at_end=[round(x, 2) for x in os.getloadavg()]),
        "seed_s": seed_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        **report,
    }


# --------------------------------------------------------------------------------------------------
# Report


def _ms(seconds: float | None, digits: int = 2) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return "+Inf"
    return f"{seconds * 1000:.{digits}f}"


def _le(seconds: float | None) -> str:
    return "-" if seconds is None else f"≤{_ms(seconds, 1 if seconds >= 0.001 else 2)}"


def print_report(doc: dict[str, Any]) -> None:
    """Print the figures, the tables and the PASS/FAIL lines."""
    settings, machine, pool, requests = doc["settings"], doc["machine"], doc["pool"], doc["requests"]
    cpu, busy_cpus = doc["cpu_percent_of_one_core"], doc["cpu_busy_percent"]
    print()
    print(f"load_check {doc['measured_at']} — {machine['cpus']} CPUs ({machine['cpu_model']}), Python "
          f"{machine['python']}, Twisted {machine['twisted']}, psycopg2 {machine['psycopg2']}, commit {machine['commit']}")
    pg_cpu = settings["postgres_cpu"]
    print(f"{settings['pinning']}; {'Postgres on CPU %d' % pg_cpu if pg_cpu is not None else 'Postgres unpinned'}"
          f"; direct SQL probe thread on CPU {settings['probe_cpu']}; load average "
          f"{machine['loadavg_at_start'][0]:.2f} → {machine['loadavg_at_end'][0]:.2f}")
    print(f"tenantsvc --role web: DB_WEB_POOL_MAX={settings['pool_max']}, THEME_CACHE_TTL={settings['theme_cache_ttl_s']:g}s, "
          f"every RATE_LIMIT_* = {UNLIMITED} (so the check measures the DB, not the rate limiter), no Redis")
    mix = ", ".join(f"{k} {v:g}" for k, v in settings["mix"].items())
    print(f"load: {settings['connections']} keep-alive connections, "
          f"{'closed loop' if not settings['rate'] else 'capped at %g req/s' % settings['rate']}, mix {mix}; "
          f"window {doc['window_s']}s")
    print(f"CPU over the window (% of one core): tenantsvc {cpu['tenantsvc']}, Postgres {cpu['postgres']}, "
          f"load client {cpu['load_client']}, this script {cpu['load_check_script']}; machine busy "
          + ", ".join(f"{k} {v}%" for k, v in busy_cpus.items() if k != "cpu"))
    print()
    per_second = requests["per_second"]
    print(f"requests: {requests['answered']:,} answered in {requests['elapsed_s']:.1f}s = "
          f"{requests['requests_per_s']:,.0f} req/s (answers per second: min {per_second['min']}, "
          f"median {per_second['median']}, max {per_second['max']})")
    rows = []
    for kind, data in requests["per_kind"].items():
        if not data["requests"]:
            continue
        lat = data["latency_ms"]
        rows.append((kind, f"{data['requests']:,}", ", ".join(f"{c}: {n:,}" for c, n in data["statuses"].items()),
                     str(sum(data["transport_errors"].values())), f"{lat['p50']:.2f}", f"{lat['p99']:.2f}",
                     f"{lat['max']:.1f}"))
    for line in text_table(("kind", "requests", "statuses", "errors", "p50 ms", "p99 ms", "max ms"), rows):
        print("  " + line)
    print(f"  tenantsvc's own http_requests_total by status over the window: "
          f"{', '.join(f'{k}: {v:,}' for k, v in requests['server_counted_by_status'].items())}")
    print()
    usage, waiting, active, busy = pool["usage_percent"], pool["waiting"], pool["active"], pool["pg_busy_backends"]
    print(f"pool: {pool['samples']} scrapes of /metrics, one every {settings['scrape_interval_s']:g}s")
    print(f"  db_pool_usage_percent        max {usage['max']:5.1f}   p95 {usage['p95']:5.1f}   mean {usage['mean']:6.2f}")
    print(f"  db_pool_waiting_connections  max {waiting['max']:5.0f}   p95 {waiting['p95']:5.0f}   mean {waiting['mean']:6.2f}")
    print(f"  db_active_connections        max {active['max']:5.0f}   p95 {active['p95']:5.0f}   mean {active['mean']:6.2f}")
    print(f"  Postgres's view, {busy['samples']} samples of pg_stat_activity every {ACTIVITY_INTERVAL_S * 1000:.0f} ms: "
          f"service backends inside a transaction max {busy['max']}, p95 {busy['p95']}, mean {busy['mean']}; "
          f"service backends open max {pool['pg_backends_max']} (pool max {pool['pool_max']})")
    breaker = doc["breaker"]
    print(f"  circuit breaker: state in every scrape {pool['breaker_state_samples']} (0 = closed); transitions "
          f"{breaker['transitions'] or 'none'}; rejections {breaker['rejections'] or 'none'}")
    print()
    print("per interaction, ms. hold/wait: db_connection_hold_seconds / db_pool_wait_seconds over the window (mean")
    print("exact, p99 = bucket upper bound); log p99/max: the same holds, exact, from the eliot log (hold_ms).")
    print("SQL: the same *_txn run directly with psycopg2, BEGIN to last statement (the span hold measures), during")
    print("the load and idle; server: Σ mean execution time of its statements (pg_stat_statements); trips: round")
    print("trips in the span; hold-SQL: hold mean − SQL mean under load; COMMIT: the commit after the span.")
    rows = []
    for name, row in doc["interactions"].items():
        h, w, x = row["hold"], row["wait"], row["logged"]
        d, q, srv = row["sql_direct_under_load"], row["sql_direct_idle"], row["sql_server_mean_ms"]
        rows.append((name, f"{row['count']:,}", _ms(h and h["mean_s"], 3), _le(h and h["p99_le_s"]),
                     _ms(x and x["hold_p99_s"], 2), _ms(x and x["hold_max_s"], 1),
                     _ms(w and w["mean_s"], 3), _le(w and w["p99_le_s"]),
                     _ms(d and d["mean_s"], 3), _ms(d and d["p99_s"], 2), _ms(d and d["max_s"], 1),
                     _ms(q and q["mean_s"], 3),
                     f"{srv['hold_ms']:.3f}" if srv else "-", str(d["round_trips"]) if d else "-",
                     f"{row['overhead_mean_ms']:+.3f}" if "overhead_mean_ms" in row else "-",
                     _ms(d and d["commit_mean_s"], 3)))
    header = ("interaction", "count", "hold mean", "hold p99", "log p99", "log max", "wait mean", "wait p99",
              "SQL mean", "SQL p99", "SQL max", "SQL idle", "server", "trips", "hold-SQL", "COMMIT")
    for line in text_table(header, rows):
        print("  " + line)
    print("  adbapi sends COMMIT after Database._in_thread returns: neither db_connection_hold_seconds nor the in-use")
    print("  count (db_pool_usage_percent, the breaker's pressure) includes the COMMIT round trip.")
    unmatched = {n: s["unmatched"] for n, r in doc["interactions"].items()
                 if (s := r["sql_server_mean_ms"]) and s["unmatched"]}
    if unmatched:
        print(f"  statements not found in pg_stat_statements: {unmatched}")
    errors = {k: v for k, v in doc["probe_errors"].items() if v}
    if errors:
        print(f"  direct SQL measurement errors: {errors}")
    print()
    checks = doc["checks"]
    c = checks["pool_usage"]
    at_limit = pool["pg_busy_at_limit"]
    print(f"{'PASS' if c['met'] else 'FAIL'}  pool max usage {c['max_percent']:.1f} % < {c['limit_percent']:.0f} % "
          f"(highest of {pool['samples']} scrapes; in Postgres's 20 ms samples at most {busy['max']} of "
          f"{pool['pool_max']} connections were in a transaction, >= {at_limit['threshold']} in {at_limit['samples']} "
          f"of {busy['samples']})")
    c = checks["no_5xx"]
    print(f"{'PASS' if c['met'] else 'FAIL'}  no 5xx and no transport errors ({c['count_5xx']} 5xx, "
          f"{c['transport_errors']} transport errors)")
    for name, c in checks["hold_vs_sql"].items():
        exact = f", exact {c['hold_p99_exact_ms']:.2f} ms" if c["hold_p99_exact_ms"] is not None else ""
        text = (f"{name}: hold p99 ≤{c['hold_p99_le_ms']:g} ms{exact}; bound = SQL p99 {c['sql_p99_ms']:.2f} ms + "
                f"{c['round_trips']} round trips × {GIL_SWITCH_INTERVAL_S * 1000:g} ms = {c['bound_ms']:.2f} ms "
                f"(bucket ≤{c['bound_bucket_ms']:g} ms)")
        verdict = "----" if c["met"] is None else ("PASS" if c["met"] else "FAIL")
        suffix = f"  [not judged: fewer than {MIN_OBSERVATIONS} holds]" if c["met"] is None else ""
        print(f"{verdict}  hold within bound: {text}{suffix}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (1–600)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (1–256)")
    parser.add_argument("--rate", type=float, default=0.0, help="total requests/s to aim for; 0 = closed loop")
    parser.add_argument("--mix", dest="mix_text", default=DEFAULT_MIX,
                        help="weights of theme, read, credit and theme_put requests")
    parser.add_argument("--tenants", type=int, default=10,
                        help="tenants to seed; theme saves go to the first half, the rest go stale and refresh")
    parser.add_argument("--users", type=int, default=50, help="players to register and log in")
    parser.add_argument("--pool-max", type=int, default=10, help="DB_WEB_POOL_MAX for tenantsvc")
    parser.add_argument("--theme-ttl", type=float, default=1.0,
                        help="THEME_CACHE_TTL (s): how often theme hits cause a refresh_theme read")
    parser.add_argument("--scrape-interval", type=float, default=0.5, help="seconds between /metrics scrapes")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--postgres-cpu", type=int, default=None,
                        help="CPU for Postgres (default: the load CPU, so tenantsvc has its CPU alone; -1: unpinned)")
    parser.add_argument("--probe-cpu", type=int, default=None,
                        help="CPU of the direct SQL probe thread (default: the server's, like its pool threads)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the load client")
    parser.add_argument("--python", default=sys.executable, help="interpreter for twistd and the load client")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, spec, raw result)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a check fails")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be between 1 and 256")
    if args.rate < 0 or not 1 <= args.tenants <= 100 or not 1 <= args.users <= 1000 or args.pool_max < 1:
        parser.error("--rate must be >= 0, --tenants 1–100, --users 1–1000, --pool-max >= 1")
    if not 0.1 <= args.scrape_interval <= 10:
        parser.error("--scrape-interval must be between 0.1 and 10 seconds")
    if args.probe_cpu is None:
        args.probe_cpu = args.server_cpu
    if args.postgres_cpu is None:
        args.postgres_cpu = args.load_cpu
    try:
        args.mix = parse_mix(args.mix_text)
    except argparse.ArgumentTypeError as error:
        parser.error(f"--mix: {error}")
    return args


def failed_checks(document: dict[str, Any]) -> bool:
    """True when a check failed (pool at the breaker's threshold, a 5xx, or a hold longer than its SQL)."""
    checks = document["checks"]
    return (not checks["pool_usage"]["met"] or not checks["no_5xx"]["met"]
            or any(c["met"] is False for c in checks["hold_vs_sql"].values()))


def main(argv: list[str] | None = None) -> int:
    """Run the check, print the report, write the JSON; children and Postgres are always stopped."""
    args = parse_args(argv)
    return run_bench("load_check", args, check, print_report,
                     lambda document: 3 if args.strict and failed_checks(document) else 0)


if __name__ == "__main__":
    sys.exit(main())
