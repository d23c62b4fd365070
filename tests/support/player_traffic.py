"""Players with think time against a real tenantsvc, then the same while one client floods the odds (issue 11).

``PlayerTraffic(port, players, think_s).run(phase_s)`` signs ``players`` players up on the demo tenant, each on a
keep-alive connection from its own loopback address (every 127.x.y.z is a distinct socket peer on Linux), and
runs two phases of ``phase_s`` each: ``players`` (the players alone: a weighted mix of odds reads, ``/me``, bet
history and bets, with a random think time of 0.5–1.5 × ``think_s`` between actions) and ``flood`` (the same
while one more client reads the odds in a closed loop). The figures per phase and kind: count, statuses, share
answered 429, median and p99 latency. Threads, loopback only, bounded by the phases; every call has a timeout.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from tests.support.figures import quantile
from tests.support.http import HttpAnswer, LoopbackConnection

TENANT, PASSWORD = "demo", "player traffic password"
MIX = {"odds": 70, "me": 15, "bets": 10, "bet": 5}
ABUSER, PHASES = "127.0.0.250", ("players", "flood")


def first_price(port: int) -> dict[str, Any]:
    """A bettable 1x2 selection of the demo's soccer odds ({} until the odds are in)."""
    answer = LoopbackConnection(port).request("GET", f"/{TENANT}/api/public/odds/soccer")
    for match in answer.json()["matches"] if answer.status == 200 else []:
        for market in (m for m in match["markets"] if m["market"] == "1x2"):
            for selection in (s for s in market["selections"] if not s["suspended"]):
                return {"match_id": match["id"], "market": "1x2", "selection": selection["selection"], "line": None,
                        "odds": selection["odds"]}
    return {}


def sign_up(conn: LoopbackConnection, username: str) -> str:
    """Register ``username`` and log it in on ``conn``; its ``tsid=…`` cookie."""
    credentials = {"username": username, "password": PASSWORD}
    registered = conn.request("POST", f"/{TENANT}/api/auth/register", credentials)
    answer = conn.request("POST", f"/{TENANT}/api/auth/login", credentials)
    assert registered.status == 201 and answer.status == 200, (username, registered.status, answer.body[:200])
    return answer.headers["set-cookie"].split(";", 1)[0]


def figures(answers: list[tuple[int, float]]) -> dict[str, Any]:
    """Count, statuses, share answered 429 and the median and p99 latency (ms) of (status, seconds) pairs."""
    if not answers:
        return {"n": 0}
    statuses, latencies = Counter(str(s) for s, _ in answers), sorted(t * 1000 for _, t in answers)
    return {"n": len(answers), "statuses": dict(sorted(statuses.items())),
            "rate_limited_percent": round(100 * statuses["429"] / len(answers), 1),
            "median_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(quantile(latencies, 0.99), 1)}  # type: ignore[arg-type]


class PlayerTraffic:
    """The players and the flooding client of one run against the tenantsvc listening on ``port``."""

    def __init__(self, port: int, players: int = 20, think_s: float = 2.0, seed: int = 11):
        self.port, self.think_s, self.seed = port, think_s, seed
        self.price = first_price(port)
        assert self.price, "the demo's soccer odds are in"
        self.players = [(i, f"player{i:02d}", f"127.0.0.{10 + i}") for i in range(players)]
        self.answers: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        self._phase, self._stop, self._flooding = PHASES[0], threading.Event(), threading.Event()

    def run(self, phase_s: float) -> dict[str, dict[str, dict[str, Any]]]:
        """Both phases; the figures by phase and kind (``odds``, ``me``, ``bets``, ``bet``, ``abuser``)."""
        cookies = [sign_up(LoopbackConnection(self.port, source=address), name) for _, name, address in self.players]
        threads = [threading.Thread(target=self._player, args=(*player, cookie), daemon=True)
                   for player, cookie in zip(self.players, cookies)]
        threads.append(threading.Thread(target=self._abuser, daemon=True))
        for thread in threads:
            thread.start()
        self._stop.wait(phase_s)
        self._phase = PHASES[1]
        self._flooding.set()
        self._stop.wait(phase_s)
        self._stop.set()
        for thread in threads:
            thread.join(35)
        return {p: {k: figures(self.answers[(p, k)]) for k in (*MIX, "abuser")} for p in PHASES}

    def _request(self, conn: LoopbackConnection, kind: str, cookie: str, key: str) -> HttpAnswer:
        auth = {"Cookie": cookie}
        if kind == "odds":
            return conn.request("GET", f"/{TENANT}/api/public/odds/{key.split('-')[0]}")
        if kind == "bet":
            return conn.request("POST", f"/{TENANT}/api/bets", {**self.price, "stake_cents": 100},
                                headers={**auth, "Idempotency-Key": key})
        return conn.request("GET", f"/{TENANT}/api/me" if kind == "me" else f"/{TENANT}/api/bets?limit=20",
                            headers=auth)

    def _timed(self, conn: LoopbackConnection, kind: str, cookie: str, key: str, counted_as: str) -> None:
        phase, sent = self._phase, time.monotonic()
        try:
            status = self._request(conn, kind, cookie, key).status
        except OSError:
            status = 0  # no answer: counted under status 0
        self.answers[(phase, counted_as)].append((status, time.monotonic() - sent))

    def _player(self, index: int, name: str, address: str, cookie: str) -> None:
        rng, conn, serial = random.Random(self.seed * 1000 + index), LoopbackConnection(self.port, source=address), 0
        self._stop.wait(rng.uniform(0, self.think_s))  # players do not all arrive at once
        while not self._stop.is_set():
            serial += 1
            kind = rng.choices(list(MIX), list(MIX.values()))[0]
            self._timed(conn, kind, cookie, f"{rng.choice(('soccer', 'basketball'))}-{name}-{serial}", kind)
            self._stop.wait(rng.uniform(0.5, 1.5) * self.think_s)

    def _abuser(self) -> None:
        conn = LoopbackConnection(self.port, source=ABUSER)
        self._flooding.wait()
        while not self._stop.is_set():
            self._timed(conn, "odds", "", "soccer-abuser", "abuser")
