"""What wrk on ``/health/detailed`` of ``tenantsvc --role web`` costs Postgres and Redis (issue 11)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import Bench, Load, bench_parser, public, run_main, scrape  # noqa: E402

from tests.support.metrics import sample_delta  # noqa: E402

DBNAME = "tenantsvc_health_burst"


def measure(bench: Bench) -> dict[str, Any]:
    """Read the counters, burst, stop the server (its backends flush their statistics), read them again."""
    from tests.support.postgres import PostgresServer
    from tests.support.redis_server import RedisServer

    postgres, redis = PostgresServer(), RedisServer()
    commits = lambda: int(postgres.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",  # noqa
                                           (DBNAME,))[0][0])
    calls = lambda: {n: int(c) for n, c in re.findall(r"cmdstat_(ping|evalsha):calls=(\d+)", subprocess.run(  # noqa
        ["redis-cli", "-p", str(redis.port), "INFO", "commandstats"], capture_output=True, text=True, timeout=10).stdout)}
    try:
        postgres.start()
        redis.start()
        server = bench.tenantsvc("tenantsvc", "--role", "web", "--demo", REDIS_URL=redis.url,
                                 DATABASE_URL=postgres.database_url(postgres.create_database(DBNAME)))
        time.sleep(1.5)  # the start-up work's statistics reach pg_stat_database (flushed at most every second)
        before, commits_before, calls_before = scrape(server.port), commits(), calls()
        wrk = bench.wrk(server, Load("/health/detailed"), bench.args.duration, threads=2)
        after, calls_after = scrape(server.port), calls()
        exit_status = bench.stop(server)
        time.sleep(1.0)
        transactions = commits() - commits_before
    finally:
        redis.close()
        postgres.close()
    return {"code_dir": bench.args.code_dir or "this tree", "connections": bench.args.connections,
            "duration_s": bench.args.duration, "exit_status": exit_status, "wrk": public(wrk),
            "db_transactions": transactions, "redis": {n: calls_after.get(n, 0) - calls_before.get(n, 0) for n in
                                                        ("ping", "evalsha")},
            "health_check_interactions": sum(sample_delta(before, after, "db_interactions_total", "outcome",
                                                          name="health_check").values())}


def report(doc: dict[str, Any]) -> None:
    """The burst and what it cost."""
    wrk = doc["wrk"]
    print(f"\n/health/detailed, {doc['connections']} connections for {doc['duration_s']:g} s (server code: {doc['code_dir']})")
    print(f"  answers: {wrk['requests']} ({wrk['requests_per_s']:.0f}/s), errors or non-2xx {wrk['errors']}")
    print(f"  Postgres transactions (xact_commit): {doc['db_transactions']}")
    print(f"  health_check DB interactions (the service's own count): {doc['health_check_interactions']:g}")
    print(f"  Redis PING: {doc['redis']['ping']}, EVALSHA: {doc['redis']['evalsha']}")


if __name__ == "__main__":
    sys.exit(run_main("health-probe-burst", bench_parser(__doc__, connections=50, duration=(10.0, "seconds of wrk"))
                      .parse_args(), measure, report))
