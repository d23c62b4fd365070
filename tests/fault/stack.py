"""A real tenantsvc web stack on the throwaway Postgres, driven over loopback HTTP, for fault injection.

``start_stack`` builds what a ``web`` process builds (``build_service``, without its eliot destination and
heap freeze: the real reactor, the real adbapi pool and ``DbBreaker``) on a fresh Postgres database with small bounds
(``FAULT_ENV``: 4 connections, ``DB_CONN_TIMEOUT=1``, ``DB_STATEMENT_TIMEOUT=1s``), listens on
127.0.0.1:0 and seeds one tenant with a saved theme and two users. ``Traffic`` runs concurrent request
loops of every request class (public load-theme, admin reads, admin writes with unique
``Idempotency-Key``s) and keeps every answer with its latency, the breaker state when it was sent and
whatever was wrong with it (a 500, a non-JSON body, an unexpected status). ``DbCallMonitor`` counts the
interactions the ``Database`` is running at each moment, independently of the breaker's own bookkeeping.

Nothing here imports klein or the reactor at module scope (``build_service`` imports klein when called).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from tenantsvc.adapters.db import tenant_store
from tenantsvc.config import load_settings
from tenantsvc.core.breaker import HALF_OPEN
from tenantsvc.composition.core_parts import Components
from tenantsvc.service import Built, Overrides, build_service
from tests.support.http import fetch
from tests.support.metrics import metric_total
from tests.support.waiting import eventually  # noqa: F401  (the fault tests import it from here)
from tests.support.waiting import pause_for as sleep
from tests.support.waiting import real_reactor as _reactor

ADMIN_TOKEN = "fault-admin-token-0123456789"
TENANT = "faultco"
USERS = ("alice", "bob")
FAULT_ENV = {
    "DB_WEB_POOL_MAX": "4",
    "DB_POOL_MIN": "1",
    "DB_CONN_TIMEOUT": "1",
    "DB_STATEMENT_TIMEOUT": "1s",
    "THEME_CACHE_TTL": "1",  # the public path goes stale (background refreshes) within each fault
    "THEME_CACHE_SWR": "1",
    "DRAIN_PRESTOP_DELAY": "0",  # stopping the stack drains its listener without waiting for a load balancer
}
SAVED_THEME = {"primaryColor": "#123456", "accentColor": "#ABCDEF", "sportsbookName": "Fault Co Bets"}
OTHER_THEME = {"primaryColor": "#654321", "accentColor": "#FEDCBA", "sportsbookName": "Fault Co Bets"}
REQUEST_TIMEOUT_S = 15.0  # a hang detector: fails the request (status 0) instead of hanging the test
START_TIMEOUT_S = 30.0

PUBLIC, READ_THEME, READ_TENANTS, CREDIT, PUT_THEME = "public", "read_theme", "read_tenants", "credit", "put_theme"
ME, LOGIN, BET = "me", "login", "bet"  # player routes (tests/fault/test_redis_faults.py)
SEED = "seed"  # the set-up requests
READS, WRITES = (READ_THEME, READ_TENANTS), (CREDIT, PUT_THEME)


@dataclass
class Answer:
    """One request and its complete answer (status 0: no answer within ``REQUEST_TIMEOUT_S``)."""

    kind: str
    method: str
    path: str
    sent_at: float  # reactor.seconds(), comparable with breaker transition times
    elapsed_s: float
    status: int
    headers: Mapping[str, str]
    body: bytes
    breaker_state: str  # the breaker's state when the request was sent
    state_after: str = ""  # … and when its answer arrived
    key: str | None = None  # the Idempotency-Key of a credit
    theme: Mapping[str, str] | None = None  # the theme a PUT sent
    payload: Any = None
    problems: list[str] = field(default_factory=list)

    @property
    def answered_at(self) -> float:
        """When the last byte arrived (reactor.seconds())."""
        return self.sent_at + self.elapsed_s

    @property
    def steadily(self) -> str:
        """The breaker's state when sent and when answered ('' when they differ; see ``Stack.steady_state``)."""
        return self.breaker_state if self.breaker_state == self.state_after else ""

    @property
    def message(self) -> str:
        """The JSON error message, or ''."""
        return self.payload.get("message", "") if isinstance(self.payload, dict) else ""

    def __repr__(self) -> str:
        return (f"<{self.kind} {self.method} {self.path} -> {self.status} in {self.elapsed_s * 1000:.0f} ms"
                f" (breaker {self.breaker_state}) {self.body[:160]!r}>")


# Statuses each kind may answer. A 500 (or anything else) is a failure of the test.
ALLOWED = {PUBLIC: {200}, READ_THEME: {200, 503}, READ_TENANTS: {200, 503}, CREDIT: {200, 503}, PUT_THEME: {200, 503},
           ME: {200, 503}, LOGIN: {200, 503}, BET: {201, 503}, SEED: {200, 201}}


def check_answer(answer: Answer) -> None:
    """Fill ``answer.problems``: wrong status, not JSON, a 503 without Retry-After or the error shape."""
    if answer.status not in ALLOWED[answer.kind]:
        answer.problems.append(f"status {answer.status} not in {sorted(ALLOWED[answer.kind])}")
    if not answer.headers.get("content-type", "").startswith("application/json"):
        answer.problems.append(f"content-type {answer.headers.get('content-type')!r}")
    try:
        answer.payload = json.loads(answer.body)
    except ValueError:
        answer.problems.append("body is not JSON")
        return
    if answer.status == 503:
        if answer.payload.get("error") != "unavailable" or not answer.headers.get("retry-after", "").isdigit():
            answer.problems.append("a 503 without the unavailable error and a Retry-After")


class DbCallMonitor:
    """Counts interactions the ``Database`` is running (submitted, not yet finished or withdrawn).

    ``max_in_half_open`` is the most that were in flight at the moment an interaction was submitted
    while the breaker was HALF_OPEN: with nothing else running, the probe budget bounds it.
    """

    def __init__(self, components: Components):
        self.in_flight = 0
        self.max_in_half_open = 0
        self.half_open_submissions = 0
        db, machine = components.db, components.breaker.machine
        original = db.submit_interaction

        def finished(result: object) -> object:
            self.in_flight -= 1
            return result

        def submit(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            pending = original(name, fn, *args, **kwargs)
            self.in_flight += 1
            if machine.state == HALF_OPEN:
                self.half_open_submissions += 1
                self.max_in_half_open = max(self.max_in_half_open, self.in_flight)
            pending.deferred.addBoth(finished)
            return pending

        db.submit_interaction = submit  # the breaker and run_interaction both look it up on the instance


class Stack:
    """One started web stack: the built service, its components, its listener and an HTTP client pointed at it."""

    def __init__(self, built: Built, http_pool: Any):
        self.built = built
        self.components = built.components
        self._http_pool = http_pool
        self.base_url = f"http://127.0.0.1:{built.listener.port.getHost().port}"
        self.monitor = DbCallMonitor(built.components)

    @property
    def breaker(self) -> Any:
        """The ``DbBreaker``."""
        return self.components.breaker

    @property
    def db(self) -> Any:
        """The ``Database``."""
        return self.components.db

    def breaker_state(self) -> str:
        """The breaker's state now (its cooldown timer applied)."""
        return self.breaker.describe()["state"]

    def transitions(self) -> list[dict[str, Any]]:
        """The breaker's recent transitions, oldest first."""
        return self.breaker.describe()["transitions"]

    def steady_state(self, answer: Answer) -> str:
        """The breaker's state throughout ``answer``'s request: '' if it changed at any time in between
        (open periods are short, so open → half-open → open can happen within one request)."""
        during = [t for t in self.transitions() if answer.sent_at <= t["at"] <= answer.answered_at]
        return "" if during else answer.steadily

    def metric(self, sample_name: str, **labels: str) -> float:
        """Sum of the samples of ``sample_name`` whose labels include ``labels`` (0 when there are none)."""
        return metric_total(self.components.registry, sample_name, **labels)

    async def request(self, kind: str, method: str, path: str, *, json_body: Any = None,
                      headers: Mapping[str, str] | None = None) -> Answer:
        """Send one request over loopback (with the admin token on admin paths); return the checked answer."""
        all_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if path.startswith("/admin/") else {}
        all_headers.update(headers or {})
        state = self.breaker_state()
        sent_at, started = _reactor().seconds(), time.monotonic()
        try:
            fetched = await fetch(method, self.base_url + path, pool=self._http_pool, headers=all_headers,
                                  json_body=json_body, timeout_s=REQUEST_TIMEOUT_S)
            status, flat, body = fetched.status, fetched.headers, fetched.body
        except Exception as error:  # no answer at all: recorded, and a failure of the test
            status, flat, body = 0, {}, repr(error).encode()
        answer = Answer(kind, method, path, sent_at, time.monotonic() - started, status, flat, body, state,
                        self.breaker_state())
        check_answer(answer)
        return answer

    async def seed(self) -> None:
        """Create the tenant through the admin API, save its theme, create its users, warm the cache."""
        created = await self.request(SEED, "POST", "/admin/api/tenants",
                                     json_body={"slug": TENANT, "name": "Fault Co"})
        assert created.status == 201, created
        saved = await self.request(SEED, "PUT", f"/admin/api/tenants/{TENANT}/theme", json_body=SAVED_THEME)
        assert saved.status == 200, saved
        for user in USERS:
            await self.db.run_interaction("seed_user", tenant_store.create_user_txn, TENANT, user, "not-a-hash")
        await self.components.themes.warm()

    async def ledger_keys(self) -> set[str]:
        """Every idempotency key recorded in the ledger."""
        rows = await self.db.run_interaction(
            "ledger_keys", lambda txn: txn.all("SELECT idempotency_key FROM ledger WHERE idempotency_key IS NOT NULL"))
        return {row["idempotency_key"] for row in rows}

    async def saved_theme(self) -> dict[str, str]:
        """The tenant's theme as stored in the database, in camelCase."""
        theme = await self.db.run_interaction("saved_theme", tenant_store.load_theme_txn, TENANT)
        return theme.to_wire()

    async def stop(self) -> None:
        """Stop the service tree: the listener drains, then the breaker and the pool stop (the DB must answer
        again: the pool joins its threads)."""
        await self.built.service.stopService()
        await self._http_pool.closeCachedConnections()


async def start_stack(database_url: str, **env: str) -> Stack:
    """Build, start and seed a web stack on ``database_url`` (``FAULT_ENV`` plus ``env``)."""
    from twisted.web.client import HTTPConnectionPool

    reactor = _reactor()
    settings = load_settings({"DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN, **FAULT_ENV, **env},
                             role="web", listen="tcp:0:interface=127.0.0.1")
    # no invalidation subscriber: with REDIS_URL (tests/fault/test_redis_faults.py) only the client and its breaker
    # face the Redis faults, as before this stack was built by build_service
    built = build_service(settings, reactor, Overrides(subscribe=False, log=False, freeze_heap=False))
    built.service.startService()
    http_pool = HTTPConnectionPool(reactor, persistent=False)  # nothing stays open after the test
    try:
        await built.started.addTimeout(START_TIMEOUT_S, reactor)  # migrated (and warmed: nothing yet)
        await eventually(lambda: built.listener.port is not None, within_s=START_TIMEOUT_S,
                         what="the listener to listen")
    except BaseException:
        await built.service.stopService()
        raise
    stack = Stack(built, http_pool)
    try:
        await stack.seed()
    except BaseException:
        await stack.stop()
        raise
    return stack


class Traffic:
    """Concurrent request loops (``loops``: kind → number of loops) until ``stop()`` or ``max_per_loop``.

    Each loop sends one request, waits for its answer, pauses ``pause_s`` and goes again. Credits
    carry a unique ``Idempotency-Key`` each; PUT theme alternates between two palettes.
    """

    def __init__(self, stack: Stack, loops: Mapping[str, int], *, pause_s: float = 0.02, max_per_loop: int = 2000):
        self.stack = stack
        self.answers: list[Answer] = []
        self._pause_s = pause_s
        self._max_per_loop = max_per_loop
        self._stopping = False
        self._serial = itertools.count()
        self._run_id = uuid.uuid4().hex[:8]
        self._loops: list[Deferred] = [
            ensureDeferred(self._loop(kind, index)) for kind, count in loops.items() for index in range(count)]

    async def _loop(self, kind: str, index: int) -> None:
        for _ in range(self._max_per_loop):
            if self._stopping:
                return
            self.answers.append(await self._one(kind, index))
            await sleep(self._pause_s)

    async def _one(self, kind: str, index: int) -> Answer:
        stack, serial = self.stack, next(self._serial)
        if kind == PUBLIC:
            return await stack.request(kind, "GET", f"/{TENANT}/api/public/load-theme")
        if kind == READ_THEME:
            return await stack.request(kind, "GET", f"/admin/api/tenants/{TENANT}/theme")
        if kind == READ_TENANTS:
            return await stack.request(kind, "GET", "/admin/api/tenants")
        if kind == CREDIT:
            key = f"fault-{self._run_id}-{serial}"
            user = USERS[index % len(USERS)]
            answer = await stack.request(kind, "POST", f"/admin/api/tenants/{TENANT}/users/{user}/credit",
                                         json_body={"amount_cents": 100, "reason": "fault test"},
                                         headers={"Idempotency-Key": key})
            answer.key = key
            return answer
        if kind == PUT_THEME:
            theme = (SAVED_THEME, OTHER_THEME)[serial % 2]
            answer = await stack.request(kind, "PUT", f"/admin/api/tenants/{TENANT}/theme", json_body=theme)
            answer.theme = theme
            return answer
        raise ValueError(kind)

    async def stop(self) -> list[Answer]:
        """Stop every loop after its current request and return every answer."""
        self._stopping = True
        await gatherResults(self._loops)
        return self.answers

    # ---- views ---------------------------------------------------------------------------------

    def of(self, *kinds: str, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """The answers of ``kinds`` to requests sent within [since, until)."""
        return [a for a in self.answers if a.kind in kinds and since <= a.sent_at < until]

    def problems(self) -> list[Answer]:
        """Every answer with something wrong (a 500, no answer, not JSON, an unexpected status…)."""
        return [a for a in self.answers if a.problems]


def summary(answers: list[Answer]) -> str:
    """Counts by kind and status, and the slowest answer per kind, for assertion messages and reports."""
    lines = []
    for kind in sorted({a.kind for a in answers}):
        mine = [a for a in answers if a.kind == kind]
        statuses: dict[int, int] = {}
        for a in mine:
            statuses[a.status] = statuses.get(a.status, 0) + 1
        slowest = max(a.elapsed_s for a in mine)
        lines.append(f"{kind}: {len(mine)} requests {dict(sorted(statuses.items()))}, max {slowest * 1000:.0f} ms")
    return "; ".join(lines)
