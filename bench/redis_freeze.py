"""Player-route latency while Redis is frozen (SIGSTOP, then SIGCONT) under ``twistd tenantsvc --role all --demo`` (issue 10)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import Bench, BenchError, answer_figures, bench_parser, print_table, run_main, scrape  # noqa: E402

from tests.support.http import HttpAnswer, LoopbackConnection  # noqa: E402

TENANT, PASSWORD = "demo", "redis freeze password"
KINDS, PLAYER_KINDS, ONSET_S = ("me", "login", "bet", "theme"), ("me", "login", "bet"), 1.0
# RATE_LIMIT_LOGIN_CLIENT: the per-client auth bucket's old name, which older trees (--code-dir) read too
UNLIMITED = {f"RATE_LIMIT_{n}": "1000000/100000" for n in ("PUBLIC", "AUTH", "READ", "WRITE", "LOGIN_CLIENT",
                                                           "READ_CLIENT", "WRITE_CLIENT", "LOGIN_USER")}


def login(conn: LoopbackConnection, username: str) -> str:
    """Log ``username`` in; its ``tsid=…`` cookie."""
    answer = conn.request("POST", f"/{TENANT}/api/auth/login", {"username": username, "password": PASSWORD})
    if answer.status != 200 or not (answer.header("set-cookie") or "").startswith("tsid="):
        raise BenchError(f"login {username}: {answer.status} {answer.body[:200]!r}")
    return answer.headers["set-cookie"].split(";", 1)[0]


def sign_up(conn: LoopbackConnection, username: str, log_in: bool = True) -> str:
    """Register (or find) ``username`` and log it in; its cookie ("" without ``log_in``)."""
    answer = conn.request("POST", f"/{TENANT}/api/auth/register", {"username": username, "password": PASSWORD})
    if answer.status not in (201, 409):
        raise BenchError(f"register {username}: {answer.status} {answer.body[:200]!r}")
    return login(conn, username) if log_in else ""


def first_price(port: int) -> dict[str, Any]:
    """A bettable 1x2 selection of the demo's soccer odds ({} until the odds are in)."""
    answer = LoopbackConnection(port).request("GET", f"/{TENANT}/api/public/odds/soccer")
    for match in answer.json()["matches"] if answer.status == 200 else []:
        for market in (m for m in match["markets"] if m["market"] == "1x2"):
            for selection in (s for s in market["selections"] if not s["suspended"]):
                return {"match_id": match["id"], "market": "1x2", "selection": selection["selection"], "line": None,
                        "odds": selection["odds"]}
    return {}


def player_request(conn: LoopbackConnection, kind: str, cookie: str, price: dict, key: str) -> HttpAnswer:
    """One request of ``kind`` (odds, me, bets, bet, login, theme) on ``conn``."""
    auth = {"Cookie": cookie}
    return {"odds": lambda: conn.request("GET", f"/{TENANT}/api/public/odds/{key.split('-')[0]}"),
            "me": lambda: conn.request("GET", f"/{TENANT}/api/me", headers=auth),
            "bets": lambda: conn.request("GET", f"/{TENANT}/api/bets?limit=20", headers=auth),
            "bet": lambda: conn.request("POST", f"/{TENANT}/api/bets", {**price, "stake_cents": 100},
                                        headers={**auth, "Idempotency-Key": key}),
            "login": lambda: conn.request("POST", f"/{TENANT}/api/auth/login",
                                          {"username": cookie, "password": PASSWORD}),
            "theme": lambda: conn.request("GET", f"/{TENANT}/api/public/load-theme")}[kind]()


def figures(answers: list[tuple]) -> dict[str, Any]:
    """``answer_figures`` of (kind, sent_at, elapsed_s, status, well formed) tuples, and how many were malformed."""
    return answer_figures([(a[3], a[2]) for a in answers]) | ({"malformed": sum(not a[4] for a in answers)} if answers else {})


def measure(bench: Bench) -> dict[str, Any]:
    """Loops of each kind; freeze Redis after ``--before`` s for ``--freeze`` s; wait for every kind to recover."""
    from tests.support.postgres import PostgresServer
    from tests.support.redis_server import RedisServer

    args, postgres, redis = bench.args, PostgresServer(), RedisServer()
    answers: list[tuple] = []
    stop = threading.Event()
    try:
        postgres.start()
        redis.start()
        server = bench.tenantsvc("tenantsvc", "--role", "all", "--demo", ready=lambda p: bool(first_price(p)), **UNLIMITED,
                                 DATABASE_URL=postgres.database_url(postgres.create_database("tenantsvc_freeze")),
                                 REDIS_URL=redis.url, ADMIN_TOKEN="redis-freeze-admin-token-0123")
        price, setup = first_price(server.port), LoopbackConnection(server.port)
        players = [(kind, f"{kind}{i}", sign_up(setup, f"{kind}{i}", kind != "login") if kind != "theme" else "")
                   for kind in KINDS for i in range(getattr(args, kind))]  # one at a time: logins hash on two threads

        def loop(kind: str, username: str, cookie: str) -> None:
            conn, serial = LoopbackConnection(server.port), 0
            while not stop.is_set():
                serial, sent = serial + 1, time.monotonic()
                try:
                    answer = player_request(conn, kind, username if kind == "login" else cookie, price,
                                            f"freeze-{username}-{serial}")
                    status, ok = answer.status, answer.header("content-type") == "application/json" and (
                        answer.status != 503 or (answer.header("retry-after") or "").isdigit())
                except OSError:
                    status, ok = 0, False
                answers.append((kind, sent - origin, time.monotonic() - sent, status, ok))
                if status == 401 and kind in ("me", "bet"):  # the session did not survive: log in again
                    cookie = login(conn, username)
                stop.wait(args.pause)

        threads = [threading.Thread(target=loop, args=player, daemon=True) for player in players]
        origin = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.before)
        frozen_at = time.monotonic() - origin
        redis.pause()
        time.sleep(args.freeze)
        redis.resume()
        thawed_at, deadline, recovered = time.monotonic() - origin, time.monotonic() + args.after_max, {}
        while time.monotonic() < deadline and len(recovered) < len(PLAYER_KINDS):
            for kind, sent, elapsed, status, _ in list(answers):
                if kind in PLAYER_KINDS and status in (200, 201) and sent >= thawed_at:
                    recovered.setdefault(kind, round(sent + elapsed - thawed_at, 3))
            time.sleep(0.05)
        time.sleep(args.tail)
        stop.set()
        for thread in threads:
            thread.join(35)
        metrics = {f"{n}{json.dumps(dict(labels)) if labels else ''}": v for (n, labels), v in scrape(server.port).items()
                   if n.startswith(("circuit_breaker", "redis_call_failures", "ratelimit_decisions"))
                   and (("breaker_name", "redis") in labels or not n.startswith("circuit_"))}
    finally:
        stop.set()
        redis.close()
        postgres.close()
    phases = {"before": (0.0, frozen_at), "freeze_onset": (frozen_at, frozen_at + ONSET_S),
              "freeze_rest": (frozen_at + ONSET_S, thawed_at), "after": (thawed_at, float("inf"))}

    def phase_of(answer: tuple) -> str:  # in flight when the freeze began: its onset
        if answer[1] < frozen_at <= answer[1] + answer[2]:
            return "freeze_onset"
        return next(name for name, (start, end) in phases.items() if start <= answer[1] < end)

    return {"code_dir": args.code_dir or "this tree", "freeze_s": args.freeze, "metrics": metrics,
            "table": {k: {p: figures([a for a in answers if a[0] == k and phase_of(a) == p]) for p in phases}
                      for k in KINDS}, "first_success_after_thaw_s": recovered}


def report(doc: dict[str, Any]) -> None:
    """Per kind and phase: answers, latency, statuses; the recovery; the Redis breaker's figures."""
    print(f"\nRedis frozen for {doc['freeze_s']} s (server code: {doc['code_dir']})")
    print_table(("kind", "phase", "n", "median", "max", "statuses"), [
        (kind, phase, row["n"], f"{row['median_ms']:.1f}ms", f"{row['max_ms']:.1f}ms",
         f"{row['statuses']}{'  MALFORMED ' + str(row['malformed']) if row['malformed'] else ''}")
        for kind, phases in doc["table"].items() for phase, row in phases.items() if row["n"]], left=2, indent="")
    print("first 2xx after the thaw (s):", doc["first_success_after_thaw_s"])
    for name, value in sorted(doc["metrics"].items()):
        print(f"  {name} {value:g}")


if __name__ == "__main__":
    sys.exit(run_main("redis-freeze", bench_parser(
        __doc__, before=(3.0, "seconds of traffic before the freeze"), freeze=(5.0, "seconds Redis stays frozen"),
        after_max=(20.0, "longest wait for recovery"), tail=(1.0, "seconds after it"),
        pause=(0.05, "seconds between a loop's requests"), me=(4, "me loops"), login=(2, "login loops"),
        bet=(2, "bet loops"), theme=(1, "theme loops")).parse_args(), measure, report))
