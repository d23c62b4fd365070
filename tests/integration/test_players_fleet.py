"""Players across a fleet, against a real Postgres and a real Redis (issue 5, items 2, 4 and 7).

Two service instances run in this process (``tests.support.fleet``), each with its own DB pool, Redis
client, password-hashing pool and Site on a loopback port, sharing one throwaway Postgres database and one
throwaway Redis. Requests go over real HTTP; the session cookie is always sent explicitly in a ``Cookie``
header (there is no cookie jar). The in-process tests (``tests/web/test_players.py``) pin the rules on a
Clock with in-memory stores; these check what only real servers show:

- a session is fleet-wide: made on one instance, honoured and ended on another; "log out everywhere"
  ends the user's sessions whichever instance made them;
- Redis holds ``session:<sha256(id)>`` as JSON with the idle (or remember-me) TTL, renewed on use, and
  never the id itself; a cookie naming no session creates no key;
- with Redis killed or frozen, the public theme is still served while login and ``/me`` answer 503 with
  ``Retry-After`` (never a local session), and ``/health/detailed`` says so; once Redis is back, logins
  work again, and sessions made before are gone (killed: it restarts empty) or still valid (frozen);
- a rate limit is one bucket for the fleet, fails open to each instance's own bucket without Redis, and is
  shared again once Redis is back; login guesses against one username are limited fleet-wide;
- concurrent registrations of one username through both instances make exactly one account.

Waits are bounded polls (``eventually``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable, Sequence

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults

from tenantsvc.core.rate_limits import KEY_PREFIX as RATE_LIMIT_PREFIX
from tests.support.fleet import Fleet, FleetInstance, HttpAnswer, RawRedis, redis_outage, seed_tenant, served_within
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SLUG = "acme"
PASSWORD = "correct horse battery staple"
ALICE, BOB = "alice", "bob"
OPENING_BALANCE_CENTS = 100_000  # the tenant's default_user_balance
IDLE_TTL_S, REMEMBER_TTL_S = 3600, 86400
TTL_SLACK_S = 60.0  # "≈ 3600 s": set moments ago, on a machine that may be slow
TTL_DROP_MS = 200  # how far a session's TTL runs down before a use must push it back up
RECONNECT_S = 15.0  # reconnect backoff is capped at 2 s; generous for a loaded machine
PROMPT_S = 1.0  # hang detector for public requests while Redis is down (they never wait for it)
SESSION_KEY = re.compile(r"session:[0-9a-f]{64}")
SESSIONS_CHECK = "sessions:count"


# ---- the player routes over HTTP ---------------------------------------------------------------------------


def cookie_header(session_id: str | None) -> dict[str, str]:
    """The ``Cookie`` header presenting ``session_id`` (none at all for None)."""
    return {} if session_id is None else {"Cookie": f"tsid={session_id}"}


async def register(instance: FleetInstance, username: str = ALICE, password: str = PASSWORD) -> HttpAnswer:
    """``POST /<tenant>/api/auth/register``."""
    return await instance.request("POST", f"/{SLUG}/api/auth/register",
                                  json_body={"username": username, "password": password})


async def login(instance: FleetInstance, username: str = ALICE, password: str = PASSWORD, *,
                remember: bool = False, session_id: str | None = None) -> HttpAnswer:
    """``POST /<tenant>/api/auth/login``, presenting ``session_id`` if given."""
    return await instance.request("POST", f"/{SLUG}/api/auth/login", headers=cookie_header(session_id),
                                  json_body={"username": username, "password": password, "remember": remember})


def issued_session_id(answer: HttpAnswer) -> str:
    """The session id a successful login set in its ``tsid`` cookie."""
    assert answer.status == 200, (answer.status, answer.body)
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(answer.header("Set-Cookie") or "")
    assert "tsid" in cookie and cookie["tsid"].value, answer.headers
    return cookie["tsid"].value


async def logged_in(instance: FleetInstance, username: str = ALICE, *, remember: bool = False) -> str:
    """Log ``username`` in through ``instance``; returns the new session id."""
    return issued_session_id(await login(instance, username, remember=remember))


async def me(instance: FleetInstance, session_id: str | None) -> HttpAnswer:
    """``GET /<tenant>/api/me`` with ``session_id``."""
    return await instance.request("GET", f"/{SLUG}/api/me", headers=cookie_header(session_id))


async def logout(instance: FleetInstance, session_id: str | None, *, everywhere: bool = False) -> HttpAnswer:
    """``POST /<tenant>/api/auth/logout`` (or ``logout-all``) with ``session_id``, as JSON (CSRF rule)."""
    path = f"/{SLUG}/api/auth/logout-all" if everywhere else f"/{SLUG}/api/auth/logout"
    return await instance.request("POST", path, headers=cookie_header(session_id), json_body={})


def json_of(answer: HttpAnswer) -> Any:
    """The answer's JSON body (asserting it is JSON)."""
    assert (answer.header("Content-Type") or "").startswith("application/json"), answer.headers
    return json.loads(answer.body)


def assert_refused(answer: HttpAnswer, status: int, error: str) -> int:
    """``answer`` is a ``status`` refusal with ``Retry-After`` and JSON ``{"error", "message", "retry_after"}``
    that agree; returns the delay."""
    assert answer.status == status, (answer.status, answer.body)
    retry_after = int(answer.header("Retry-After") or "0")
    assert retry_after >= 1, answer.headers
    payload = json_of(answer)
    assert payload["error"] == error and payload["message"] and payload["retry_after"] == retry_after, payload
    return retry_after


def statuses(answers: Sequence[HttpAnswer]) -> list[int]:
    """The status of each answer, in order."""
    return [answer.status for answer in answers]


def remaining(answers: Sequence[HttpAnswer]) -> list[int]:
    """Each answer's ``X-Rate-Limit-Remaining``, in order."""
    return [int(answer.header("X-Rate-Limit-Remaining")) for answer in answers]


async def alternately(instances: Sequence[FleetInstance], count: int,
                      send: Callable[[FleetInstance, int], Awaitable[HttpAnswer]]) -> list[HttpAnswer]:
    """``count`` requests one after another: ``send(instances[i % len(instances)], i)`` for each i."""
    return [await send(instances[i % len(instances)], i) for i in range(count)]


async def sessions_check(instance: FleetInstance) -> dict[str, Any]:
    """The session store's entry in the instance's ``/health/detailed`` report (which must answer 200)."""
    answer = await instance.request("GET", "/health/detailed")
    assert answer.status == 200, (answer.status, answer.body)
    return json.loads(answer.body)["checks"][SESSIONS_CHECK][0]


async def sessions_reachable(instances: Sequence[FleetInstance]) -> bool:
    """True once every instance's session store answers again (its health check passes); spends no rate limit."""
    for instance in instances:
        if (await sessions_check(instance))["status"] != "pass":
            return False
    return True


async def wait_for_redis(instances: Sequence[FleetInstance]) -> None:
    """Bounded wait until every instance has reconnected to Redis."""
    await eventually(lambda: sessions_reachable(instances), within_s=RECONNECT_S,
                     what="every instance to reach the session store again")


def fail_open_decisions(instances: Sequence[FleetInstance], endpoint_class: str) -> float:
    """``ratelimit_decisions_total{outcome="fail_open"}`` of ``endpoint_class``, summed over ``instances`` and scopes
    (``none``: admitted locally; ``client``/``tenant``: refused locally by that level)."""
    return sum(instance.metric("ratelimit_decisions_total", endpoint_class=endpoint_class, outcome="fail_open",
                               scope=scope) for instance in instances for scope in ("none", "client", "tenant"))


# ---- Redis as a test sees it -------------------------------------------------------------------------------


def session_key(session_id: str) -> str:
    """The key a session's record lives under: ``session:<hex sha256 of the id>``."""
    return "session:" + hashlib.sha256(session_id.encode("ascii")).hexdigest()


_READERS: dict[str, Callable[[RawRedis, str], Any]] = {
    "string": lambda raw, key: raw.get(key),
    "hash": lambda raw, key: dict(zip(*[iter(raw.command("HGETALL", key))] * 2)),
    "set": lambda raw, key: sorted(raw.command("SMEMBERS", key)),
    "zset": lambda raw, key: raw.command("ZRANGE", key, 0, -1, "WITHSCORES"),
    "list": lambda raw, key: raw.command("LRANGE", key, 0, -1),
    "none": lambda raw, key: None,  # expired between KEYS and TYPE (a rate-limit bucket full again)
}


def redis_contents(raw: RawRedis, *, rate_limits: bool = True) -> dict[str, Any]:
    """Every key in the throwaway Redis with its value (``rate_limits=False``: without the limiter's buckets,
    which appear, drain and expire with any request)."""
    contents = {key: _READERS[raw.command("TYPE", key)](raw, key) for key in raw.keys()
                if rate_limits or not key.startswith(RATE_LIMIT_PREFIX + ":")}
    return {key: value for key, value in contents.items() if value is not None}


def session_keys(raw: RawRedis) -> set[str]:
    """The ``session:*`` keys in Redis."""
    return {key for key in raw.keys("session:*") if SESSION_KEY.fullmatch(key)}


def ttl_ms(raw: RawRedis, key: str) -> int:
    """``PTTL key`` (negative when the key is missing or has no expiry)."""
    return int(raw.command("PTTL", key))


def ttl_down_to(raw: RawRedis, key: str, limit_ms: int) -> Callable[[], int | None]:
    """A check for ``eventually``: the key's TTL once Redis's own countdown has brought it to ``limit_ms`` or less."""

    def check() -> int | None:
        left = ttl_ms(raw, key)
        return left if 0 < left <= limit_ms else None

    return check


# ---- fleet set-up ------------------------------------------------------------------------------------------


async def start_players(fleet: Fleet, seed_db: Any, *, users: Sequence[str] = (ALICE,),
                        **env: str) -> tuple[FleetInstance, FleetInstance]:
    """Tenant ``SLUG`` in the DB, two warmed instances (``env`` settings for both), and ``users`` registered.

    ``/health/detailed`` probes the session store on every call here (its probe cache is tested on its own).
    """
    await seed_tenant(seed_db, SLUG)
    first, second = await fleet.start_instances(2, **{"HEALTH_PROBE_CACHE_SECONDS": "0", **env})
    for username in users:
        answer = await register(first, username)
        assert answer.status == 201, (answer.status, answer.body)
    return first, second


async def account_rows(seed_db: Any, username: str) -> dict[str, Any]:
    """How many users, wallets and opening-balance ledger rows ``username`` of ``SLUG`` has, and their amounts."""

    def count_txn(txn: Any) -> dict[str, Any]:
        """The rows, read in one transaction."""
        args = (SLUG, username)
        owned = "SELECT u.id FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.slug = %s AND u.username = %s"
        users = txn.one(f"SELECT COUNT(*) AS n FROM users WHERE id IN ({owned})", args)
        wallets = txn.all(f"SELECT balance_cents FROM wallets WHERE user_id IN ({owned})", args)
        ledger = txn.all("SELECT amount_cents, balance_after_cents FROM ledger"
                         f" WHERE kind = 'opening_balance' AND user_id IN ({owned})", args)
        return {"users": int(users["n"]),
                "wallets": [int(row["balance_cents"]) for row in wallets],
                "opening_balances": [(int(row["amount_cents"]), int(row["balance_after_cents"])) for row in ledger]}

    return await seed_db.run_interaction("test_account_rows", count_txn)


# ---- 1. fleet-wide sessions --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_session_made_on_one_instance_is_honoured_and_ended_on_another(fleet, seed_db, raw_redis):
    a, b = await start_players(fleet, seed_db)
    session_id = await logged_in(a)

    profile = await me(b, session_id)
    assert profile.status == 200
    assert json_of(profile) == {"username": ALICE, "balance_cents": OPENING_BALANCE_CENTS}

    assert (await logout(b, session_id)).status == 204
    assert session_keys(raw_redis) == set()
    for instance in (a, b):
        assert (await me(instance, session_id)).status == 401, f"{instance.name} still honours a logged-out session"


@pytest_twisted.ensureDeferred
async def test_logout_all_on_one_instance_ends_the_users_sessions_made_on_every_instance(fleet, seed_db, raw_redis):
    a, b = await start_players(fleet, seed_db, users=(ALICE, BOB))
    on_a, on_b = await logged_in(a), await logged_in(b)
    bobs = await logged_in(b, BOB)
    assert session_keys(raw_redis) == {session_key(on_a), session_key(on_b), session_key(bobs)}

    assert (await logout(a, on_a, everywhere=True)).status == 204

    for instance in (a, b):
        for session_id in (on_a, on_b):
            assert (await me(instance, session_id)).status == 401, f"{instance.name} still honours a session"
        assert (await me(instance, bobs)).status == 200, "another user's session is untouched"
    assert session_keys(raw_redis) == {session_key(bobs)}


# ---- 2. what Redis holds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("remember,ttl_s", [(False, IDLE_TTL_S), (True, REMEMBER_TTL_S)])
@pytest_twisted.ensureDeferred
async def test_redis_holds_the_session_as_json_under_its_hash_with_a_ttl_renewed_by_use(
        fleet, seed_db, raw_redis, remember, ttl_s):
    a, b = await start_players(fleet, seed_db)
    session_id = await logged_in(a, remember=remember)
    key = session_key(session_id)

    contents = redis_contents(raw_redis)
    assert session_keys(raw_redis) == {key}
    record = json.loads(contents[key])
    assert set(record) == {"tenant", "user_id", "username", "created_at", "remember"}, record
    assert (record["tenant"], record["username"], record["remember"]) == (SLUG, ALICE, remember)
    assert session_id not in json.dumps(contents), "the raw session id is stored somewhere in Redis"
    created_ttl = ttl_ms(raw_redis, key)
    assert (ttl_s - TTL_SLACK_S) * 1000 <= created_ttl <= ttl_s * 1000, created_ttl

    # Let the TTL run down measurably, then use the session through the other instance.
    run_down = await eventually(ttl_down_to(raw_redis, key, created_ttl - TTL_DROP_MS), within_s=5.0,
                                what="the session's TTL to run down")
    assert (await me(b, session_id)).status == 200

    renewed_ttl = ttl_ms(raw_redis, key)
    assert renewed_ttl > run_down, f"not renewed by use: {run_down} ms before /me, {renewed_ttl} ms after"
    assert (ttl_s - TTL_SLACK_S) * 1000 <= renewed_ttl <= ttl_s * 1000, renewed_ttl
    assert session_id not in json.dumps(redis_contents(raw_redis))


# ---- 3. cookies naming no session --------------------------------------------------------------------------


def forged_cookies(real: str) -> dict[str, str]:
    """Cookies a client might bring that name no session: well-formed ones (tampered with, unknown, the stored
    hash itself), and malformed ones (truncated, oversized)."""
    flipped = "B" if real[10] == "A" else "A"
    return {
        "tampered": real[:10] + flipped + real[11:],
        "unknown": secrets.token_urlsafe(32),
        "stored hash": hashlib.sha256(real.encode("ascii")).hexdigest(),
        "truncated": real[:-1],
        "oversized": real * 4,
    }


@pytest_twisted.ensureDeferred
async def test_cookies_naming_no_session_are_anonymous_and_create_no_redis_key(fleet, seed_db, raw_redis):
    a, b = await start_players(fleet, seed_db)
    real = await logged_in(a)
    forged = forged_cookies(real)
    before = redis_contents(raw_redis, rate_limits=False)

    for instance in (a, b):
        for kind, value in forged.items():
            assert (await me(instance, value)).status == 401, (instance.name, kind)
            assert (await logout(instance, value)).status == 204, (instance.name, kind)
            assert (await logout(instance, value, everywhere=True)).status == 401, (instance.name, kind)

    after = redis_contents(raw_redis, rate_limits=False)
    assert len(after) == len(before) and after == before, "a forged cookie changed what Redis holds"
    assert not {session_key(value) for value in forged.values()} & set(after), "a key for a client-chosen id"

    # Logging in while presenting a forged cookie makes one session, under the hash of a fresh id.
    fresh = issued_session_id(await login(b, session_id=forged["unknown"]))
    assert fresh not in forged.values()
    assert session_keys(raw_redis) == {session_key(real), session_key(fresh)}
    assert (await me(a, real)).status == 200, "the real session survived all that"


# ---- 4. Redis killed or frozen -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["stopped", "paused"])
@pytest_twisted.ensureDeferred
async def test_without_redis_players_get_503_the_public_theme_is_served_and_logins_resume_after(
        fleet, seed_db, redis_server, raw_redis, fault):
    a, b = await start_players(fleet, seed_db)
    before_outage = await logged_in(a)
    assert (await me(b, before_outage)).status == 200
    healthy = await sessions_check(b)
    assert (healthy["status"], healthy["observedValue"]) == ("pass", 1)

    with redis_outage(redis_server, fault) as outage:
        for instance in (a, b):
            await served_within(instance.load_themes(SLUG, 5), PROMPT_S)

        refused_login = await login(b)
        assert_refused(refused_login, 503, "unavailable")
        assert refused_login.header("Set-Cookie") is None, "a session made somewhere other than the shared store"
        for instance in (a, b):
            assert_refused(await me(instance, before_outage), 503, "unavailable")
            check = await sessions_check(instance)
            assert check["status"] == "warn" and "observedValue" not in check, check
        outage.end()

    # The refused login's one rate-limit call (all its levels at once) failed, which left b's Redis breaker
    # closed, so the password was checked and the session write is what failed.
    assert b.metric("session_store_operations_total", op="reachable", outcome="error") == 0
    assert b.metric("session_store_operations_total", op="put", outcome="error") == 1
    for instance in (a, b):
        assert instance.metric("session_store_operations_total", op="get", outcome="error") >= 1, instance.name
    await wait_for_redis((a, b))
    kept = session_keys(raw_redis)
    if fault == "paused":
        # A frozen Redis keeps every key. The refused login's write, sent before the client gave up on it,
        # may still run when Redis thaws: a record whose id was never handed out (no Set-Cookie above).
        assert session_key(before_outage) in kept and len(kept) <= 2, kept
    else:
        assert kept == set(), "a killed Redis restarts empty"

    after_outage = await logged_in(b)
    assert (await me(a, after_outage)).status == 200
    old = await me(a, before_outage)
    if fault == "paused":
        assert old.status == 200 and json_of(old)["username"] == ALICE
    else:  # the session died with Redis: the player logs in again
        assert old.status == 401


# ---- 5. a rate limit shared by the fleet -------------------------------------------------------------------

READ_LIMIT = 5


@pytest_twisted.ensureDeferred
async def test_a_read_limit_is_shared_by_the_fleet_and_fails_open_to_each_instance_without_redis(
        fleet, seed_db, redis_server):
    a, b = await start_players(fleet, seed_db, RATE_LIMIT_READ=f"{READ_LIMIT}/0.01")  # one token per 100 s
    fleet_wide = list(range(READ_LIMIT - 1, -1, -1))  # X-Rate-Limit-Remaining of the allowed requests: 4 … 0
    session_id = await logged_in(a)

    shared = await alternately((a, b), READ_LIMIT + 1, lambda instance, _: me(instance, session_id))
    assert statuses(shared) == [200] * READ_LIMIT + [429]
    assert remaining(shared[:READ_LIMIT]) == fleet_wide, "one bucket, drained through both instances"
    assert_refused(shared[-1], 429, "rate_limited")
    assert fail_open_decisions((a, b), "read") == 0

    with redis_outage(redis_server, "stopped") as outage:
        # Each instance decides alone, from a full bucket of its own: READ_LIMIT allowed (then 503: the
        # session store is down too), one more refused, on each instance.
        failing_open = await gatherResults(
            [ensureDeferred(me(instance, session_id)) for instance in (a, b) for _ in range(READ_LIMIT + 1)])
        for index, instance in enumerate((a, b)):
            answers = failing_open[index * (READ_LIMIT + 1):(index + 1) * (READ_LIMIT + 1)]
            allowed = [answer for answer in answers if answer.status == 503]
            assert sorted(statuses(answers)) == [429] + [503] * READ_LIMIT, (instance.name, statuses(answers))
            assert sorted(remaining(allowed), reverse=True) == fleet_wide, instance.name
        assert fail_open_decisions((a, b), "read") == 2 * (READ_LIMIT + 1), "every decision without Redis counted"
        outage.end()

    await wait_for_redis((a, b))
    session_id = await logged_in(b)  # the restarted Redis is empty: a new session, and a new (full) bucket
    shared_again = await alternately((a, b), READ_LIMIT + 1, lambda instance, _: me(instance, session_id))
    assert statuses(shared_again) == [200] * READ_LIMIT + [429], "per-instance buckets would allow six"
    assert remaining(shared_again[:READ_LIMIT]) == fleet_wide
    assert fail_open_decisions((a, b), "read") == 2 * (READ_LIMIT + 1), "no more local decisions"


# ---- 6. login brute force ----------------------------------------------------------------------------------

LOGIN_USER_LIMIT = 3


@pytest_twisted.ensureDeferred
async def test_password_guesses_for_one_username_are_limited_across_the_fleet(fleet, seed_db):
    a, b = await start_players(fleet, seed_db, users=(ALICE, BOB), RATE_LIMIT_LOGIN_USER=f"{LOGIN_USER_LIMIT}/0.01")
    # the bucket is per username (whatever its case) and client: every request here comes from 127.0.0.1
    spellings = [ALICE, ALICE.upper(), ALICE.title()]

    guesses = await alternately((a, b), LOGIN_USER_LIMIT + 1, lambda instance, i: login(
        instance, spellings[i % len(spellings)], f"wrong guess number {i}"))

    assert statuses(guesses) == [401] * LOGIN_USER_LIMIT + [429]
    assert_refused(guesses[-1], 429, "rate_limited")
    right_password = await login(a)
    assert_refused(right_password, 429, "rate_limited")  # the limit stops guessing before any check
    assert right_password.header("Set-Cookie") is None
    assert (await login(b, BOB)).status == 200, "another username has its own bucket"


# ---- 7. concurrent registrations ---------------------------------------------------------------------------

# What races is the INSERT: each instance hashes on two threads, so racers reach the DB about four at a time
# however many there are; more would only queue longer behind argon2id (~0.3 s of CPU each).
RACERS = 12


@pytest_twisted.ensureDeferred
async def test_concurrent_registrations_of_one_username_through_two_instances_make_one_account(fleet, seed_db):
    a, b = await start_players(fleet, seed_db, users=())
    passwords = [f"password of racer {i}" for i in range(RACERS)]

    answers = await gatherResults([ensureDeferred(register((a, b)[i % 2], "carol", passwords[i]))
                                   for i in range(RACERS)])

    assert sorted(statuses(answers)) == [201] + [409] * (RACERS - 1)
    winner = statuses(answers).index(201)
    assert json_of(answers[winner]) == {"username": "carol", "balance_cents": OPENING_BALANCE_CENTS}
    assert {json_of(answer)["error"] for answer in answers if answer.status == 409} == {"username_taken"}
    assert await account_rows(seed_db, "carol") == {
        "users": 1, "wallets": [OPENING_BALANCE_CENTS],
        "opening_balances": [(OPENING_BALANCE_CENTS, OPENING_BALANCE_CENTS)]}
    # The one account is the winner's: its password logs in, a loser's does not.
    loser = (winner + 1) % RACERS
    assert (await login(b, "carol", passwords[winner])).status == 200
    assert (await login(a, "carol", passwords[loser])).status == 401
