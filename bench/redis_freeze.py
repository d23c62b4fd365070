"""Player-route latency while Redis is frozen (issue 10, item 4): a real ``twistd tenantsvc`` against a throwaway
Postgres and a throwaway Redis that this script SIGSTOPs, then SIGCONTs.

What it does, in order:

1. Starts a throwaway Postgres and Redis (``tests.support``: loopback, free ports, nothing kept) and
   ``twistd -n tenantsvc --role all --demo`` against them (the demo tenant and its sample odds, so players
   can bet), every ``RATE_LIMIT_*`` raised out of reach so no answer is a 429, ``LOG_FILE`` in a temp dir.
   ``--code-dir`` runs the server from another source tree (e.g. ``git archive`` of an older commit), which
   is how the "before" figures are measured with the same script.
2. Registers players and logs them in, then runs request loops in threads, each on its own keep-alive
   connection: ``me`` (``GET /demo/api/me``), ``login`` (``POST /demo/api/auth/login``: rate limits, session
   write), ``bet`` (``POST /demo/api/bets``, a unique ``Idempotency-Key`` each) and ``theme`` (the public
   load-theme), one request in flight per loop, ``--pause`` between two.
3. After ``--before`` seconds it freezes Redis (SIGSTOP) for ``--freeze`` seconds, thaws it (SIGCONT) and
   keeps the loops going until every player kind has answered 200 again (at most ``--after-max`` seconds).
4. Prints, per kind and phase (answered before the freeze; in flight when it began or sent in its first
   second, while a breaker would still be opening; sent during the rest of it; sent after the thaw), the
   statuses and the median and maximum latency, how long after the thaw each kind answered 200 again, and
   the Redis breaker's figures from ``/metrics`` where the server has one.
   Writes ``bench/results/redis-freeze-<UTC timestamp>.json``.

Everything listens on and connects to 127.0.0.1. Every child is stopped when the script ends, fails or is
interrupted; every wait has a deadline. A run takes about 30 s. It measures and reports (exit 0); it asserts
nothing about wall time.

    .venv/bin/python bench/redis_freeze.py [--freeze 5] [--before 3] [--me 4 --login 2 --bet 2 --theme 1]
    git archive <commit> | tar -x -C /tmp/before && .venv/bin/python bench/redis_freeze.py --code-dir /tmp/before
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    REPO, BenchError, Children, bench_parser, run_bench, start_tenantsvc, wait_until,
)

from tests.support.metrics import scraped_samples  # noqa: E402

ADMIN_TOKEN = "redis-freeze-admin-token-0123"
TENANT = "demo"
PASSWORD = "redis freeze password"
UNLIMITED = "1000000/100000"
# RATE_LIMIT_LOGIN_CLIENT: the per-client auth bucket's old name, which older trees (--code-dir) read too
RATE_LIMIT_VARIABLES = ("RATE_LIMIT_PUBLIC", "RATE_LIMIT_AUTH", "RATE_LIMIT_READ", "RATE_LIMIT_WRITE",
                        "RATE_LIMIT_LOGIN_CLIENT", "RATE_LIMIT_READ_CLIENT", "RATE_LIMIT_WRITE_CLIENT",
                        "RATE_LIMIT_LOGIN_USER")
HTTP_TIMEOUT_S = 30.0
KINDS = ("me", "login", "bet", "theme")
PLAYER_KINDS = ("me", "login", "bet")
ONSET_S = 1.0  # the first second of the freeze: requests in flight when it began, and the breaker closing on it
METRICS = ("circuit_breaker_state", "circuit_breaker_transitions_total", "circuit_breaker_rejections_total",
           "redis_call_failures_total", "ratelimit_decisions_total")


@dataclass
class Answer:
    """One request: kind, when it was sent (seconds since the loops started), how long it took, what came back."""

    kind: str
    sent_at: float
    elapsed_s: float
    status: int
    retry_after: str | None
    well_formed: bool


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, reopened after an error; ``source`` is the local
    address to connect from (any 127.x.y.z on loopback: each stands for a different client)."""

    def __init__(self, port: int, source: str | None = None):
        self._port = port
        self._source = (source, 0) if source else None
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request; (status, lower-cased headers, body)."""
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=HTTP_TIMEOUT_S,
                                                        source_address=self._source)
            try:
                self._conn.request(method, path, body=data, headers=all_headers)
                response = self._conn.getresponse()
                payload = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def login(conn: Connection, username: str) -> tuple[int, dict[str, str], bytes]:
    """POST login for ``username``."""
    return conn.request("POST", f"/{TENANT}/api/auth/login", {"username": username, "password": PASSWORD})


def session_cookie(headers: dict[str, str]) -> str:
    """The ``tsid=…`` pair of a successful login's Set-Cookie."""
    cookie = headers.get("set-cookie", "")
    if not cookie.startswith("tsid="):
        raise BenchError(f"login set no session cookie: {headers}")
    return cookie.split(";", 1)[0]


def first_price(port: int) -> dict[str, Any]:
    """A bettable selection of the demo odds: match id, market, selection, line and odds."""
    status, _, body = Connection(port).request("GET", f"/{TENANT}/api/public/odds/soccer")
    if status != 200:
        return {}
    for match in json.loads(body)["matches"]:
        for market in match["markets"]:
            if market["market"] == "1x2":
                for selection in market["selections"]:
                    if not selection["suspended"]:
                        return {"match_id": match["id"], "market": "1x2", "selection": selection["selection"],
                                "line": None, "odds": selection["odds"]}
    return {}


class Loops:
    """The request loops: each one request at a time, until ``stop``."""

    def __init__(self, port: int, counts: dict[str, int], pause_s: float, price: dict[str, Any]):
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = port
        self._pause_s = pause_s
        self._price = price
        self.started = time.monotonic()
        self._threads = []
        for kind in KINDS:
            for index in range(counts[kind]):
                username = f"{kind}{index}"
                cookie = ""
                if kind != "theme":
                    status, _, body = Connection(port).request(
                        "POST", f"/{TENANT}/api/auth/register", {"username": username, "password": PASSWORD})
                    if status not in (201, 409):
                        raise BenchError(f"register {username}: {status} {body[:200]!r}")
                if kind in ("me", "bet"):  # one at a time, before the loops: logins hash on two threads only
                    status, headers, body = login(Connection(port), username)
                    if status != 200:
                        raise BenchError(f"login {username}: {status} {body[:200]!r}")
                    cookie = session_cookie(headers)
                self._threads.append(threading.Thread(target=self._loop, args=(kind, username, cookie), daemon=True))

    def start(self) -> None:
        """Start every loop; ``started`` is the origin of ``Answer.sent_at``."""
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Answer]:
        """Stop the loops after their current request and return every answer."""
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT_S + 5)
        return self.answers

    def now(self) -> float:
        """Seconds since ``start``."""
        return time.monotonic() - self.started

    def _loop(self, kind: str, username: str, cookie: str) -> None:
        conn = Connection(self._port)
        serial = 0
        while not self._stop.is_set():
            serial += 1
            sent = time.monotonic()
            try:
                if kind == "me":
                    status, headers, body = conn.request("GET", f"/{TENANT}/api/me", headers={"Cookie": cookie})
                elif kind == "login":
                    status, headers, body = login(conn, username)
                elif kind == "bet":
                    status, headers, body = conn.request(
                        "POST", f"/{TENANT}/api/bets", {**self._price, "stake_cents": 100},
                        headers={"Cookie": cookie, "Idempotency-Key": f"freeze-{username}-{serial}"})
                else:
                    status, headers, body = conn.request("GET", f"/{TENANT}/api/public/load-theme")
            except (OSError, http.client.HTTPException):
                status, headers, body = 0, {}, b""
            elapsed = time.monotonic() - sent
            if kind in ("me", "bet") and status == 401:  # the session did not survive: log in again
                relogin, login_headers, _ = login(conn, username)
                cookie = session_cookie(login_headers) if relogin == 200 else cookie
            with self._lock:
                self.answers.append(Answer(kind, sent - self.started, elapsed, status, headers.get("retry-after"),
                                           _well_formed(status, headers, body)))
            self._stop.wait(self._pause_s)


def _well_formed(status: int, headers: dict[str, str], body: bytes) -> bool:
    """JSON, and a 503 is ``{"error": "unavailable"}`` with a numeric Retry-After."""
    if not headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return status != 503 or (payload.get("error") == "unavailable" and (headers.get("retry-after") or "").isdigit())


def start_server(args: argparse.Namespace, children: Children, workdir: Path, database_url: str,
                 redis_url: str) -> int:
    """``twistd -n tenantsvc --role all --demo`` on a free port; waits for /readyz and the demo odds."""
    code_dir = Path(args.code_dir).resolve() if args.code_dir else REPO
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code_dir), "LANG": "C.UTF-8",
           "HOME": str(workdir), "DATABASE_URL": database_url, "REDIS_URL": redis_url, "ADMIN_TOKEN": ADMIN_TOKEN,
           "LOG_FILE": str(workdir / "tenantsvc.log"), **{name: UNLIMITED for name in RATE_LIMIT_VARIABLES}}
    server = start_tenantsvc(children, args.python, workdir, [], args=("--role", "all", "--demo"), env=env,
                             wait_for="readyz")
    wait_until(lambda: bool(first_price(server.port)), server.proc, "the demo odds", server.logs)
    port = server.port
    return port


def scrape(port: int) -> dict[str, float]:
    """The Redis breaker's and the limiters' samples from ``/metrics`` (``name{labels}`` → value)."""
    _, _, body = Connection(port).request("GET", "/metrics")
    return {name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""): value
            for (name, labels), value in scraped_samples(body.decode("utf-8")).items()
            if name.startswith(METRICS) and (("breaker_name", "redis") in labels or not name.startswith("circuit_"))}


def figures(answers: list[Answer]) -> dict[str, Any]:
    """Count, statuses, median and max latency (ms) of ``answers``."""
    if not answers:
        return {"n": 0}
    values = sorted(a.elapsed_s * 1000 for a in answers)
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    return {"n": len(values), "statuses": dict(sorted(statuses.items())),
            "median_ms": round(statistics.median(values), 1), "max_ms": round(values[-1], 1),
            "malformed": sum(not a.well_formed for a in answers)}


def measure(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Run the whole scenario and return the results document."""
    from tests.support.postgres import PostgresServer
    from tests.support.redis_server import RedisServer

    postgres, redis = PostgresServer(), RedisServer()
    try:
        postgres.start()
        redis.start()
        database_url = postgres.database_url(postgres.create_database("tenantsvc_freeze"))
        port = start_server(args, children, workdir, database_url, redis.url)
        loops = Loops(port, {"me": args.me, "login": args.login, "bet": args.bet, "theme": args.theme},
                      args.pause, first_price(port))
        loops.start()
        try:
            time.sleep(args.before)
            frozen_at = loops.now()
            redis.pause()
            time.sleep(args.freeze)
            redis.resume()
            thawed_at = loops.now()
            deadline = time.monotonic() + args.after_max
            recovered: dict[str, float] = {}
            while time.monotonic() < deadline and len(recovered) < len(PLAYER_KINDS):
                for a in list(loops.answers):
                    if a.kind in PLAYER_KINDS and a.status in (200, 201) and a.sent_at >= thawed_at:
                        recovered.setdefault(a.kind, round(a.sent_at + a.elapsed_s - thawed_at, 3))
                time.sleep(0.05)
            time.sleep(args.tail)
        finally:
            answers = loops.stop()
            redis.resume()
        metrics = scrape(port)
    finally:
        children.stop_all()
        redis.close()
        postgres.close()
    phases = {"before": (0.0, frozen_at), "freeze_onset": (frozen_at, frozen_at + ONSET_S),
              "freeze_rest": (frozen_at + ONSET_S, thawed_at), "after": (thawed_at, float("inf"))}

    def phase_of(answer: Answer) -> str:  # a request still in flight when the freeze began belongs to its onset
        if answer.sent_at < frozen_at <= answer.sent_at + answer.elapsed_s:
            return "freeze_onset"
        return next(name for name, (start, end) in phases.items() if start <= answer.sent_at < end)

    table = {kind: {phase: figures([a for a in answers if a.kind == kind and phase_of(a) == phase])
                    for phase in phases} for kind in KINDS}
    return {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "code_dir": args.code_dir or str(REPO), "freeze_s": args.freeze,
            "loops": {k: getattr(args, k) for k in KINDS},
            "phases": {name: [round(start, 3), round(end, 3) if end != float("inf") else None]
                       for name, (start, end) in phases.items()},
            "table": table, "first_success_after_thaw_s": recovered, "metrics": metrics,
            "total": figures(answers)}


def print_report(doc: dict[str, Any]) -> None:
    """The per-kind, per-phase table and the recovery times."""
    print(f"\nRedis frozen for {doc['freeze_s']} s (server code: {doc['code_dir']})")
    print(f"{'kind':<6} {'phase':<13} {'n':>5} {'median':>9} {'max':>9}  statuses")
    for kind, phases in doc["table"].items():
        for phase, row in phases.items():
            if row["n"]:
                print(f"{kind:<6} {phase:<13} {row['n']:>5} {row['median_ms']:>7.1f}ms {row['max_ms']:>7.1f}ms  "
                      f"{row['statuses']}{'  MALFORMED ' + str(row['malformed']) if row['malformed'] else ''}")
    print("first 2xx after the thaw (s):", doc["first_success_after_thaw_s"])
    for name, value in sorted(doc["metrics"].items()):
        print(f"  {name} {value:g}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--before", type=float, default=3.0, help="seconds of traffic before the freeze")
    parser.add_argument("--freeze", type=float, default=5.0, help="seconds Redis stays frozen")
    parser.add_argument("--after-max", type=float, default=20.0, help="longest wait for recovery after the thaw")
    parser.add_argument("--tail", type=float, default=1.0, help="seconds of traffic after recovery")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds each loop waits between requests")
    for kind, default in (("me", 4), ("login", 2), ("bet", 2), ("theme", 1)):
        parser.add_argument(f"--{kind}", type=int, default=default, help=f"{kind} loops")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write the JSON; children are always stopped."""
    return run_bench("redis_freeze", parse_args(argv), measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
