"""Fair rate limits (issue 11): players with think time, then the same while one client floods the odds (default limits)."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_freeze import first_price, player_request, sign_up  # noqa: E402
from runner import Bench, answer_figures, bench_parser, print_table, run_main, scrape  # noqa: E402

from tests.support.http import LoopbackConnection  # noqa: E402

KINDS, ABUSER, PHASES = ("odds", "me", "bets", "bet"), "127.0.0.250", ("players", "flood")


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
            "phases": {p: {k: answer_figures(answers[(p, k)]) for k in (*KINDS, "abuser")} for p in PHASES},
            "ratelimit_decisions": decisions}


def report(doc: dict[str, Any]) -> None:
    """Per phase and kind: requests, rate, 429 share, latency, statuses; the limiter's decisions."""
    print(f"\n{doc['players']} players, {doc['duration_s_per_phase']} s per phase, think {doc['think_s']} s, "
          f"{'with' if doc['redis'] else 'without'} Redis; server code: {doc['code_dir']} ({doc['pinning']})")
    print_table(("phase", "kind", "n", "req/s", "429 %", "median", "p99", "statuses"), [
        (phase, kind, row["n"], f"{row['n'] / doc['duration_s_per_phase']:.1f}", f"{row['rate_limited_percent']:.1f}",
         f"{row['median_ms']:.1f}ms", f"{row['p99_ms']:.1f}ms", row["statuses"])
        for phase, kinds in doc["phases"].items() for kind, row in kinds.items() if row["n"]], left=2, indent="")
    print("ratelimit_decisions_total:")
    for labels, value in doc["ratelimit_decisions"].items():
        print(f"  {{{labels}}} {value:g}")


if __name__ == "__main__":
    options = bench_parser(__doc__, duration=(60.0, "seconds of each phase"), players=(20, "1-200"),
                           think=(2.0, "mean think time between a player's actions"),
                           mix=("odds=70,me=15,bets=10,bet=5", "weights of the players' actions"),
                           redis=(False, "with a throwaway redis-server (fleet-wide limiter)"),
                           redis_url=("", "with this (throwaway, loopback) Redis instead"), seed=11).parse_args()
    if not 1 <= options.players <= 200:
        sys.exit("--players takes 1-200")
    sys.exit(run_main("players-bench", options, measure, report))
