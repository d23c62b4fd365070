"""A frozen Redis while players use a real tenantsvc web stack over loopback (issue 10, items 4 and 6).

The stack (``tests.fault.stack``) runs on the throwaway Postgres with ``REDIS_URL`` pointing at the session's
throwaway Redis: the real ``RedisClient`` (txredisapi pool) guarded by the real ``RedisBreaker``, the real
session store, limiters and routes, real argon2id hashing. Player loops call ``/me``, log in and place bets,
and one loop loads the public theme, while Redis is frozen — SIGSTOP, or ``CLIENT PAUSE … ALL`` (which
ends by itself: ``CLIENT UNPAUSE`` from a new connection waits behind the pause too) — and then thawed.

Checked on every answer: JSON, an allowed status (no 500, no hang), a 503 is ``unavailable`` with a
Retry-After of at most the longest open period. Then: the breaker opened about one ``REDIS_TIMEOUT`` after
the freeze on timeouts; player answers stayed within about one timeout of their usual latency while it
opened, and were fast 503s while it was open; the public theme stayed 200 and fast; the limiters failed open
(counted); after the thaw the breaker closed by itself through half-open and players were served again; every
bet answered 201 is in the database, and none answered 503 is. ``-s`` prints the figures.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tenantsvc.adapters.db import odds_store, tenant_store
from tenantsvc.adapters.redis import RECONNECT_WITHIN_S
from tenantsvc.core.odds import FeedMatch, OddsSnapshot, Price
from tenantsvc.services.redis_guard import DEFAULT_CONSECUTIVE_FAILURES
from tests.fault.stack import (
    BET, LOGIN, ME, PUBLIC, TENANT, Answer, Stack, Traffic, eventually, sleep, start_stack, summary,
)
from tests.fault.test_postgres_faults import assert_every_answer_is_well_formed, latency_figures, ms
from tests.support.fleet import RawRedis

pytestmark = [pytest.mark.fault, pytest.mark.integration]

TIMEOUT_S = 0.5
OPEN_S, OPEN_MAX_S = 1.0, 5.0
# A pool big enough for the player loops (the DB breaker must not be what answers 503 here); limits out of reach.
REDIS_ENV = {"DB_WEB_POOL_MAX": "10", "REDIS_TIMEOUT": "500ms", "REDIS_BREAKER_OPEN": "1",
             "REDIS_BREAKER_OPEN_MAX": "5",
             **{f"RATE_LIMIT_{name}": "100000/100000" for name in ("AUTH", "READ", "WRITE", "LOGIN_CLIENT",
                                                                    "READ_CLIENT", "WRITE_CLIENT", "LOGIN_USER")}}
FROZEN_S = 3.0
SLACK_S = 0.75  # reactor scheduling and loopback HTTP on top of a bound (client and server share a reactor)
FAST_S = 0.25  # an answer that waited on nothing
RECOVERY_S = OPEN_MAX_S + RECONNECT_WITHIN_S + SLACK_S  # the longest open period left, then a reconnect
PASSWORD = "fault test password"
LOOPS = {ME: 4, LOGIN: 2, BET: 2, PUBLIC: 1}
MATCH = "fault-m1"


class PlayerTraffic(Traffic):
    """``Traffic`` of the player loops of ``LOOPS`` (loop ``i`` of kind ``k`` is player ``k<i>``) and a public one."""

    def __init__(self, stack: Stack, cookies: dict[str, str]):
        self._cookies = cookies  # username → session id, for the /me and bet players
        super().__init__(stack, LOOPS, max_per_loop=3000)

    async def _one(self, kind: str, index: int) -> Answer:
        stack, username = self.stack, f"{kind}{index}"
        cookie = {"Cookie": f"tsid={self._cookies.get(username, '')}"}
        if kind == ME:
            return await stack.request(ME, "GET", f"/{TENANT}/api/me", headers=cookie)
        if kind == LOGIN:
            return await stack.request(LOGIN, "POST", f"/{TENANT}/api/auth/login",
                                       json_body={"username": username, "password": PASSWORD})
        if kind == BET:
            key = f"redis-fault-{uuid.uuid4().hex[:12]}-{next(self._serial)}"
            bet = {"match_id": MATCH, "market": "1x2", "selection": "home", "line": None, "stake_cents": 100,
                   "odds": "2.00"}
            answer = await stack.request(BET, "POST", f"/{TENANT}/api/bets",
                                         headers={**cookie, "Idempotency-Key": key}, json_body=bet)
            answer.key = key
            return answer
        return await stack.request(PUBLIC, "GET", f"/{TENANT}/api/public/load-theme")


class Freeze:
    """SIGSTOP/SIGCONT, or ``CLIENT PAUSE <ms> ALL`` ending by itself after ``FROZEN_S``; ``thawed_at`` when it ends."""

    def __init__(self, redis_server: Any, kind: str):
        self._server = redis_server
        self.kind = kind
        self.thawed_at: float | None = None

    async def begin(self) -> float:
        from twisted.internet import reactor

        if self.kind == "sigstop":
            await deferToThread(self._server.pause)
            return reactor.seconds()
        frozen_at = reactor.seconds()
        RawRedis(self._server.host, self._server.port).command("CLIENT", "PAUSE", int(FROZEN_S * 1000), "ALL")
        return frozen_at

    async def hold_then_end(self, frozen_at: float) -> float:
        from twisted.internet import reactor

        await sleep(max(0.0, frozen_at + FROZEN_S - reactor.seconds()))  # holding the fault, not synchronising
        if self.kind == "sigstop":
            self._server.resume()
        self.thawed_at = max(reactor.seconds(), frozen_at + FROZEN_S)
        return self.thawed_at

    def end_anyway(self) -> None:
        self._server.resume()  # SIGCONT is harmless when not stopped; a CLIENT PAUSE ends by itself


@asynccontextmanager
async def redis_fault_stack(postgres_database_url: str, redis_server: Any) -> AsyncIterator[Stack]:
    redis_server.flushall()
    stack = await start_stack(postgres_database_url, REDIS_URL=redis_server.url, **REDIS_ENV)
    try:
        yield stack
    finally:
        redis_server.resume()
        await stack.stop()


async def seed_players(stack: Stack) -> dict[str, str]:
    """Players for every loop (one argon2id hash, computed by the stack's own hashing), a match to bet on, and
    sessions for the /me and bet players (logged in over HTTP); returns username → session id."""
    password_hash = await stack.components.players.passwords.hash(PASSWORD)
    usernames = [f"{kind}{index}" for kind in (ME, LOGIN, BET) for index in range(LOOPS[kind])]
    for username in usernames:
        await stack.db.run_interaction("seed_player", tenant_store.create_user_txn, TENANT, username, password_hash)
    now = datetime.now(timezone.utc)
    prices = (Price("1x2", None, "home", Decimal("2.00")), Price("1x2", None, "draw", Decimal("3.40")),
              Price("1x2", None, "away", Decimal("3.80")))
    match = FeedMatch(MATCH, "Fault League", "Home FC", "Away FC", now + timedelta(days=1), "Not Started", prices)
    await stack.db.run_interaction("seed_odds", odds_store.save_odds_txn,
                                   OddsSnapshot("soccer", int(now.timestamp()), (match,)), now)
    cookies = {}
    for username in usernames:
        if username.startswith((ME, BET)):
            answer = await stack.request(LOGIN, "POST", f"/{TENANT}/api/auth/login",
                                         json_body={"username": username, "password": PASSWORD})
            assert answer.status == 200, answer
            cookies[username] = answer.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    return cookies


def transitions(stack: Stack) -> list[dict[str, Any]]:
    return stack.components.redis.breaker.describe()["transitions"]


def transition_after(stack: Stack, at: float, to_state: str, from_state: str | None = None) -> dict[str, Any] | None:
    for t in transitions(stack):
        if t["at"] >= at and t["to"] == to_state and from_state in (None, t["from"]):
            return t
    return None


async def bet_keys_in_database(stack: Stack) -> set[str]:
    rows = await stack.db.run_interaction(
        "bet_keys", lambda txn: txn.all("SELECT idempotency_key FROM bets"))
    return {row["idempotency_key"] for row in rows}


@pytest.mark.parametrize("fault", ["sigstop", "client_pause"])
@pytest_twisted.ensureDeferred
async def test_a_frozen_redis_costs_players_one_timeout_then_fast_503s_and_the_breaker_recovers_by_itself(
        postgres_database_url, redis_server, fault):
    freeze = Freeze(redis_server, fault)
    async with redis_fault_stack(postgres_database_url, redis_server) as stack:
        cookies = await seed_players(stack)
        traffic = PlayerTraffic(stack, cookies)
        try:
            await eventually(lambda: {a.kind for a in traffic.answers if a.status in (200, 201)} == set(LOOPS),
                             within_s=10, what="every loop to be served before the fault")
            await sleep(1.0)  # a baseline of ordinary answers
            fail_open_before = stack.metric("ratelimit_decisions_total", outcome="fail_open")
            frozen_at = await freeze.begin()
            opened = await eventually(lambda: transition_after(stack, frozen_at, "open"), within_s=TIMEOUT_S + 3,
                                      what="the Redis breaker to open after the freeze")
            thawed_at = await freeze.hold_then_end(frozen_at)
            fail_open_during = stack.metric("ratelimit_decisions_total", outcome="fail_open") - fail_open_before
            closed = await eventually(lambda: transition_after(stack, thawed_at, "closed", "half_open"),
                                      within_s=RECOVERY_S, what="the Redis breaker to close after the thaw")
            await eventually(lambda: {a.kind for a in traffic.of(ME, LOGIN, BET, since=closed["at"])
                                      if a.status in (200, 201)} == {ME, LOGIN, BET},
                             within_s=5, what="every player route to be served again after recovery")
        finally:
            await traffic.stop()
            freeze.end_anyway()
        in_database = await bet_keys_in_database(stack)

    answers = traffic.answers
    assert_every_answer_is_well_formed(traffic)
    for answer in answers:
        if answer.status == 503:
            assert 1 <= int(answer.headers["retry-after"]) <= OPEN_MAX_S, answer

    # Opened on timeouts within about one REDIS_TIMEOUT of the freeze. Calls already waiting for an answer
    # when the freeze began time out less than one timeout after it, so there is no lower bound beyond the
    # freeze itself (transition_after only looks at transitions after it).
    assert (opened["from"], opened["reason"], opened["detail"]) == ("closed", "failures", "timeout"), opened
    opened_after_s = opened["at"] - frozen_at
    assert 0 < opened_after_s <= TIMEOUT_S + SLACK_S, opened_after_s
    assert stack.metric("redis_call_failures_total", kind="timeout") >= DEFAULT_CONSECUTIVE_FAILURES

    # Answers before the freeze; while it opened (sent before it opened, answered after the freeze began);
    # while it was open (sent after it opened, before the thaw).
    before = {k: [a for a in traffic.of(k, until=frozen_at) if a.answered_at < frozen_at] for k in LOOPS}
    onset = {k: [a for a in traffic.of(k, until=opened["at"]) if a.answered_at >= frozen_at] for k in LOOPS}
    steady = {k: traffic.of(k, since=opened["at"] + 0.01, until=thawed_at) for k in LOOPS}
    for kind in (ME, LOGIN, BET):
        usual = max(a.elapsed_s for a in before[kind])
        assert onset[kind], f"no {kind} request was caught by the freeze"
        slowest = max(a.elapsed_s for a in onset[kind])
        assert slowest <= usual + TIMEOUT_S + SLACK_S, (kind, latency_figures(onset[kind]), ms(usual))
        assert steady[kind] and all(a.status == 503 for a in steady[kind]), (kind, summary(steady[kind]))
        assert max(a.elapsed_s for a in steady[kind]) < FAST_S, (kind, latency_figures(steady[kind]))
    public = traffic.of(PUBLIC)
    assert public and all(a.status == 200 for a in public)
    assert max(a.elapsed_s for a in traffic.of(PUBLIC, since=frozen_at, until=thawed_at)) < FAST_S

    # The limiters failed open while the breaker refused Redis, and that was counted.
    assert fail_open_during > 0
    assert stack.metric("circuit_breaker_rejections_total", breaker_name="redis") > 0

    # Recovery by itself: through half-open, closed, gauge back to 0; then served again.
    path = [(t["from"], t["to"], t["reason"]) for t in transitions(stack) if t["at"] >= frozen_at]
    assert path[0] == ("closed", "open", "failures") and path[-2:] == [
        ("open", "half_open", "cooldown"), ("half_open", "closed", "recovered")], path
    assert stack.metric("circuit_breaker_state", breaker_name="redis") == 0
    recovered_after_s = closed["at"] - thawed_at

    # Money: every bet answered 201 was placed; none refused with 503 was.
    bets = traffic.of(BET)
    assert {a.key for a in bets if a.status == 201} <= in_database
    assert not {a.key for a in bets if a.status == 503} & in_database

    print(f"\nRedis {fault} for {FROZEN_S:g} s ({summary(answers)})")
    print(f"  breaker opened {ms(opened_after_s)} after the freeze, closed {recovered_after_s:.2f} s after the thaw;"
          f" path {[(f, t, r) for f, t, r in path]}")
    for kind in LOOPS:
        print(f"  {kind:<6} before {latency_figures(before[kind])}; while opening {latency_figures(onset[kind])};"
              f" while open {latency_figures(steady[kind])}")
    print(f"  limiter decisions failed open while frozen: {fail_open_during:g};"
          f" Redis calls refused unsent: {stack.metric('circuit_breaker_rejections_total', breaker_name='redis'):g};"
          f" Redis timeouts: {stack.metric('redis_call_failures_total', kind='timeout'):g}")
