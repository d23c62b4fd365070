"""Player routes over HTTP while Redis hangs, on a Clock: the real ``RedisClient`` (on a fake pool that never
answers, like a SIGSTOPped Redis) guarded by the real ``RedisBreaker``, the real stores, limiters and routes.

Once three Redis calls have timed out the breaker is open: login, /me, bets and logout answer 503 + Retry-After
(the rest of the open period) without waiting at all, login without hashing the password, the limiters fail
open (counted), registration and the public theme carry on, ``/health/detailed`` shows the breaker; once the
PING probes are answered again the routes reach Redis again. Time passes only by ``Clock.advance``.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tenantsvc.adapters.redis import RedisClient
from tenantsvc.core.targets import RedisTarget
from tenantsvc.core.breaker import CLOSED, HALF_OPEN, OPEN
from tenantsvc.services.redis_guard import PROBE_INTERVAL_S, RedisBreaker, redis_breaker_config
from tests.support.fake_redis_pool import FakeRedisPool
from tests.support.web_harness import CLOCK_START_S, WebHarness, WebResponse, build_harness

TIMEOUT_S = 0.5
OPEN_S = 1.0
PASSWORD = "correct horse battery"
TARGET = RedisTarget("127.0.0.1", 1, 0, None)


class RedisHarness:
    """A web harness whose Redis is a fake pool behind a real client and breaker; counts password checks."""

    def __init__(self, db_path: str):
        self.clock = Clock()
        self.clock.advance(CLOCK_START_S)
        self.pool = FakeRedisPool("up")
        client = RedisClient(TARGET, self.clock, TIMEOUT_S, pool=self.pool)

        def guard(metrics: Any) -> RedisBreaker:
            breaker = RedisBreaker(self.clock, metrics, probe_timeout_s=2.5,
                                   config=redis_breaker_config(3, OPEN_S, 5.0))
            breaker.protect(client)
            return breaker

        self.web: WebHarness = build_harness(db_path, clock=self.clock, redis=client, redis_breaker=guard)
        self.breaker = self.web.components.redis.breaker
        self.password_checks = 0
        passwords = self.web.components.players.passwords
        verify = passwords.verify

        def counted(stored_hash: str, password: str) -> Deferred:
            self.password_checks += 1
            return verify(stored_hash, password)

        passwords.verify = counted

    def start(self, method: str, path: str, **options: Any) -> Deferred:
        return self.web.start_request(method, path, **options)

    def now(self, method: str, path: str, **options: Any) -> WebResponse:
        """A request that must be answered without any time passing."""
        pending = self.start(method, path, **options)
        assert self.web.answered(pending), f"{method} {path} waited"
        return self.web.finish(pending)

    def after(self, seconds: float, *pending: Deferred) -> list[WebResponse]:
        """Let ``seconds`` pass (in small steps); every request must then be answered."""
        for _ in range(round(seconds / 0.01)):
            self.clock.advance(0.01)
        assert all(self.web.answered(p) for p in pending), "a request was still waiting"
        return [self.web.finish(p) for p in pending]

    def metric(self, name: str, **labels: str) -> float:
        return self.web.metric(name, **labels)


def assert_unavailable(response: WebResponse, retry_after: int | None = None) -> None:
    assert response.status == 503, (response.status, response.body)
    payload = response.json()
    assert payload["error"] == "unavailable" and payload["message"], payload
    assert response.header("Retry-After") == str(payload["retry_after"]), response.headers
    if retry_after is not None:
        assert payload["retry_after"] == retry_after, payload


@pytest.fixture
def redis_web(tmp_path: Any) -> RedisHarness:
    harness = RedisHarness(str(tmp_path / "redis-web.sqlite3"))
    harness.web.create_tenant("acme")
    registered = harness.web.request("POST", "/acme/api/auth/register",
                                     json={"username": "alice", "password": PASSWORD})
    assert registered.status == 201
    yield harness
    harness.breaker.stopService()
    harness.web.close()


def cookie() -> dict[str, str]:
    """A well-formed session cookie (so /me asks the store)."""
    return {"Cookie": f"tsid={secrets.token_urlsafe(32)}"}


def bet_body() -> dict[str, Any]:
    return {"match_id": "m1", "market": "1x2", "selection": "home", "line": None, "stake_cents": 100, "odds": "2.00"}


ROUTES: dict[str, Callable[[RedisHarness], Deferred]] = {
    "me": lambda h: h.start("GET", "/acme/api/me", headers=cookie()),
    "login": lambda h: h.start("POST", "/acme/api/auth/login", json={"username": "alice", "password": PASSWORD}),
    "bet": lambda h: h.start("POST", "/acme/api/bets", headers={**cookie(), "Idempotency-Key": secrets.token_hex(8)},
                             json=bet_body()),
    "logout": lambda h: h.start("POST", "/acme/api/auth/logout", headers=cookie(), json={}),
    "bets": lambda h: h.start("GET", "/acme/api/bets", headers=cookie()),
}


def open_the_breaker(h: RedisHarness) -> list[WebResponse]:
    """Freeze Redis and let three concurrent /me time out on their first Redis call (the rate limit)."""
    h.pool.mode = "hung"
    pending = [ROUTES["me"](h) for _ in range(3)]
    h.clock.advance(TIMEOUT_S - 0.01)
    assert not any(h.web.answered(p) for p in pending)
    return h.after(0.01, *pending)


def test_three_timeouts_open_it_and_every_session_route_then_answers_503_at_once(redis_web):
    h = redis_web
    first = open_the_breaker(h)
    for response in first:  # their limiter call timed out (fail open), then the session read was refused
        assert_unavailable(response, retry_after=1)
    assert h.breaker.describe()["state"] == OPEN
    sent = len(h.pool.sent)

    for route, start in ROUTES.items():
        pending = start(h)
        assert h.web.answered(pending), f"{route} waited on a frozen Redis behind an open breaker"
        assert_unavailable(h.web.finish(pending), retry_after=1)
    assert len(h.pool.sent) == sent, "a call reached the frozen Redis while the breaker was open"
    assert h.password_checks == 0, "a login hashed its password although no session could be stored"
    # one limiter call each for the three /me, then me, login (its three levels in one call), bet, logout and bets
    assert h.metric("ratelimit_decisions_total", outcome="fail_open", scope="none") == 3 + 1 + 1 + 1 + 1 + 1
    assert h.metric("circuit_breaker_rejections_total", breaker_name="redis", request_class="EVALSHA") == 5
    assert h.metric("session_store_operations_total", op="reachable", outcome="error") == 1


def test_registration_and_the_public_theme_carry_on_while_it_is_open(redis_web):
    h = redis_web
    open_the_breaker(h)
    registered = h.now("POST", "/acme/api/auth/register", json={"username": "bob", "password": PASSWORD})
    assert registered.status == 201, registered.body
    theme = h.now("GET", "/acme/api/public/load-theme")
    assert theme.status == 200


def test_retry_after_follows_the_open_period_as_it_grows(redis_web):
    h = redis_web
    open_the_breaker(h)
    h.after(0.6)
    assert_unavailable(h.now("GET", "/acme/api/me", headers=cookie()), retry_after=1)  # 0.4 s left
    h.after(0.4 + 2.5 + 0.05)  # half-open: the PING hangs until its own timeout (2.5 s), then open for 2 s
    assert h.breaker.describe()["state"] == OPEN and h.pool.count("PING") == 1
    assert_unavailable(h.now("GET", "/acme/api/me", headers=cookie()), retry_after=2)


def test_once_redis_answers_again_the_probes_close_it_and_routes_reach_redis(redis_web):
    h = redis_web
    open_the_breaker(h)
    h.pool.mode = "up"
    h.after(OPEN_S + 0.01)
    assert h.breaker.describe()["state"] == HALF_OPEN
    assert_unavailable(h.now("GET", "/acme/api/me", headers=cookie()))  # still refused until it closes
    h.after(2 * PROBE_INTERVAL_S + 0.01)
    assert h.breaker.describe()["state"] == CLOSED and h.pool.count("PING") == 3
    assert h.now("GET", "/acme/api/me", headers=cookie()).status == 401  # Redis answered: no such session
    assert h.now("POST", "/acme/api/auth/login", json={"username": "alice", "password": PASSWORD}).status == 200


def test_before_it_opens_a_lone_player_waits_one_timeout_per_redis_call_and_no_more_than_three(redis_web):
    h = redis_web
    h.pool.mode = "hung"
    login = ROUTES["login"](h)  # one limiter call (every level at once), then the session write
    h.after(TIMEOUT_S)
    assert not h.web.answered(login)
    (answer,) = h.after(TIMEOUT_S + 0.05, login)  # + the 0.01 s steps each timer may fire late
    assert_unavailable(answer)
    assert h.password_checks == 1  # the breaker was still closed: the password was checked, no session stored
    me = h.start("GET", "/acme/api/me", headers=cookie())  # its limiter call is the third timeout
    (answer,) = h.after(TIMEOUT_S + 0.05, me)
    assert_unavailable(answer)
    assert h.breaker.describe()["state"] == OPEN
    assert_unavailable(h.now("GET", "/acme/api/me", headers=cookie()))


def test_health_shows_the_redis_breaker_warning_while_open_and_passing_once_closed(redis_web):
    h = redis_web

    def check() -> dict[str, Any]:
        response = h.now("GET", "/health/detailed")
        assert response.status == 200, response.body  # the DB is fine: Redis only warns
        return response.json()

    report = check()
    assert report["checks"]["redis:circuitBreaker"][0]["status"] == "pass"
    open_the_breaker(h)
    report = check()
    (entry,) = report["checks"]["redis:circuitBreaker"]
    assert (entry["status"], entry["observedValue"], entry["breaker"]["retry_after_s"]) == ("warn", OPEN, 1)
    assert report["status"] == "warn"
    assert report["checks"]["sessions:count"][0]["status"] == "warn"
    h.pool.mode = "up"
    h.after(OPEN_S + 2 * PROBE_INTERVAL_S + 0.01)
    assert check()["checks"]["redis:circuitBreaker"][0]["status"] == "pass"
