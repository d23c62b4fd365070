"""Fair rate limits under a realistic tenant (issue 11, item 6): 20 players with think time, then the same players
while one abusive client floods the odds, against a real ``twistd tenantsvc`` with its default limits.

What it does, in order:

1. Starts ``twistd -n tenantsvc --demo`` (role ``all``: the demo tenant and its sample odds, embedded SQLite,
   pinned to ``--server-cpu``) with every ``RATE_LIMIT_*`` at its default (``theme_bench``'s start-up, which
   scrubs the environment), without Redis or, with ``--redis``, with a throwaway ``redis-server`` (the
   fleet-wide limiter in Lua). ``--code-dir`` runs another source tree, e.g. the commit before fair limits:
   that is how the "before" figures come from the same script.
2. Registers and logs in ``--players`` players, each from its own loopback address (``127.0.0.10`` …): on
   loopback every ``127.x.y.z`` is a distinct socket peer, i.e. a distinct client.
3. Phase ``players`` (``--duration`` s): each player, on its own keep-alive connection and thread, waits a
   think time (uniform ``--think`` ± 50 %), then does one action drawn from the mix: read the odds of a
   sport (``odds``), ``GET /me`` (``me``), its bet history (``bets``), or a 1 € bet (``bet``, unique
   ``Idempotency-Key``). The defaults (think 2 s, odds 70 %) make about 7 odds reads a second in all, as in
   the issue's Locust run.
4. Phase ``flood`` (``--duration`` s): the same players, plus one abusive client (``127.0.0.250``) reading
   the odds in a closed loop as fast as the server answers it.
5. Prints per phase and kind the requests, the share answered 429 and the other statuses, and the median and
   99th-percentile latency; the abuser's 429 share; ``ratelimit_decisions_total`` from ``/metrics``. Writes
   ``bench/results/players-bench-<UTC timestamp>.json``.

Everything listens on and connects to 127.0.0.1 (from 127.0.0.x sources); every child is stopped when the
script ends, fails or is interrupted; every wait has a deadline. It measures and reports (exit 0); it asserts
nothing. The machine's other load shows in the latencies, not in the 429 shares, which depend only on the
request rates and the buckets.

    .venv/bin/python bench/players_bench.py [--duration 60] [--players 20] [--think 2] [--redis | --redis-url URL]
    git worktree add /tmp/limits-before 71fcdb2 && .venv/bin/python bench/players_bench.py --code-dir /tmp/limits-before
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_freeze import PASSWORD, TENANT, Connection, first_price, login, session_cookie  # noqa: E402
from harness import (  # noqa: E402
    BenchError, Children, bench_parser, pinning, run_bench, scrape_metrics, start_redis, start_tenantsvc,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
PLAYER_KINDS = ("odds", "me", "bets", "bet")
DEFAULT_MIX = "odds=70,me=15,bets=10,bet=5"
SPORTS = ("soccer", "basketball")  # the demo feed's
ABUSER = "127.0.0.250"
PHASES = ("players", "flood")


def player_address(index: int) -> str:
    """The loopback address player ``index`` connects from: a client of its own."""
    return f"127.0.0.{10 + index}"


@dataclass
class Tally:
    """Statuses and latencies of one kind of request in one phase."""

    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, status: int, elapsed_s: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(elapsed_s * 1000.0)

    def summary(self) -> dict[str, Any]:
        """Requests, share answered 429, statuses, median and p99 latency."""
        n = sum(self.statuses.values())
        if not n:
            return {"n": 0}
        ordered = sorted(self.latencies_ms)
        return {"n": n, "rate_limited_percent": round(100.0 * self.statuses[429] / n, 1),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "median_ms": round(statistics.median(ordered), 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)}


class Workload:
    """The players' threads and the abuser's, recording into per-phase tallies."""

    def __init__(self, port: int, players: list[tuple[str, str, str]], mix: dict[str, float], think_s: float,
                 price: dict[str, Any], seed: int):
        self._port = port
        self._players = players  # (username, address, cookie)
        self._kinds, self._weights = list(mix), list(mix.values())
        self._think_s = think_s
        self._price = price
        self._seed = seed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flooding = threading.Event()
        self.phase = PHASES[0]
        self.tallies = {phase: {kind: Tally() for kind in (*PLAYER_KINDS, "abuser")} for phase in PHASES}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index, player in enumerate(self._players):
            thread = threading.Thread(target=self._player, args=(index, *player), daemon=True)
            self._threads.append(thread)
            thread.start()
        abuser = threading.Thread(target=self._abuser, daemon=True)
        self._threads.append(abuser)
        abuser.start()

    def flood(self) -> None:
        """Enter the second phase: the abuser starts."""
        with self._lock:
            self.phase = PHASES[1]
        self._flooding.set()

    def stop(self) -> None:
        self._stop.set()
        self._flooding.set()
        for thread in self._threads:
            thread.join(35.0)

    def _record(self, kind: str, status: int, elapsed_s: float) -> None:
        with self._lock:
            self.tallies[self.phase][kind].add(status, elapsed_s)

    def _timed(self, conn: Connection, method: str, path: str, **options: Any) -> tuple[int, float]:
        sent = time.monotonic()
        try:
            status = conn.request(method, path, **options)[0]
        except (OSError, http.client.HTTPException):
            status = 0  # no answer (refused, reset, timeout): counted under status 0
        return status, time.monotonic() - sent

    def _player(self, index: int, username: str, address: str, cookie: str) -> None:
        rng = random.Random(self._seed * 1000 + index)
        conn = Connection(self._port, source=address)
        serial = 0
        self._stop.wait(rng.uniform(0, self._think_s))  # players do not all arrive at once
        while not self._stop.is_set():
            kind = rng.choices(self._kinds, self._weights)[0]
            if kind == "odds":
                status, elapsed = self._timed(conn, "GET", f"/{TENANT}/api/public/odds/{rng.choice(SPORTS)}")
            elif kind == "me":
                status, elapsed = self._timed(conn, "GET", f"/{TENANT}/api/me", headers={"Cookie": cookie})
            elif kind == "bets":
                status, elapsed = self._timed(conn, "GET", f"/{TENANT}/api/bets?limit=20", headers={"Cookie": cookie})
            else:
                serial += 1
                status, elapsed = self._timed(
                    conn, "POST", f"/{TENANT}/api/bets", body={**self._price, "stake_cents": 100},
                    headers={"Cookie": cookie, "Idempotency-Key": f"players-{username}-{serial}"})
            self._record(kind, status, elapsed)
            self._stop.wait(rng.uniform(0.5, 1.5) * self._think_s)

    def _abuser(self) -> None:
        self._flooding.wait()
        conn = Connection(self._port, source=ABUSER)
        while not self._stop.is_set():
            status, elapsed = self._timed(conn, "GET", f"/{TENANT}/api/public/odds/soccer")
            self._record("abuser", status, elapsed)


def sign_up(port: int, count: int) -> list[tuple[str, str, str]]:
    """Register and log in ``count`` players, each from its own address; (username, address, cookie)."""
    players = []
    for index in range(count):
        username, address = f"player{index:02d}", player_address(index)
        conn = Connection(port, source=address)
        status, _, body = conn.request("POST", f"/{TENANT}/api/auth/register",
                                       {"username": username, "password": PASSWORD})
        if status not in (201, 409):
            raise BenchError(f"register {username}: {status} {body[:200]!r}")
        status, headers, body = login(conn, username)
        if status != 200:
            raise BenchError(f"login {username} from {address}: {status} {body[:200]!r}")
        players.append((username, address, session_cookie(headers)))
    return players


def decisions(port: int) -> dict[str, float]:
    """``ratelimit_decisions_total`` samples as ``{"label=value,…": count}`` (non-zero only)."""
    samples = scrape_metrics(port)
    return {",".join(f"{k}={v}" for k, v in labels): value for (name, labels), value in sorted(samples.items())
            if name == "ratelimit_decisions_total" and value}


def measure(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """One run: start the server (and Redis), sign up the players, run both phases, collect the figures."""
    server_pin, _, pin_note = pinning(args.server_cpu, args.load_cpu, "load client")
    if server_pin:  # this process (the load client's threads) on the other CPU
        os.sched_setaffinity(0, {args.load_cpu})
    env = {"PYTHONPATH": str(Path(args.code_dir).resolve() if args.code_dir else REPO)}
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    elif args.redis:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise BenchError("--redis: redis-server not found")
        _, redis_port = start_redis(children, redis_server, workdir, server_pin)
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    server = start_tenantsvc(children, args.python, workdir / "tenantsvc", server_pin, env_extra=env, wait_for="readyz")
    port = server.port
    wait_until(lambda: bool(first_price(port)), server.proc, "the demo odds", server.logs)
    players = sign_up(port, args.players)
    mix = parse_mix(args.mix)
    workload = Workload(port, players, mix, args.think, first_price(port), args.seed)
    workload.start()
    try:
        time.sleep(args.duration)
        workload.flood()
        time.sleep(args.duration)
    finally:
        workload.stop()
    return {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "code_dir": args.code_dir or str(REPO), "redis": bool(args.redis or args.redis_url),
            "players": args.players,
            "duration_s_per_phase": args.duration, "think_s": args.think, "mix": mix, "pinning": pin_note,
            "phases": {phase: {kind: tally.summary() for kind, tally in kinds.items()}
                       for phase, kinds in workload.tallies.items()},
            "ratelimit_decisions": decisions(port)}


def parse_mix(text: str) -> dict[str, float]:
    """``odds=70,me=15,bets=10,bet=5`` as weights; every kind must be one of ``PLAYER_KINDS``."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in PLAYER_KINDS:
            raise BenchError(f"--mix: unknown kind {name!r}; expected some of {', '.join(PLAYER_KINDS)}")
        mix[name.strip()] = float(weight)
    return mix


def print_report(doc: dict[str, Any]) -> None:
    """Per phase and kind: requests, 429 share, statuses, latency."""
    print(f"\n{doc['players']} players, {doc['duration_s_per_phase']} s per phase, think {doc['think_s']} s, "
          f"{'with' if doc['redis'] else 'without'} Redis; server code: {doc['code_dir']} ({doc['pinning']})")
    print(f"{'phase':<8} {'kind':<7} {'n':>6} {'req/s':>7} {'429 %':>6} {'median':>9} {'p99':>9}  statuses")
    for phase, kinds in doc["phases"].items():
        for kind, row in kinds.items():
            if row["n"]:
                rate = row["n"] / doc["duration_s_per_phase"]
                print(f"{phase:<8} {kind:<7} {row['n']:>6} {rate:>7.1f} {row['rate_limited_percent']:>6.1f} "
                      f"{row['median_ms']:>7.1f}ms {row['p99_ms']:>7.1f}ms  {row['statuses']}")
    print("ratelimit_decisions_total:")
    for labels, value in doc["ratelimit_decisions"].items():
        print(f"  {{{labels}}} {value:g}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of each phase")
    parser.add_argument("--players", type=int, default=20, help="players, each from its own address (max 200)")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between a player's actions")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="weights of the players' actions")
    parser.add_argument("--redis", action="store_true", help="with a throwaway redis-server (fleet-wide limiter)")
    parser.add_argument("--redis-url", default="", help="with this (throwaway, loopback) Redis instead of starting one")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.players <= 200:
        parser.error("--players must be 1-200 (one 127.0.0.x address each)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write the JSON; children are always stopped."""
    return run_bench("players_bench", parse_args(argv), measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
