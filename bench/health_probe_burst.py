"""What one client hammering ``/health/detailed`` costs the database and Redis (issue 11, item 5).

What it does, in order:

1. Starts a throwaway Postgres and Redis (``tests.support``: loopback, free ports, nothing kept) and
   ``twistd -n tenantsvc --role web --demo`` against them, ``LOG_FILE`` in a temp dir. ``--code-dir`` runs the
   server from another source tree (``git worktree add /tmp/before <commit>``), which is how the "before"
   figures are measured with the same script.
2. Once ``/readyz`` answers 200, reads the counters: Postgres ``xact_commit`` of the service's database
   (``pg_stat_database``, read from another database), Redis ``INFO commandstats`` (PING and EVALSHA calls:
   the Redis check and the session count), and the service's own ``db_interactions_total{name="health_check"}``.
3. Runs ``wrk -t2 -c<connections> -d<duration>s`` on ``/health/detailed`` (loopback, keep-alive).
4. Scrapes ``/metrics`` again, stops the server with SIGTERM (its backends exit, which flushes their
   statistics to ``pg_stat_database``), reads the counters again and prints the differences: DB transactions,
   health-check interactions, Redis PINGs and EVALSHAs during the burst, and wrk's request count and rate.
   Writes ``bench/results/health-probe-burst-<UTC timestamp>.json``.

``xact_commit`` counts every transaction of the database from the first reading to the process's exit, so a
few besides the probes (a theme refresh, the exit) may be in it. Every child is stopped when the script ends,
fails or is interrupted; every wait has a deadline. A run takes about 20 s. It measures and reports (exit 0).

    .venv/bin/python bench/health_probe_burst.py [--connections 50] [--duration 10]
    git worktree add /tmp/lifecycle-before 71fcdb2 && .venv/bin/python bench/health_probe_burst.py \\
        --code-dir /tmp/lifecycle-before
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, BenchError, Children, bench_parser, run_bench, start_tenantsvc  # noqa: E402

from tests.support.http import http  # noqa: E402
from tests.support.metrics import scraped_total  # noqa: E402


ADMIN_TOKEN = "health-burst-admin-token-0123"
DBNAME = "tenantsvc_health_burst"


def health_check_interactions(port: int) -> float:
    """``db_interactions_total{name="health_check"}`` summed over outcomes, from ``/metrics``."""
    page = http("GET", f"http://127.0.0.1:{port}/metrics", timeout_s=10.0).body.decode()
    return scraped_total(page, "db_interactions_total", name="health_check")


def xact_commit(postgres: Any) -> int:
    """Committed transactions of the service's database so far (``pg_stat_database``)."""
    (row,) = postgres.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DBNAME,))
    return int(row[0])


def redis_calls(redis: Any) -> dict[str, int]:
    """Calls per command so far (``INFO commandstats``), for PING and EVALSHA."""
    info = subprocess.run(["redis-cli", "-h", redis.host, "-p", str(redis.port), "INFO", "commandstats"],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    calls = {name: int(count) for name, count in re.findall(r"cmdstat_(\w+):calls=(\d+)", info)}
    return {name: calls.get(name, 0) for name in ("ping", "evalsha")}


def run_wrk(port: int, connections: int, duration_s: int) -> dict[str, Any]:
    """``wrk`` on ``/health/detailed``: requests, rate and non-2xx answers."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found (run scripts/setup)")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s",
                          f"http://127.0.0.1:{port}/health/detailed"], capture_output=True, text=True,
                         timeout=duration_s + 60).stdout
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rate is None:
        raise BenchError(f"could not read wrk's output: {out!r}")
    return {"requests": int(requests.group(1)), "requests_per_s": float(rate.group(1)),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0, "raw": out}


def measure(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Start everything, take the readings around one burst, and return the results document."""
    from tests.support.postgres import PostgresServer
    from tests.support.redis_server import RedisServer

    postgres, redis = PostgresServer(), RedisServer()
    try:
        postgres.start()
        redis.start()
        database_url = postgres.database_url(postgres.create_database(DBNAME))
        code_dir = Path(args.code_dir).resolve() if args.code_dir else REPO
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code_dir), "LANG": "C.UTF-8",
               "HOME": str(workdir), "DATABASE_URL": database_url, "REDIS_URL": redis.url,
               "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_FILE": str(workdir / "tenantsvc.log")}
        server = start_tenantsvc(children, args.python, workdir, [], args=("--role", "web", "--demo"), env=env,
                                 wait_for="readyz")
        port, proc = server.port, server.proc
        time.sleep(1.5)  # let the start-up work's statistics reach pg_stat_database (flushed at most every 1 s)
        before = {"xact_commit": xact_commit(postgres), "redis": redis_calls(redis),
                  "health_check": health_check_interactions(port)}
        started = time.monotonic()
        wrk = run_wrk(port, args.connections, args.duration)
        burst_s = time.monotonic() - started
        after_health_check = health_check_interactions(port)
        after_redis = redis_calls(redis)
        exit_status = children.stop(proc)
        time.sleep(1.0)
        after_xact = xact_commit(postgres)
    finally:
        children.stop_all()
        redis.close()
        postgres.close()
    return {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "code_dir": args.code_dir or str(REPO), "connections": args.connections, "duration_s": args.duration,
            "burst_s": round(burst_s, 2), "exit_status": exit_status,
            "wrk": {key: value for key, value in wrk.items() if key != "raw"}, "wrk_output": wrk["raw"],
            "db_transactions": after_xact - before["xact_commit"],
            "health_check_interactions": after_health_check - before["health_check"],
            "redis_ping": after_redis["ping"] - before["redis"]["ping"],
            "redis_evalsha": after_redis["evalsha"] - before["redis"]["evalsha"]}


def print_report(doc: dict[str, Any]) -> None:
    """The burst and what it cost."""
    wrk = doc["wrk"]
    print(f"\n/health/detailed, {doc['connections']} connections for {doc['duration_s']} s "
          f"(server code: {doc['code_dir']})")
    print(f"  answers: {wrk['requests']} ({wrk['requests_per_s']:.0f}/s), non-2xx {wrk['non_2xx']}")
    print(f"  Postgres transactions (xact_commit): {doc['db_transactions']}")
    print(f"  health_check DB interactions (the service's own count): {doc['health_check_interactions']:g}")
    print(f"  Redis PING: {doc['redis_ping']}, EVALSHA: {doc['redis_evalsha']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write the JSON; children are always stopped."""
    return run_bench("health_probe_burst", parse_args(argv), measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
