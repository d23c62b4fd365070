"""Fair rate limits under a realistic tenant (issue 11): ``--players`` players with think time, then the same players
while one client floods the odds, against a real ``twistd tenantsvc --demo`` with its default limits (``--redis``:
the fleet-wide limiter on a throwaway Redis). Per phase and kind: requests, 429 share, statuses, latency."""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_freeze import first_price, player_request, sign_up  # noqa: E402
from runner import Bench, bench_parser, run_main, scrape  # noqa: E402

from tests.support.http import LoopbackConnection  # noqa: E402

KINDS, ABUSER, PHASES = ("odds", "me", "bets", "bet"), "127.0.0.250", ("players", "flood")


def tally(answers: list[tuple[int, float]]) -> dict[str, Any]:
    """Requests, share answered 429, statuses, median and p99 latency of (status, seconds) pairs."""
    if not answers:
        return {"n": 0}
    statuses, ordered = Counter(s for s, _ in answers), sorted(t * 1000 for _, t in answers)
    return {"n": len(answers), "rate_limited_percent": round(100 * statuses[429] / len(answers), 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "median_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)}


def measure(bench: Bench) -> dict[str, Any]:
    """Start the server (and Redis), sign the players up, run both phases."""
    from tests.support.redis_server import RedisServer

    args, redis, env = bench.args, None, {}
    if bench.server_pin:  # this process (the players' threads) on the load CPU
        os.sched_setaffinity(0, {args.load_cpu})
    if args.redis and not args.redis_url:
        redis = RedisServer()
        redis.start()
    if redis or args.redis_url:
        env["REDIS_URL"] = args.redis_url or redis.url
    try:
        server = bench.tenantsvc("tenantsvc", ready=lambda p: bool(first_price(p)), **env)
        mix = {k: float(w) for k, _, w in (part.partition("=") for part in args.mix.split(","))}
        price, phase, stop, flooding = first_price(server.port), [PHASES[0]], threading.Event(), threading.Event()
        answers: dict[tuple[str, str], list] = defaultdict(list)
        players = [(i, f"player{i:02d}", f"127.0.0.{10 + i}") for i in range(args.players)]
        cookies = [sign_up(LoopbackConnection(server.port, source=address), name) for _, name, address in players]

        def timed(conn: LoopbackConnection, kind: str, cookie: str, key: str) -> None:
            sent = time.monotonic()
            try:
                status = player_request(conn, kind, cookie, price, key).status
            except OSError:
                status = 0  # no answer: counted under status 0
            answers[(phase[0], "abuser" if conn is abuser_conn else kind)].append((status, time.monotonic() - sent))

        def player(index: int, name: str, address: str) -> None:
            rng, conn, serial = random.Random(args.seed * 1000 + index), LoopbackConnection(server.port, source=address), 0
            stop.wait(rng.uniform(0, args.think))  # players do not all arrive at once
            while not stop.is_set():
                serial += 1
                timed(conn, rng.choices(list(mix), list(mix.values()))[0], cookies[index],
                      f"{rng.choice(('soccer', 'basketball'))}-players-{name}-{serial}")
                stop.wait(rng.uniform(0.5, 1.5) * args.think)

        def abuser() -> None:
            flooding.wait()
            while not stop.is_set():
                timed(abuser_conn, "odds", "", "soccer-abuser")

        abuser_conn = LoopbackConnection(server.port, source=ABUSER)
        threads = [threading.Thread(target=player, args=p, daemon=True) for p in players]
        threads.append(threading.Thread(target=abuser, daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(args.duration)
        phase[0] = PHASES[1]
        flooding.set()
        time.sleep(args.duration)
        stop.set()
        for thread in threads:
            thread.join(35)
        decisions = {",".join(f"{k}={v}" for k, v in labels): value for (name, labels), value
                     in sorted(scrape(server.port).items()) if name == "ratelimit_decisions_total" and value}
    finally:
        if redis:
            redis.close()
    return {"code_dir": args.code_dir or "this tree", "redis": bool(env), "players": args.players,
            "duration_s_per_phase": args.duration, "think_s": args.think, "mix": mix, "pinning": bench.pin_note,
            "phases": {p: {k: tally(answers[(p, k)]) for k in (*KINDS, "abuser")} for p in PHASES},
            "ratelimit_decisions": decisions}


def report(doc: dict[str, Any]) -> None:
    """Per phase and kind: requests, rate, 429 share, latency, statuses; the limiter's decisions."""
    print(f"\n{doc['players']} players, {doc['duration_s_per_phase']} s per phase, think {doc['think_s']} s, "
          f"{'with' if doc['redis'] else 'without'} Redis; server code: {doc['code_dir']} ({doc['pinning']})")
    print(f"{'phase':<8} {'kind':<7} {'n':>6} {'req/s':>7} {'429 %':>6} {'median':>9} {'p99':>9}  statuses")
    for phase, kinds in doc["phases"].items():
        for kind, row in ((k, r) for k, r in kinds.items() if r["n"]):
            print(f"{phase:<8} {kind:<7} {row['n']:>6} {row['n'] / doc['duration_s_per_phase']:>7.1f} "
                  f"{row['rate_limited_percent']:>6.1f} {row['median_ms']:>7.1f}ms {row['p99_ms']:>7.1f}ms  {row['statuses']}")
    print("ratelimit_decisions_total:")
    for labels, value in doc["ratelimit_decisions"].items():
        print(f"  {{{labels}}} {value:g}")


if __name__ == "__main__":
    parser = bench_parser(__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of each phase")
    parser.add_argument("--players", type=int, choices=range(1, 201), default=20, metavar="1-200")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between a player's actions")
    parser.add_argument("--mix", default="odds=70,me=15,bets=10,bet=5", help="weights of the players' actions")
    parser.add_argument("--redis", action="store_true", help="with a throwaway redis-server (fleet-wide limiter)")
    parser.add_argument("--redis-url", default="", help="with this (throwaway, loopback) Redis instead")
    parser.add_argument("--seed", type=int, default=11)
    sys.exit(run_main("players-bench", parser.parse_args(), measure, report))
