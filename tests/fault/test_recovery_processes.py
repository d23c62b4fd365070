"""Issue 10 as an operator sees it: real ``twistd tenantsvc`` processes on the throwaway Postgres (directly
or through PgBouncer), driven over loopback HTTP while the database is restarted or frozen, and 20 players'
retries of one bet arriving at once.

- Restart with a grown pool: 40 concurrent credits open the web role's connections, then Postgres is
  crash-stopped (``pg_ctl stop -m immediate``), left down 3 s and started, while a credit is sent every
  0.2 s. Every answer is a 200 or a JSON 503 with Retry-After (no 500, no reset), writes work again
  within one longest open period plus a probe of Postgres accepting connections, and everything after
  that is a 200; every credit answered 200 is in the ledger.
- Freeze with the production timeouts (``DB_CONN_TIMEOUT=5``, ``DB_STATEMENT_TIMEOUT=3s``: an 8.5 s deadline):
  the breaker opens on slow calls within about two seconds of SIGSTOP, refused writes are fast, nothing
  waits past the deadline, and writes work again after SIGCONT.
- 20 identical bets (one Idempotency-Key) staking the whole balance at once: every one is answered with the
  same bet, one debit.

``-s`` prints the measured figures. Every wait is bounded; the server is restored in ``finally``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.threads import deferToThread

from tests.support.tenantsvc_process import ADMIN_TOKEN, TenantsvcProcess, service_env
from tests.support.http import HttpAnswer, fetch
from tests.support.metrics import scraped_total
from tests.support.postgres import quote_ident
from tests.support.waiting import eventually, pause_for

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.e2e]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TENANT, PLAYER, PASSWORD = "faultco", "punter", "correct horse battery"
LONGEST_OPEN_S = 5.0  # PRODUCTION_BREAKER.open_duration_max_s
SLOW_CALL_S = 1.0  # DB_SLOW_CALL_THRESHOLD's default (also the breaker's probe timeout)
PRODUCTION_DEADLINE_S = 5.0 + 3.0 + 0.5  # DB_CONN_TIMEOUT + DB_STATEMENT_TIMEOUT + the breaker's margin
SLACK_S = 1.0  # scheduling on a shared two-core machine, loopback HTTP
PGBOUNCER_LOGIN_RETRY_S = 1.0  # deploy/pgbouncer.ini's server_login_retry: PgBouncer's own wait after a failed login
REQUEST_TIMEOUT_S = 20.0  # a hang detector, well past every bound


@contextmanager
def web_process(tmp_path: Path, database_url: str, *args: str, **env: str) -> Iterator[TenantsvcProcess]:
    """A started ``twistd tenantsvc`` (ready), killed on the way out whatever happened."""
    process = TenantsvcProcess(tmp_path, ["--listen", "tcp:0:interface=127.0.0.1", *args],
                               service_env(DATABASE_URL=database_url, **env))
    try:
        process.wait_until_ready()
        yield process
    finally:
        process.kill()


def durable_database(postgres_server: Any) -> str:
    """A new database whose commits survive a crash stop (the session cluster trades durability for speed)."""
    name = postgres_server.create_database()
    postgres_server.execute(f"ALTER DATABASE {quote_ident(name)} SET synchronous_commit = on")
    return name


async def call(process: TenantsvcProcess, method: str, path: str, **options: Any) -> HttpAnswer:
    """One request to ``process`` (admin paths with the admin token)."""
    headers = {**(ADMIN if path.startswith("/admin/") else {}), **options.pop("headers", {})}
    return await fetch(method, process.url(path), headers=headers, timeout_s=REQUEST_TIMEOUT_S, **options)


async def seed_player(process: TenantsvcProcess, tenant: str = TENANT) -> None:
    """The tenant (unless it exists) and one registered player."""
    if tenant != "demo":
        created = await call(process, "POST", "/admin/api/tenants", json_body={"slug": tenant, "name": "Fault Co"})
        assert created.status == 201, created
    registered = await call(process, "POST", f"/{tenant}/api/auth/register",
                            json_body={"username": PLAYER, "password": PASSWORD})
    assert registered.status == 201, registered


def credit(process: TenantsvcProcess, key: str, amount_cents: int = 100) -> Deferred:
    """An admin credit with its own Idempotency-Key (a Deferred, so many can be in flight)."""
    return ensureDeferred(call(process, "POST", f"/admin/api/tenants/{TENANT}/users/{PLAYER}/credit",
                               json_body={"amount_cents": amount_cents, "reason": "fault test"},
                               headers={"Idempotency-Key": key}))


def problems(answer: HttpAnswer) -> list[str]:
    """What is wrong with an answer that must be a 200 or a JSON 503 with Retry-After."""
    found = []
    if answer.status not in (200, 503):
        found.append(f"status {answer.status}")
    if not (answer.header("content-type") or "").startswith("application/json"):
        found.append("not JSON")
    elif answer.status == 503 and (answer.json().get("error") != "unavailable"
                                   or not (answer.header("retry-after") or "").isdigit()):
        found.append("a 503 without the unavailable error and Retry-After")
    return found


def ledger_keys(postgres_server: Any, dbname: str) -> set[str]:
    rows = postgres_server.execute("SELECT idempotency_key FROM ledger WHERE idempotency_key IS NOT NULL",
                                   dbname=dbname)
    return {key for (key,) in rows}


async def scrape(process: TenantsvcProcess) -> str:
    return (await call(process, "GET", "/metrics")).body.decode("utf-8")


class Ticker:
    """Sends ``send(key)`` every ``every_s`` (not waiting for answers) and keeps (sent_at, key, answer)."""

    def __init__(self, send: Any, every_s: float, prefix: str):
        self._send, self._every_s, self._prefix = send, every_s, prefix
        self.sent: list[tuple[float, str, Deferred]] = []
        self._running = True
        self._loop = ensureDeferred(self._run())

    async def _run(self) -> None:
        for serial in itertools.count():
            if not self._running or serial >= 1000:
                return
            key = f"{self._prefix}-{serial}"
            self.sent.append((time.monotonic(), key, self._send(key).addErrback(lambda f: f)))
            await pause_for(self._every_s)

    async def stop(self) -> list[tuple[float, str, Any]]:
        """Stop sending; every answer (or the error of a request that got none)."""
        self._running = False
        await self._loop
        answers = await gatherResults([answer for _, _, answer in self.sent])
        return [(at, key, answer) for (at, key, _), answer in zip(self.sent, answers)]


# ---- Postgres restart with a grown pool --------------------------------------------------------


@pytest.mark.parametrize("traffic", ["busy", "idle"])
@pytest.mark.parametrize("via", ["postgres", "pgbouncer"])
@pytest_twisted.ensureDeferred
async def test_a_postgres_restart_under_a_grown_pool_gives_no_500_and_writes_return_within_seconds(
        postgres_server, production_pgbouncer, tmp_path, via, traffic):
    """``busy``: credits every 0.2 s through the outage; ``idle``: nothing during it, credits every 0.2 s once
    Postgres is back (every pooled connection is dead and the breaker still closed)."""
    dbname = durable_database(postgres_server)
    server = production_pgbouncer if via == "pgbouncer" else postgres_server
    # Through PgBouncer a probe can also wait out PgBouncer's retry after a failed login (and then its
    # failure doubles the breaker's next open period).
    bound_s = LONGEST_OPEN_S + 2 * SLACK_S + (PGBOUNCER_LOGIN_RETRY_S + SLOW_CALL_S if via == "pgbouncer" else 0)
    try:
        with web_process(tmp_path, server.database_url(dbname), "--role", "web", DB_WEB_POOL_MAX="20") as process:
            await seed_player(process)
            grown = await gatherResults([credit(process, f"grow-{n}") for n in range(40)])
            assert {a.status for a in grown} == {200}
            if via == "postgres":
                opened = postgres_server.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'tenantsvc-web'",
                    (dbname,))[0][0]
                assert opened >= 10, opened
            prefix = f"restart-{uuid.uuid4().hex[:6]}"
            ticker = Ticker(lambda key: credit(process, key), 0.2, prefix) if traffic == "busy" else None
            try:
                await pause_for(0.5)
                crashed_at = time.monotonic()
                await deferToThread(postgres_server.stop_immediate)
                await pause_for(3.0)
                await deferToThread(postgres_server.start)
                ready_at = time.monotonic()
                ticker = ticker or Ticker(lambda key: credit(process, key), 0.2, prefix)
                await eventually(lambda: any(at > ready_at and a.called and isinstance(a.result, HttpAnswer)
                                             and a.result.status == 200 for at, _, a in ticker.sent),
                                 within_s=bound_s + 2, what="a credit to succeed")
                await pause_for(3.0)
            finally:
                answers = await ticker.stop() if ticker is not None else []
                if not postgres_server.is_running():
                    postgres_server.start()
            metrics = await scrape(process)
            detailed = (await call(process, "GET", "/health/detailed")).json()
        ledger = ledger_keys(postgres_server, dbname)
    finally:
        postgres_server.drop_database(dbname)

    statuses = [(at, a.status if isinstance(a, HttpAnswer) else 0) for at, _, a in answers]
    counts: dict[str, int] = {}
    for _, _, a in answers:
        kind = (f"503 {'breaker_open' if 'circuit breaker' in a.json()['message'] else 'db_unavailable'}"
                if isinstance(a, HttpAnswer) and a.status == 503 else str(getattr(a, "status", "no answer")))
        counts[kind] = counts.get(kind, 0) + 1
    first_ok = min((at for at, status in statuses if status == 200 and at > ready_at), default=float("inf"))
    recovered_within = first_ok - ready_at
    transitions = detailed["checks"]["database:circuitBreaker"][0]["breaker"]["transitions"]
    print(f"\nFIGURES restart via {via}, {traffic}: {len(answers)} credits {dict(sorted(counts.items()))}; first 200"
          f" {recovered_within * 1000:.0f} ms after Postgres accepted connections again (down"
          f" {ready_at - crashed_at:.1f} s); connections replaced"
          f" {scraped_total(metrics, 'db_connections_replaced_total', outcome='replaced'):.0f}; breaker path"
          f" {[(t['from'], t['to'], t['reason'], t['detail']) for t in transitions]}")
    bad = [(round(at - crashed_at, 2), a) for at, _, a in answers if not isinstance(a, HttpAnswer) or problems(a)]
    assert not bad, bad[:5]
    assert recovered_within < bound_s, recovered_within
    after = [status for at, status in statuses if at > first_ok + SLACK_S]
    assert after and set(after) == {200}, after  # once writes work again, they keep working
    if traffic == "idle":  # every dead connection was replaced before the first statement: no error at all
        assert {status for _, status in statuses} == {200}, counts
    ok_keys = {key for _, key, a in answers if a.status == 200}
    assert ok_keys <= ledger, sorted(ok_keys - ledger)[:5]  # no credit answered 200 was lost in the crash


# ---- Postgres frozen, production timeouts ------------------------------------------------------


class Loops:
    """``count`` request loops, each sending ``send(key)`` again as soon as its last one is answered."""

    def __init__(self, send: Any, count: int, prefix: str):
        self._send, self._prefix = send, prefix
        self.answers: list[tuple[float, str, Any]] = []
        self._running = True
        self._loops = [ensureDeferred(self._run(n)) for n in range(count)]

    async def _run(self, index: int) -> None:
        for serial in range(2000):
            if not self._running:
                return
            key, sent_at = f"{self._prefix}-{index}-{serial}", time.monotonic()
            answer = await self._send(key).addErrback(lambda f: f)
            self.answers.append((sent_at, key, answer))
            await pause_for(0.02)

    async def stop(self) -> list[tuple[float, str, Any]]:
        """Stop after each loop's current request; every (sent_at, key, answer)."""
        self._running = False
        await gatherResults(self._loops)
        return self.answers


async def breaker_state(process: TenantsvcProcess) -> float:
    return scraped_total(await scrape(process), "circuit_breaker_state", breaker_name="db_pool")


@pytest_twisted.ensureDeferred
async def test_a_frozen_postgres_opens_the_breaker_on_slow_calls_long_before_the_deadline(postgres_server, tmp_path):
    dbname = durable_database(postgres_server)
    try:
        with web_process(tmp_path, postgres_server.database_url(dbname), "--role", "web") as process:
            await seed_player(process)
            loops = Loops(lambda key: credit(process, key), 2, f"freeze-{uuid.uuid4().hex[:6]}")
            try:
                await pause_for(0.5)
                frozen_at = time.monotonic()
                await deferToThread(postgres_server.pause)
                await eventually(lambda: ensureDeferred(breaker_state(process)).addCallback(lambda s: s == 1),
                                 within_s=PRODUCTION_DEADLINE_S + SLACK_S, what="the breaker to open", step_s=0.05)
                opened_after = time.monotonic() - frozen_at
                await pause_for(PRODUCTION_DEADLINE_S)  # the stuck calls reach their deadline; new ones are refused
                resumed_at = time.monotonic()
                await deferToThread(postgres_server.resume)
                await eventually(lambda: any(at > resumed_at and isinstance(a, HttpAnswer) and a.status == 200
                                             for at, _, a in loops.answers),
                                 within_s=LONGEST_OPEN_S + 2 * SLACK_S, what="a credit to succeed after SIGCONT")
            finally:
                postgres_server.resume()
                answers = await loops.stop()
            detailed = (await call(process, "GET", "/health/detailed")).json()
        ledger = ledger_keys(postgres_server, dbname)
    finally:
        postgres_server.drop_database(dbname)

    transitions = detailed["checks"]["database:circuitBreaker"][0]["breaker"]["transitions"]
    during = [(at, a) for at, _, a in answers if frozen_at <= at < resumed_at and isinstance(a, HttpAnswer)]
    refused = sorted(a.elapsed_s for at, a in during if a.status == 503 and "circuit breaker" in a.json()["message"])
    slowest = max(a.elapsed_s for _, _, a in answers if isinstance(a, HttpAnswer))
    recovered = min(at + a.elapsed_s for at, _, a in answers if at > resumed_at and a.status == 200) - resumed_at
    print(f"\nFIGURES freeze (DB_CONN_TIMEOUT 5 s, DB_STATEMENT_TIMEOUT 3 s, deadline {PRODUCTION_DEADLINE_S} s,"
          f" 2 credit loops): breaker open {opened_after * 1000:.0f} ms after SIGSTOP; {len(during)} credits while"
          f" frozen, {len(refused)} refused by the breaker (median {refused[len(refused) // 2] * 1000:.0f} ms,"
          f" max {refused[-1] * 1000:.0f} ms); slowest answer {slowest:.2f} s; first 200"
          f" {recovered * 1000:.0f} ms after SIGCONT; breaker path"
          f" {[(t['from'], t['to'], t['reason'], t['detail']) for t in transitions]}")
    bad = [a for _, _, a in answers if not isinstance(a, HttpAnswer) or problems(a)]
    assert not bad, bad[:5]
    assert opened_after < 2 * SLOW_CALL_S + SLACK_S, opened_after  # not one deadline (8.5 s), let alone several
    opening = next(t for t in transitions if t["to"] == "open")
    assert (opening["reason"], opening["detail"]) in {("failures", "unresponsive"), ("failures", "slow_call")}
    assert slowest < PRODUCTION_DEADLINE_S + SLACK_S
    assert refused and refused[len(refused) // 2] < 0.1, refused
    assert {key for _, key, a in answers if a.status == 200} <= ledger


# ---- one bet, retried 20 times at once ---------------------------------------------------------


async def demo_price(process: TenantsvcProcess) -> dict[str, Any]:
    """A bet body at the price on offer for the first demo soccer match (waits for the first odds poll)."""
    async def odds() -> Any:
        answer = await call(process, "GET", "/demo/api/public/odds/soccer")
        return answer.status == 200 and answer.json()["matches"]

    matches = await eventually(odds, within_s=30, what="the demo odds to be ingested")
    market = next(m for m in matches[0]["markets"] if m["market"] == "1x2")
    home = next(s for s in market["selections"] if s["selection"] == "home")
    return {"match_id": matches[0]["id"], "market": "1x2", "line": None, "selection": "home", "odds": home["odds"]}


@pytest_twisted.ensureDeferred
async def test_twenty_identical_bets_at_once_staking_the_whole_balance_all_get_the_one_bet(postgres_server, tmp_path):
    dbname = durable_database(postgres_server)
    try:
        with web_process(tmp_path, postgres_server.database_url(dbname), "--role", "all", "--demo") as process:
            await seed_player(process, "demo")
            login = await call(process, "POST", "/demo/api/auth/login",
                               json_body={"username": PLAYER, "password": PASSWORD})
            assert login.status == 200, login
            cookie = login.header("set-cookie").split(";", 1)[0]
            stake = 5_000
            opening = (await call(process, "GET", "/demo/api/me", headers={"Cookie": cookie})).json()["balance_cents"]
            debit = await call(process, "POST", f"/admin/api/tenants/demo/users/{PLAYER}/credit",
                               json_body={"amount_cents": stake - opening, "reason": "leave exactly one stake"})
            assert debit.status == 200 and debit.json()["balance_cents"] == stake, debit
            body = {**await demo_price(process), "stake_cents": stake}
            bets = await gatherResults([ensureDeferred(call(
                process, "POST", "/demo/api/bets", json_body=body,
                headers={"Cookie": cookie, "Idempotency-Key": "one-bet-twenty-tries"})) for _ in range(20)])
            other = await call(process, "POST", "/demo/api/bets", json_body=body,
                               headers={"Cookie": cookie, "Idempotency-Key": "another-bet"})
        rows = postgres_server.execute("SELECT count(*) FROM bets", dbname=dbname)[0][0]
        debits = postgres_server.execute("SELECT count(*) FROM ledger WHERE kind = 'bet_stake'", dbname=dbname)[0][0]
    finally:
        postgres_server.drop_database(dbname)

    outcomes: dict[tuple[int, str], int] = {}
    for answer in bets:
        key = (answer.status, answer.header("idempotent-replayed") or "first")
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"\nFIGURES 20 identical bets at once: {outcomes}; bets stored {rows}, stake debits {debits};"
          f" slowest {max(a.elapsed_s for a in bets) * 1000:.0f} ms")
    assert {a.status for a in bets} == {201}, [a.body for a in bets if a.status != 201][:3]
    assert len({a.json()["bet"]["id"] for a in bets}) == 1
    assert {a.json()["balance_cents"] for a in bets} == {0}
    assert outcomes[(201, "first")] == 1 and outcomes[(201, "true")] == 19
    assert (rows, debits) == (1, 1)
    assert other.status == 409 and other.json()["error"] == "insufficient_funds"  # the money really is gone
