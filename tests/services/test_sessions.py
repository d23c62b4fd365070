"""SessionService over both stores: one contract run on the in-process store (Clock) and on Redis (real TTLs),
then what only one store has: the in-process bound and day-scale expiry on a Clock; Redis's keys, TTLs and
outages (killed, paused) that surface as ``SessionStoreUnavailable`` and end when Redis is back.

Redis expires keys by its own clock, so the Redis cases use sub-second TTLs and let real time pass, with
margins of at least 200 ms on either side of every expiry; the in-process cases advance a Clock.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from tenantsvc.adapters.redis_sessions import EXPIRIES_KEY, RedisSessionStore, owner_key, session_key
from tenantsvc.adapters.session_store import MemorySessionStore
from tenantsvc.core.sessions import SessionPolicy, SessionRecord, is_well_formed_session_id, session_hash
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.errors import SessionStoreUnavailable
from tenantsvc.services.sessions import CrossTenantSession, SessionService, owner_of
from tests.support.redis_clients import RedisClients, redis_clients  # noqa: F401 (a fixture)
from tests.support.waiting import eventually, pause_for, real_reactor

SHORT = SessionPolicy(idle_ttl_s=0.5, remember_ttl_s=1.0, absolute_lifetime_s=30.0)


class CountingStore:
    """Wraps a store and records the name of every operation asked of it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return operation(*args, **kwargs)

        return counted


class MemoryEnv:
    """The in-process store on a Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = CountingStore(MemorySessionStore(self.clock))
        self.registry = CollectorRegistry()

    def sessions(self, policy: SessionPolicy = SHORT) -> SessionService:
        return SessionService(self.store, self.clock, policy, metrics=Metrics(self.registry, "web"))

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class RedisEnv:
    """The Redis store on the real server, timed by the real reactor."""

    def __init__(self, clients: RedisClients):
        self.redis = clients.new()
        self.clock = real_reactor()
        self.store = CountingStore(RedisSessionStore(self.redis))
        self.registry = CollectorRegistry()

    def sessions(self, policy: SessionPolicy = SHORT) -> SessionService:
        return SessionService(self.store, self.clock, policy, metrics=Metrics(self.registry, "web"))

    async def advance(self, seconds: float) -> None:
        await pause_for(seconds)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryEnv()
    return RedisEnv(request.getfixturevalue("redis_clients"))


# ---- the contract: both stores ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_created_session_resolves_under_its_tenant(env):
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    assert is_well_formed_session_id(session_id)
    session = await sessions.resolve(session_id, "acme")
    assert (session.tenant, session.user_id, session.username, session.remember) == ("acme", 7, "alice", False)
    assert session.created_at == pytest.approx(env.clock.seconds(), abs=1.0)


@pytest_twisted.ensureDeferred
async def test_ids_are_never_reused(env):
    sessions = env.sessions()
    ids = {await sessions.create("acme", 7, "alice", remember=False) for _ in range(20)}
    assert len(ids) == 20


@pytest_twisted.ensureDeferred
async def test_use_slides_the_idle_expiry(env):
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    for _ in range(3):  # 0.9 s in all: well past one idle period, alive because it was used
        await env.advance(0.3)
        assert await sessions.resolve(session_id, "acme") is not None
    await env.advance(0.8)
    assert await sessions.resolve(session_id, "acme") is None


@pytest_twisted.ensureDeferred
async def test_idle_sessions_expire_and_remember_me_lives_longer(env):
    sessions = env.sessions()
    brief = await sessions.create("acme", 7, "alice", remember=False)
    remembered = await sessions.create("acme", 7, "alice", remember=True)
    await env.advance(0.75)
    assert await sessions.resolve(brief, "acme") is None
    assert (await sessions.resolve(remembered, "acme")).remember is True
    await env.advance(1.3)
    assert await sessions.resolve(remembered, "acme") is None


@pytest_twisted.ensureDeferred
async def test_no_amount_of_use_outlives_the_absolute_lifetime(env):
    sessions = env.sessions(SessionPolicy(idle_ttl_s=0.6, remember_ttl_s=0.6, absolute_lifetime_s=1.0))
    session_id = await sessions.create("acme", 7, "alice", remember=True)
    await env.advance(0.4)
    assert await sessions.resolve(session_id, "acme") is not None
    await env.advance(0.4)
    assert await sessions.resolve(session_id, "acme") is not None  # renewed only until 1.0 s
    await env.advance(0.4)
    assert await sessions.resolve(session_id, "acme") is None


@pytest_twisted.ensureDeferred
async def test_a_stored_session_past_its_absolute_lifetime_is_refused_and_removed(env):
    """However a record outlived its lifetime in the store (a clock step elsewhere), it is never honoured."""
    sessions = env.sessions()
    session_id = "A" * 43
    old = SessionRecord("acme", 7, "alice", env.clock.seconds() - 31.0, False)
    await env.store.put(session_hash(session_id), owner_of("acme", 7), old.to_json(), 60_000)
    assert await sessions.resolve(session_id, "acme") is None
    assert await env.store.get(session_hash(session_id)) is None


@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session_and_replaying_its_id_gets_nothing(env):
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    other = await sessions.create("acme", 7, "alice", remember=False)
    await sessions.destroy(session_id)
    assert await sessions.resolve(session_id, "acme") is None
    await sessions.destroy(session_id)  # twice is harmless
    assert await sessions.resolve(other, "acme") is not None


@pytest_twisted.ensureDeferred
async def test_logout_everywhere_ends_every_session_of_that_user_only(env):
    sessions = env.sessions()
    mine = [await sessions.create("acme", 7, "alice", remember=r) for r in (False, True, False)]
    someone_else = await sessions.create("acme", 8, "bob", remember=False)
    same_id_other_tenant = await sessions.create("beta", 7, "carol", remember=False)
    await sessions.destroy(mine[2])
    assert await sessions.destroy_all("acme", 7) == 2
    assert [await sessions.resolve(s, "acme") for s in mine] == [None, None, None]
    assert await sessions.resolve(someone_else, "acme") is not None
    assert await sessions.resolve(same_id_other_tenant, "beta") is not None
    assert await sessions.destroy_all("acme", 7) == 0


@pytest_twisted.ensureDeferred
async def test_a_session_presented_to_another_tenant_is_refused_distinctly(env):
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    with pytest.raises(CrossTenantSession) as caught:
        await sessions.resolve(session_id, "beta")
    error = caught.value
    assert (error.presented_tenant, error.owner_tenant, error.user_id) == ("beta", "acme", 7)
    assert session_id not in str(error) and session_hash(session_id) not in str(error)
    calls = list(env.store.calls)
    await env.advance(0.3)
    with pytest.raises(CrossTenantSession):
        await sessions.resolve(session_id, "beta")
    assert env.store.calls[len(calls):] == ["get"]  # looked at, never renewed
    await env.advance(0.3)
    assert await sessions.resolve(session_id, "acme") is None  # so it still expired on time


@pytest.mark.parametrize("presented", [
    None, "", "short", "A" * 42, "A" * 44, "A" * 10_000, "A" * 42 + "B", "A" * 42 + "=", "A" * 41 + "/A",
    "A" * 41 + "\u00e9A", b"A" * 43, 12345, "; DROP", "session:" + "a" * 35,
])
@pytest_twisted.ensureDeferred
async def test_malformed_ids_never_reach_the_store(env, presented):
    sessions = env.sessions()
    assert await sessions.resolve(presented, "acme") is None
    await sessions.destroy(presented)
    assert env.store.calls == []


@pytest_twisted.ensureDeferred
async def test_an_unknown_well_formed_id_is_looked_up_and_creates_nothing(env):
    sessions = env.sessions()
    assert await sessions.resolve("Q" * 43, "acme") is None
    await sessions.destroy("Q" * 43)
    assert env.store.calls == ["get", "get", "delete"]
    assert await sessions.count() == 0


@pytest_twisted.ensureDeferred
async def test_count_follows_creation_logout_and_expiry(env):
    sessions = env.sessions()
    assert await sessions.count() == 0
    ids = [await sessions.create("acme", user_id, "u", remember=False) for user_id in (1, 2, 3)]
    await sessions.create("acme", 4, "u", remember=True)
    assert await sessions.count() == 4
    await sessions.destroy(ids[0])
    assert await sessions.count() == 3
    await env.advance(0.75)
    assert await sessions.count() == 1  # only the remembered one
    await env.advance(0.5)
    assert await sessions.count() == 0


@pytest_twisted.ensureDeferred
async def test_store_operations_are_counted_and_timed(env):
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    await sessions.resolve(session_id, "acme")
    sample = env.registry.get_sample_value
    assert sample("session_store_operations_total", {"op": "put", "outcome": "ok"}) == 1.0
    assert sample("session_store_operations_total", {"op": "renew", "outcome": "ok"}) == 1.0
    assert sample("session_store_latency_seconds_count", {"op": "get"}) == 1.0


# ---- in-process store: day-scale expiry on a Clock, bounded memory ----------------------------


@pytest_twisted.ensureDeferred
async def test_default_lifetimes_an_hour_a_day_and_a_week():
    env = MemoryEnv()
    sessions = env.sessions(SessionPolicy())
    brief = await sessions.create("acme", 7, "alice", remember=False)
    remembered = await sessions.create("acme", 7, "alice", remember=True)
    await env.advance(3599)
    assert await sessions.resolve(brief, "acme") is not None
    await env.advance(3601)
    assert await sessions.resolve(brief, "acme") is None
    assert await sessions.resolve(remembered, "acme") is not None  # 2 h: well within its day
    for _ in range(7):  # used every 23 hours: alive at 163 h…
        await env.advance(23 * 3600)
        assert await sessions.resolve(remembered, "acme") is not None
    await env.advance(23 * 3600)  # …and dead at 186 h although used 23 h ago: 7 days is the end
    assert await sessions.resolve(remembered, "acme") is None


@pytest_twisted.ensureDeferred
async def test_the_in_process_store_is_bounded_and_drops_the_session_closest_to_expiry():
    clock = Clock()
    store = MemorySessionStore(clock, max_sessions=3)
    sessions = SessionService(store, clock, SHORT)
    remembered = [await sessions.create("acme", n, "u", remember=True) for n in (1, 2)]
    brief = await sessions.create("acme", 3, "u", remember=False)
    newest = await sessions.create("acme", 4, "u", remember=True)
    assert await sessions.count() == 3
    assert await sessions.resolve(brief, "acme") is None
    assert all([await sessions.resolve(s, "acme") for s in remembered + [newest]])


@pytest_twisted.ensureDeferred
async def test_the_in_process_store_forgets_deleted_and_expired_sessions():
    clock = Clock()
    store = MemorySessionStore(clock)
    sessions = SessionService(store, clock, SHORT)
    for round_ in range(50):
        ids = [await sessions.create("acme", n, "u", remember=False) for n in range(20)]
        for session_id in ids[:10]:
            await sessions.destroy(session_id)
        clock.advance(0.6)
    assert await sessions.count() == 0
    assert len(store._expiries) <= 64 + 20 and store._owners == {}


# ---- Redis store: what is stored, and outages --------------------------------------------------


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_redis_keeps_json_under_the_id_hash_with_ttls(redis_clients):
    env = RedisEnv(redis_clients)
    sessions = env.sessions(SessionPolicy(idle_ttl_s=3600, remember_ttl_s=86400))
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    hashed = hashlib.sha256(session_id.encode()).hexdigest()
    stored = json.loads(await env.redis.call("GET", f"session:{hashed}"))
    assert set(stored) == {"tenant", "user_id", "username", "created_at", "remember"}
    assert 3_590_000 < await env.redis.call("PTTL", session_key(hashed)) <= 3_600_000
    await sessions.create("acme", 7, "alice", remember=True)
    assert await env.redis.call("PTTL", owner_key("acme:7")) > 86_000_000  # as long as its longest member
    assert await env.redis.call("SCARD", owner_key("acme:7")) == 2
    assert await env.redis.call("ZCARD", EXPIRIES_KEY) == 2
    keys = await env.redis.call("SCAN", 0, "COUNT", 1000)
    assert not any(session_id in key for key in keys[1])


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_new_login_prunes_expired_sessions_from_the_users_set(redis_clients):
    env = RedisEnv(redis_clients)
    sessions = env.sessions()
    for _ in range(3):
        await sessions.create("acme", 7, "alice", remember=False)
    await env.advance(0.75)
    await sessions.create("acme", 7, "alice", remember=False)
    assert await env.redis.call("SCARD", owner_key("acme:7")) == 1


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_redis_killed_mid_test_means_unavailable_never_a_fallback_then_back(redis_server, redis_clients):
    env = RedisEnv(redis_clients)
    sessions = env.sessions()
    session_id = await sessions.create("acme", 7, "alice", remember=True)
    redis_server.stop()
    try:
        for attempt in (sessions.resolve(session_id, "acme"), sessions.create("acme", 7, "alice", False),
                        sessions.destroy(session_id), sessions.destroy_all("acme", 7), sessions.count()):
            with pytest.raises(SessionStoreUnavailable) as caught:
                await attempt
            assert caught.value.retry_after_s == 2
        assert env.registry.get_sample_value("session_store_operations_total",
                                             {"op": "get", "outcome": "error"}) == 2.0
    finally:
        redis_server.start()

    async def answers() -> bool:
        try:
            return await sessions.count() == 0  # a restarted Redis kept nothing (no persistence in tests)
        except SessionStoreUnavailable:
            return False

    await eventually(answers, within_s=10.0, what="the session store answers again")
    fresh = await sessions.create("acme", 7, "alice", remember=False)
    assert (await sessions.resolve(fresh, "acme")).username == "alice"
    assert await sessions.resolve(session_id, "acme") is None


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_paused_redis_times_out_as_unavailable_and_sessions_survive_it(redis_server, redis_clients):
    env = RedisEnv(redis_clients)
    sessions = env.sessions(SessionPolicy(idle_ttl_s=60))
    session_id = await sessions.create("acme", 7, "alice", remember=False)
    redis_server.pause()
    try:
        with pytest.raises(SessionStoreUnavailable):
            await sessions.resolve(session_id, "acme")
    finally:
        redis_server.resume()

    async def resolves() -> bool:
        try:
            return await sessions.resolve(session_id, "acme") is not None
        except SessionStoreUnavailable:
            return False

    await eventually(resolves, within_s=10.0, what="the session resolves again after the pause")
