"""The public theme path of a fleet, against a real Postgres and a real Redis (issue 3, items 2, 6, 9 and 11).

Several service instances run in this process (``tests.support.fleet``): each is what one web process
builds, with its own DB pool on one shared throwaway Postgres database, its own Redis client and
subscriber on one shared throwaway Redis, and its own Site on a loopback port, driven over real HTTP.
The unit tests (``tests/services/test_theme_cache.py``) pin the cache's rules with a fake clock and
fake Redis; these check that the rules hold with real servers, real timeouts and real failures:

- a cold herd spread over three instances reads the DB once (the per-process singleflight plus the
  Redis lock), and every instance ends up serving the saved theme;
- no request ever runs a DB interaction (warm, L2-only, stale, and with Postgres stopped or frozen),
  and with Postgres down requests still get the last good theme, promptly;
- a theme saved on one instance reaches another through pub/sub within a second;
- with Redis killed or frozen, requests are answered from L1 (or with the defaults) within the L2
  timeout, and clients and subscribers reconnect by themselves once it is back;
- the fleet lock: a held lock keeps other instances off the DB; its value is a random token, and it
  is released by compare-and-delete.

Time limits on single requests are hang detectors (a request waiting on a dead server), not speed claims.
"""

from __future__ import annotations

import re
from contextlib import closing, contextmanager
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults

from tenantsvc.adapters.redis import RedisUnavailable
from tenantsvc.core.theme import DEFAULT_THEME, Theme, parse_theme
from tenantsvc.core.theme_cache_rules import decode_l2
from tenantsvc.services.theme_cache import l2_key, lock_key
from tests.support.fleet import (
    FleetInstance,
    HttpAnswer,
    RawRedis,
    background_only,
    postgres_outage,
    redis_outage,
    seed_tenant,
    served_within,
)
from tests.support.waiting import eventually, pause_for

pytestmark = pytest.mark.integration

SLUG = "acme"
SAVED = Theme(primary_color="#123456", accent_color="#ABCDEF", sportsbook_name="Acme Fleet")
NEWER_WIRE = {"primaryColor": "#0A0B0C", "cardStyle": "glow", "sportsbookName": "Acme Reloaded"}
NEWER = parse_theme(NEWER_WIRE, DEFAULT_THEME)
DEFAULT_BODY, SAVED_BODY, NEWER_BODY = (theme.to_json_bytes() for theme in (DEFAULT_THEME, SAVED, NEWER))

HERD_SIZE = 200
SHORT_TTL = "1"  # THEME_CACHE_TTL for instances whose entries must go stale during the test
STALE_AFTER_S = 1.1
PROMPT_S = 1.0  # a request never waits for the DB, whether it is busy, dead or frozen
REDIS_TROUBLE_LIMIT_S = 1.0  # nor for a dead or frozen Redis (the L2 read gives up after 50 ms) ...
PATIENT_L2_TIMEOUT_MS = "400"  # for an instance whose L2 hit is the point of the test, on a busy machine
TROUBLED_REDIS_TIMEOUT_MS = "2000"  # ... which the instance that calls Redis per request waits for at most this
REDIS_OUTAGE_S = 3.0  # long enough for clients to time out, drop connections and try to reconnect
SAVE_LIMIT_S = 1.0  # a save waits for Redis (L2 write-through) at most one Redis timeout (0.5 s)
PROPAGATION_S = 1.0  # issue 3: a save reaches the other instances within one second
RECONNECT_S = 15.0  # reconnect backoff is capped at 2 s; generous for a loaded machine
RESYNC_S = 6.0  # resubscribe (about 1 s after Redis is back), then one stale answer and a refresh
OTHER_TOKEN = "held-by-another-instance"
TOKEN = re.compile(r"[0-9a-f]{32}")


# ---- fixtures and helpers (``seed_db``, ``fleet`` and ``raw_redis`` are in ``tests/integration/conftest.py``) ----


@pytest.fixture
def reactor_seconds() -> Callable[[], float]:
    """The reactor's clock (the one the theme cache stamps entries with)."""
    from twisted.internet import reactor

    return reactor.seconds


@contextmanager
def tenants_table_locked(postgres_server: Any, database_url: str) -> Iterator[None]:
    """Hold ``ACCESS EXCLUSIVE`` on ``tenants`` so a theme read waits inside its transaction until the block ends."""
    with closing(postgres_server.connect(database_url.rsplit("/", 1)[1], autocommit=False)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


def serving(instance: FleetInstance, body: bytes, *, fresh: bool = False) -> Callable[[], Any]:
    """A check for ``eventually``: the instance answers ``body`` for ``SLUG`` (and, with ``fresh``, as a fresh hit)."""

    async def check() -> HttpAnswer | None:
        answer = await instance.load_theme(SLUG)
        if answer.status != 200 or answer.body != body:
            return None
        if fresh and answer.header("Cache-Status") != "tenantsvc; hit":
            return None
        return answer

    return check


def reaches_redis(instance: FleetInstance) -> Callable[[], Any]:
    """A check for ``eventually``: the instance's Redis client completes a SET and a GET."""

    async def check() -> bool:
        probe = f"probe:{instance.name}"
        try:
            await instance.redis.set(probe, "ok", px=10_000)
            return await instance.redis.get(probe) in ("ok", b"ok")
        except RedisUnavailable:
            return False

    return check


def l2_theme(raw_redis: RawRedis) -> Theme | None:
    """The theme L2 holds for ``SLUG``, read straight from Redis."""
    entry = decode_l2(raw_redis.get(l2_key(SLUG)))
    return None if entry is None else entry.theme


def refreshes(instance: FleetInstance, outcome: str) -> float:
    """How many background refreshes of the instance ended with ``outcome``."""
    return instance.metric("cache_refresh_total", cache="branding", outcome=outcome)


def refreshed_once_more(instance: FleetInstance, ok_so_far: float) -> Callable[[], Any]:
    """A check for ``eventually``: send a request (a stale one starts a refresh); True once one more succeeded."""

    async def check() -> bool:
        await instance.load_theme(SLUG)
        return refreshes(instance, "ok") > ok_so_far

    return check


def script_calls(raw_redis: RawRedis) -> int:
    """How many Lua script runs (EVAL or EVALSHA: the lock's compare-and-delete) Redis has served so far."""
    stats = raw_redis.command("INFO", "commandstats")
    return sum(int(calls) for calls in re.findall(r"cmdstat_eval(?:sha)?:calls=(\d+)", stats))


async def serve_during_redis_trouble(*, warm: tuple[FleetInstance, ...], cold: FleetInstance) -> None:
    """One round of requests: ``SLUG`` from every ``warm`` instance's L1, and a tenant that ``cold`` has never
    cached (an L2 read, then a refresh, each time), all promptly."""
    answers = await served_within(gatherResults(
        [ensureDeferred(instance.load_theme(SLUG)) for instance in warm] + [ensureDeferred(cold.load_theme("ghost"))]),
        REDIS_TROUBLE_LIMIT_S)
    assert bodies(answers[:-1]) == {SAVED_BODY} and answers[-1].body == DEFAULT_BODY


def bodies(answers: list[HttpAnswer]) -> set[bytes]:
    """The distinct bodies among ``answers``."""
    return {answer.body for answer in answers}


# ---- 1. cold herd ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_cold_herd_over_three_instances_reads_the_theme_from_the_db_once(fleet, seed_db, raw_redis):
    await seed_tenant(seed_db, SLUG, SAVED)
    instances = await fleet.start_instances(3, warm=False)  # just started: the warmer has not run, L1/L2 empty
    assert raw_redis.get(l2_key(SLUG)) is None

    herd = await gatherResults([ensureDeferred(instances[i % 3].load_theme(SLUG)) for i in range(HERD_SIZE)])

    assert [answer.status for answer in herd] == [200] * HERD_SIZE
    assert bodies(herd) <= {DEFAULT_BODY, SAVED_BODY}
    for answer in herd:
        assert ("detail=default" in answer.header("Cache-Status")) == (answer.body == DEFAULT_BODY)
    assert fleet.total_interactions("refresh_theme") == 1
    for instance in instances:  # the winner from L1, the others from pub/sub or L2
        await eventually(serving(instance, SAVED_BODY, fresh=True), within_s=2.0,
                         what=f"{instance.name} to serve the saved theme")
    await eventually(lambda: sum(refreshes(instance, "ok") for instance in instances), within_s=2.0,
                     what="the winning refresh to finish")
    assert fleet.total_interactions("refresh_theme") == 1
    assert sum(refreshes(instance, "ok") for instance in instances) == 1
    assert l2_theme(raw_redis) == SAVED


# ---- 2. the request path never touches the DB ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_warm_l2_only_and_stale_requests_run_no_db_interaction(fleet, seed_db, reactor_seconds):
    await seed_tenant(seed_db, SLUG, SAVED)
    warm = await fleet.start_instance()  # L1 and L2 filled by its warmer
    # L1 empty; L2 filled by the first. A generous 400 ms L2 timeout (not 50 ms), so a busy machine cannot
    # turn the L2 hit under test into a DB fallback.
    l2_only = await fleet.start_instance(warm=False, THEME_L2_TIMEOUT=PATIENT_L2_TIMEOUT_MS)
    stale = await fleet.start_instance(THEME_CACHE_TTL=SHORT_TTL)
    stale_at = reactor_seconds() + STALE_AFTER_S

    for instance in (warm, l2_only):
        before = instance.interactions()
        answers = await served_within(instance.load_themes(SLUG, 50), PROMPT_S)
        assert bodies(answers) == {SAVED_BODY}
        assert {answer.header("Cache-Status") for answer in answers} == {"tenantsvc; hit"}
        assert background_only(before, instance.interactions()) == {}, "a fresh entry needs no refresh"
    assert l2_only.metric("cache_l2_operations_total", cache="branding", op="get", outcome="hit") >= 1

    await pause_for(max(0.0, stale_at - reactor_seconds()))
    before = stale.interactions()
    answers = await served_within(stale.load_themes(SLUG, 50), PROMPT_S)
    assert bodies(answers) == {SAVED_BODY}
    assert any("detail=stale" in answer.header("Cache-Status") for answer in answers)
    await eventually(lambda: refreshes(stale, "ok") >= 1, within_s=5.0, what="the background refresh to succeed")
    ran = background_only(before, stale.interactions())
    assert ran["refresh_theme"] >= 1, "a stale entry is revalidated in the background"


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest_twisted.ensureDeferred
async def test_with_postgres_down_every_request_gets_the_last_good_theme_promptly(
        fleet, seed_db, postgres_server, fault):
    await seed_tenant(seed_db, SLUG, SAVED)
    stale = await fleet.start_instance(THEME_CACHE_TTL=SHORT_TTL)  # its entries will need a refresh
    # Nothing in L1; L2 filled by the first. Its L2 reads may take up to a generous 400 ms (not the default
    # 50 ms), so a busy test machine cannot turn the L2 hit this test is about into a DB fallback.
    l2_only = await fleet.start_instance(warm=False, THEME_L2_TIMEOUT=PATIENT_L2_TIMEOUT_MS)
    await pause_for(STALE_AFTER_S)
    before = {instance: instance.interactions() for instance in (stale, l2_only)}

    with postgres_outage(postgres_server, fault) as outage:
        for instance in (stale, l2_only):
            answers = await served_within(instance.load_themes(SLUG, 50), PROMPT_S)
            assert bodies(answers) == {SAVED_BODY}, "the last good theme, never the defaults"
        if fault == "stopped":  # the refresh failed at once, and the failure replaced nothing
            await eventually(lambda: refreshes(stale, "error") >= 1, within_s=5.0, what="the refresh to fail")
        else:  # the refresh is stuck on the frozen server while requests carry on
            await eventually(lambda: stale.db.snapshot().in_use == 1, within_s=2.0,
                             what="the refresh to hold a connection")
        answers = await served_within(stale.load_themes(SLUG, 20), PROMPT_S)
        assert bodies(answers) == {SAVED_BODY}
        assert {"detail=stale" in answer.header("Cache-Status") for answer in answers} == {True}
        for instance in (stale, l2_only):
            background_only(before[instance], instance.interactions())
        outage.end()

    # Postgres is back: the pool reconnects by itself, and a refresh (started by a stale request) succeeds.
    await eventually(refreshed_once_more(stale, refreshes(stale, "ok")), within_s=RECONNECT_S,
                     what="a refresh to succeed after Postgres came back")


# ---- 3. fleet invalidation ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_theme_saved_on_one_instance_is_served_by_another_within_a_second(fleet, seed_db, raw_redis):
    await seed_tenant(seed_db, SLUG, SAVED)
    a, b = await fleet.start_instances(2)
    json_before = await b.load_theme(SLUG)
    css_before = await b.request("GET", f"/{SLUG}/api/public/theme.css")
    assert json_before.body == SAVED_BODY

    await a.save_theme(SLUG, NEWER_WIRE)
    json_after = await eventually(serving(b, NEWER_BODY, fresh=True), within_s=PROPAGATION_S,
                                  what="the other instance to serve the saved theme")

    assert json_after.header("ETag") != json_before.header("ETag")
    css_after = await b.request("GET", f"/{SLUG}/api/public/theme.css")
    assert css_after.header("ETag") != css_before.header("ETag") and b"#0A0B0C" in css_after.body.upper()
    assert b.db.calls["refresh_theme"] == 0, "the new theme came over pub/sub, not from the DB"
    assert (await a.load_theme(SLUG)).body == NEWER_BODY
    assert l2_theme(raw_redis) == NEWER


# ---- 4. Redis trouble ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest_twisted.ensureDeferred
async def test_theme_requests_ride_out_redis_trouble_and_the_fleet_reconnects_by_itself(
        fleet, seed_db, redis_server, raw_redis, reactor_seconds, fault):
    await seed_tenant(seed_db, SLUG, SAVED)
    a, b = await fleet.start_instances(2)
    # Nothing in L1: every answer needs L2 or a refresh. Its Redis calls time out after 2 s, twice the answer
    # limit, so an answer that waited for a Redis call fails the limit however busy the test machine is.
    cold = await fleet.start_instance(warm=False, REDIS_TIMEOUT=TROUBLED_REDIS_TIMEOUT_MS)
    subscriptions = b.subscriber.subscriptions

    with redis_outage(redis_server, fault) as outage:
        ends_at = reactor_seconds() + REDIS_OUTAGE_S
        answers = await served_within(cold.load_themes(SLUG, 20), REDIS_TROUBLE_LIMIT_S)
        assert bodies(answers) <= {DEFAULT_BODY, SAVED_BODY}
        # Without Redis there is no fleet lock: the cold instance refreshes on its own and then has the theme.
        await eventually(serving(cold, SAVED_BODY), within_s=5.0, what="the cold instance to refresh locally")
        while reactor_seconds() < ends_at:  # keep serving, and keep the cold instance calling Redis, throughout
            await serve_during_redis_trouble(warm=(a, b, cold), cold=cold)
        outage.end()

    for instance in (a, b, cold):
        await eventually(reaches_redis(instance), within_s=RECONNECT_S, what=f"{instance.name} to reach Redis again")
    if fault == "stopped":  # a killed Redis lost the subscriptions: the subscriber subscribes again
        await eventually(lambda: b.subscriber.subscriptions > subscriptions, within_s=RECONNECT_S,
                         what="the subscriber to resubscribe")
    await a.save_theme(SLUG, NEWER_WIRE)
    await eventually(serving(b, NEWER_BODY), within_s=PROPAGATION_S, what="a save to reach the other instance")
    assert l2_theme(raw_redis) == NEWER, "L2 writes work again"


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest_twisted.ensureDeferred
async def test_a_save_made_during_a_redis_outage_reaches_the_other_instance_once_redis_is_back(
        fleet, seed_db, redis_server, fault):
    await seed_tenant(seed_db, SLUG, SAVED)
    a, b = await fleet.start_instances(2)

    with redis_outage(redis_server, fault) as outage:
        saved = await a.save_theme(SLUG, NEWER_WIRE)  # the DB write lands; L2 and the fleet are unreachable
        assert saved.elapsed_s < SAVE_LIMIT_S
        assert (await a.load_theme(SLUG)).body == NEWER_BODY
        outage.end()

    # Stopped: the resubscribed instance marks its entries stale and revalidates from the DB. Paused: the
    # subscriber's connection survives and cannot tell it missed a message; the saving instance writes the
    # refused theme through and publishes it again once Redis answers (ThemePublisher).
    await eventually(serving(b, NEWER_BODY), within_s=RESYNC_S, what="the save to reach the other instance")


# ---- 5. the fleet lock -----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["missing", "stale"])
@pytest_twisted.ensureDeferred
async def test_no_db_read_while_another_instance_holds_the_refresh_lock(fleet, seed_db, raw_redis, entry):
    await seed_tenant(seed_db, SLUG, SAVED)
    if entry == "missing":
        instance, served = await fleet.start_instance(warm=False), {DEFAULT_BODY}
    else:
        instance, served = await fleet.start_instance(THEME_CACHE_TTL=SHORT_TTL), {SAVED_BODY}
        await pause_for(STALE_AFTER_S)
    assert raw_redis.command("SET", lock_key(SLUG), OTHER_TOKEN, "NX", "PX", 30_000) == "OK"
    before = instance.interactions()

    answers = await served_within(instance.load_themes(SLUG, 20), PROMPT_S)

    assert bodies(answers) == served
    await eventually(lambda: refreshes(instance, "lock_lost") >= 1, within_s=2.0, what="the refresh to find the lock")
    assert instance.interactions() == before, "the lock's loser does not read the DB"
    assert raw_redis.get(lock_key(SLUG)) == OTHER_TOKEN, "and leaves the other instance's lock alone"

    raw_redis.command("DEL", lock_key(SLUG))  # the other instance finished
    await eventually(serving(instance, SAVED_BODY, fresh=True), within_s=2.0, what="a refresh once the lock is free")
    assert instance.db.calls["refresh_theme"] == 1


@pytest_twisted.ensureDeferred
async def test_the_refresh_lock_is_a_random_token_released_by_compare_and_delete(
        fleet, seed_db, raw_redis, postgres_server, postgres_database_url):
    await seed_tenant(seed_db, SLUG, SAVED)
    instance = await fleet.start_instance()

    async def refresh_while_db_waits(during: Callable[[str], None]) -> None:
        """Refresh with the theme read held up, call ``during(token)`` while the lock is held, wait for the release."""
        scripts = script_calls(raw_redis)
        with tenants_table_locked(postgres_server, postgres_database_url):
            refreshing = instance.themes.refresh(SLUG)
            token = await eventually(lambda: raw_redis.get(lock_key(SLUG)), within_s=5.0,
                                     what="the refresh to take the lock")
            during(token)
        await refreshing
        # two scripts at least: the set-if-newer write of L2, then the compare-and-delete of the lock
        await eventually(lambda: script_calls(raw_redis) >= scripts + 2, within_s=5.0, what="the compare-and-delete")

    tokens: list[str] = []
    for _ in range(2):
        await refresh_while_db_waits(tokens.append)
        assert raw_redis.get(lock_key(SLUG)) is None, "released after the refresh"
    assert all(TOKEN.fullmatch(token) for token in tokens) and tokens[0] != tokens[1], tokens

    # Our lock expired mid-refresh and another instance took it: ours to release no more.
    await refresh_while_db_waits(lambda token: raw_redis.command("SET", lock_key(SLUG), OTHER_TOKEN, "PX", 30_000))
    assert raw_redis.get(lock_key(SLUG)) == OTHER_TOKEN
    assert instance.db.calls["refresh_theme"] == 3
    assert refreshes(instance, "ok") == 3
