"""Feed bench (issue 6): one odds poll of a synthetic soccer document: parse vs ``json.loads``, save/re-save/read on
SQLite and a throwaway Postgres (medians of ``--runs``)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tenantsvc.adapters.db import odds_store  # noqa: E402
from tenantsvc.adapters.db.dialects import dialect_for  # noqa: E402
from tenantsvc.adapters.db.migrations import apply_migrations_txn  # noqa: E402
from tenantsvc.adapters.db.pool import Txn  # noqa: E402
from tenantsvc.config import load_settings  # noqa: E402
from tenantsvc.core.goalserve_odds import parse_odds_document  # noqa: E402
from tenantsvc.core.odds import OddsSnapshot  # noqa: E402

KICKOFF_DAY = datetime.now(timezone.utc) + timedelta(days=1)
CHANGED_SHARE = 20  # one price in 20 (5 %) moves between the two snapshots of the "changed" re-save


MARKETS = (("1", "Match Winner", (("Home", "2.10"), ("Draw", "3.40"), ("Away", "3.50"))),
           ("222", "Double Chance", (("Home/Draw", "1.30"), ("Home/Away", "1.33"), ("Draw/Away", "1.72"))),
           ("15", "Both Teams To Score", (("Yes", "1.66"), ("No", "2.15"))))
TOTALS = [{"type": "total", "name": f"{g}.5", "ismain": "True" if g == 2 else "False",
           "odds": [{"name": "Over", "value": f"{1.3 + 0.3 * g:.2f}"}, {"name": "Under", "value": f"{3.2 - 0.3 * g:.2f}"}]}
          for g in range(5)]


def _market(market_id: str, name: str, odds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": market_id, "value": name, "stop": "False",
            "bookmakers": [{"id": "16", "name": "bet365", "stop": "False", "odds": odds}]}


def synthetic_document(matches: int) -> bytes:
    """A standard-shape soccer odds document with ``matches`` matches in leagues of 20."""
    odds = [*(_market(i, name, [{"name": k, "value": v} for k, v in prices]) for i, name, prices in MARKETS),
            _market("5", "Goals Over/Under", TOTALS)]

    def match(n: int) -> dict[str, Any]:
        kickoff = KICKOFF_DAY + timedelta(minutes=15 * (n % 40))
        return {"id": str(8_000_000 + n), "status": "Not Started", "formatted_date": kickoff.strftime("%d.%m.%Y"),
                "time": kickoff.strftime("%H:%M"), "localteam": {"id": "1", "name": f"Home {n}"},
                "visitorteam": {"id": "2", "name": f"Away {n}"}, "odds": odds}

    categories = [{"name": f"Country: League {league // 20}", "id": str(league),
                   "matches": [match(n) for n in range(league, min(league + 20, matches))]}
                  for league in range(0, matches, 20)]
    return json.dumps({"scores": {"sport": "soccer", "ts": str(int(time.time())), "categories": categories}}).encode()


def with_moved_prices(snapshot: OddsSnapshot) -> OddsSnapshot:
    """``snapshot`` with every ``CHANGED_SHARE``-th price (in document order) 0.01 higher."""
    counter = iter(range(sum(len(match.prices) for match in snapshot.matches)))
    moved = Decimal("0.01")
    matches = tuple(
        replace(match, prices=tuple(replace(price, odds=price.odds + moved) if next(counter) % CHANGED_SHARE == 0
                                    else price for price in match.prices))
        for match in snapshot.matches
    )
    return replace(snapshot, matches=matches)


def median_seconds(work: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``work()`` over ``runs`` runs."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_transaction(connection: Any, dialect: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(txn, *args)`` in one transaction on a raw DB-API connection, as the pool does."""
    cursor = connection.cursor()
    dialect.begin(cursor)
    try:
        result = fn(Txn(cursor, dialect), *args)
        connection.commit()
        return result
    except BaseException:
        connection.rollback()
        raise


def measure_database(name: str, connection: Any, dialect: Any, snapshot: OddsSnapshot, runs: int) -> dict[str, float]:
    """Migrate, then time the first save, unchanged and changed re-saves, and the odds API read."""
    in_transaction(connection, dialect, apply_migrations_txn, dialect.types)

    def save(this: OddsSnapshot) -> None:
        in_transaction(connection, dialect, odds_store.save_odds_txn, this, datetime.now(timezone.utc))

    first = median_seconds(lambda: save(snapshot), 1)
    again = median_seconds(lambda: save(snapshot), runs)
    alternates = iter([with_moved_prices(snapshot), snapshot] * runs)
    changed = median_seconds(lambda: save(next(alternates)), runs)
    read = median_seconds(lambda: in_transaction(connection, dialect, odds_store.upcoming_odds_txn, "soccer",
                                                 datetime.now(timezone.utc), 300), runs)
    print(f"  {name:8s} first save {first * 1000:8.1f} ms   re-save unchanged {again * 1000:8.1f} ms   "
          f"5 % changed {changed * 1000:8.1f} ms   read 300 matches {read * 1000:6.1f} ms")
    return {"first_save_ms": first * 1000, "resave_ms": again * 1000, "resave_changed_ms": changed * 1000,
            "read_ms": read * 1000}


def open_connection(database_url: str) -> tuple[Any, Any]:
    """A DB-API connection made and configured exactly as the service's pool makes its own."""
    import importlib

    dialect = dialect_for(load_settings({"DATABASE_URL": database_url}, role="worker_odds", demo=True))
    spec = dialect.pool_spec()
    connection = importlib.import_module(spec.module).connect(*spec.args, **spec.kwargs)
    dialect.open_connection(connection)
    return connection, dialect


def main() -> None:
    """Build the document, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matches", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    options = parser.parse_args()
    body = synthetic_document(options.matches)
    baseline = median_seconds(lambda: json.loads(body), options.runs)
    parse = median_seconds(lambda: parse_odds_document("soccer", body), options.runs)
    snapshot = parse_odds_document("soccer", body)
    prices = sum(len(match.prices) for match in snapshot.matches)
    print(f"document: {len(body) / 1e6:.1f} MB, {len(snapshot.matches)} matches, {prices} prices offered")
    print(f"  json.loads (baseline) {baseline * 1000:8.1f} ms")
    print(f"  parse_odds_document   {parse * 1000:8.1f} ms  = {parse / baseline:.1f}x json.loads (in a thread)")
    with tempfile.TemporaryDirectory() as directory:
        connection, dialect = open_connection(os.path.join(directory, "bench.sqlite3"))
        measure_database("sqlite", connection, dialect, snapshot, options.runs)
        connection.close()
    if not options.no_postgres:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.start()
        try:
            connection, dialect = open_connection(server.database_url(server.create_database()))
            measure_database("postgres", connection, dialect, snapshot, options.runs)
            connection.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
