"""A fleet of tenantsvc web instances inside one test process, on one real Postgres database and one real Redis.

Each ``FleetInstance`` is the service tree one web process builds (``build_service``, without its eliot
destination and heap freeze): its own adbapi pool (``Database``) on the shared database, its own ``RedisClient``
(guarded by its ``RedisBreaker``) and (optionally) ``RedisSubscriber`` on the shared Redis, its own argon2id
password-hashing thread pool, and its own listener on a free 127.0.0.1 port, drained on stop (no pre-stop delay). Requests go over real HTTP with treq (no cookie jar: a test sends the
cookies it means to in a ``Cookie`` header); ``FleetInstance.db.calls`` counts the interactions the instance ran.

Also here: ``seed_tenant`` (writes straight to Postgres, behind every cache's back), ``RawRedis`` (a tiny blocking
RESP client with which a test plays "another instance" or inspects keys: sets a lock, reads a key, scans), and
``postgres_outage`` / ``redis_outage`` (a server stopped or frozen for a ``with`` block, always brought back).

Nothing here imports the reactor, klein or txredisapi at module scope.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any, Awaitable, Callable, Mapping

from twisted.internet.defer import ensureDeferred, gatherResults

from tenantsvc.adapters.db import tenant_store
from tenantsvc.config import load_settings
from tenantsvc.core.theme import Theme
from tenantsvc.service import Built, Overrides, build_service
from tests.support.http import HttpAnswer, fetch
from tests.support.waiting import eventually, real_reactor

ADMIN_TOKEN = "fleet-admin-token-0123456789"
REQUEST_TIMEOUT_S = 10.0  # a hung answer fails the test instead of hanging it
START_TIMEOUT_S = 30.0
# The only interactions allowed to run while public theme requests are served: background work.
BACKGROUND_INTERACTIONS = frozenset({"refresh_theme", "load_all_themes"})


async def seed_tenant(db: Any, slug: str, theme: Theme | None = None) -> None:
    """Create tenant ``slug`` (and save ``theme``) directly in the database, bypassing every cache."""
    await db.run_interaction("seed_tenant", tenant_store.insert_tenant_txn, slug, slug.title())
    if theme is not None:
        await db.run_interaction("seed_theme", tenant_store.save_theme_txn, slug, theme)


class FleetInstance:
    """One web instance: its components, its listening port and an HTTP client pointed at it."""

    def __init__(self, name: str, built: Built, pool: Any):
        self.name = name
        self.built = built
        self.components = built.components
        self._pool = pool
        self.base_url = f"http://127.0.0.1:{built.listener.port.getHost().port}"

    def __repr__(self) -> str:
        return f"<FleetInstance {self.name} {self.base_url}>"

    @property
    def db(self) -> Any:
        """The instance's ``Database`` (``db.calls`` counts its interactions by name)."""
        return self.components.db

    @property
    def themes(self) -> Any:
        """The instance's ``ThemeCache``."""
        return self.components.themes

    @property
    def redis(self) -> Any:
        """The instance's ``RedisClient``."""
        assert self.components.redis is not None, "fleet instances always have REDIS_URL"
        return self.components.redis.client

    @property
    def subscriber(self) -> Any:
        """The instance's ``RedisSubscriber`` (``subscriptions`` counts (re)subscriptions; None with ``subscribe=False``)."""
        assert self.components.redis is not None, "fleet instances always have REDIS_URL"
        return self.components.redis.subscriber

    def interactions(self) -> Counter[str]:
        """A copy of the per-name interaction counts so far."""
        return Counter(self.db.calls)

    def metric(self, sample_name: str, **labels: str) -> float:
        """One sample of the instance's own registry (0 when the series does not exist)."""
        return self.components.registry.get_sample_value(sample_name, labels) or 0.0

    async def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                      json_body: Any = None) -> HttpAnswer:
        """Send one request over loopback and read the whole response."""
        return await fetch(method, self.base_url + path, pool=self._pool, headers=headers, json_body=json_body,
                           timeout_s=REQUEST_TIMEOUT_S)

    async def load_theme(self, slug: str, *, headers: Mapping[str, str] | None = None) -> HttpAnswer:
        """``GET /<slug>/api/public/load-theme``."""
        return await self.request("GET", f"/{slug}/api/public/load-theme", headers=headers)

    async def load_themes(self, slug: str, count: int) -> list[HttpAnswer]:
        """``count`` concurrent ``load-theme`` requests for ``slug``."""
        return await gatherResults([ensureDeferred(self.load_theme(slug)) for _ in range(count)])

    async def save_theme(self, slug: str, wire_theme: Mapping[str, str]) -> HttpAnswer:
        """``PUT /admin/api/tenants/<slug>/theme`` with the admin token; asserts it was accepted."""
        answer = await self.request("PUT", f"/admin/api/tenants/{slug}/theme", json_body=dict(wire_theme),
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status == 200, (self.name, answer.status, answer.body)
        return answer

    async def stop(self) -> None:
        """Stop the service tree: readiness 503, the listener drains, then the subscriber, the Redis client and the
        DB pool stop (in that order)."""
        await self.built.service.stopService()


class Fleet:
    """Starts instances on one database and one Redis, and stops them all at ``close()``."""

    def __init__(self, database_url: str, redis_url: str):
        from twisted.web.client import HTTPConnectionPool

        self.database_url = database_url
        self.redis_url = redis_url
        self.instances: list[FleetInstance] = []
        # Not persistent: every request opens its own connection, and nothing stays open after the test.
        self._http_pool = HTTPConnectionPool(real_reactor(), persistent=False)

    async def start_instance(self, *, warm: bool = True, subscribe: bool = True, **env: str) -> FleetInstance:
        """Build and start one instance (extra ``env`` settings such as ``THEME_CACHE_TTL="1"``).

        ``warm`` runs the warmer once (tenant registry loaded, every theme in L1 and L2), as a process does
        after start-up; without it the instance is one whose warmer has not run yet: registry unloaded,
        L1 empty. ``subscribe`` starts its ``RedisSubscriber`` and waits until it is subscribed.
        """
        reactor = real_reactor()
        settings = load_settings({"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                                  "ADMIN_TOKEN": ADMIN_TOKEN, "DRAIN_PRESTOP_DELAY": "0", **env}, role="web",
                                 listen="tcp:0:interface=127.0.0.1")
        built = build_service(settings, reactor, Overrides(warm=warm, subscribe=subscribe, log=False,
                                                           freeze_heap=False))
        built.service.startService()
        try:
            await built.started.addTimeout(START_TIMEOUT_S, reactor)  # migrated, and warmed unless warm=False
            subscriber = built.components.redis.subscriber if built.components.redis is not None else None
            if subscriber is not None:
                await eventually(lambda: subscriber.subscriptions >= 1, within_s=START_TIMEOUT_S,
                                 what="the invalidation subscriber to subscribe")
            await eventually(lambda: built.listener.port is not None, within_s=START_TIMEOUT_S,
                             what="the listener to listen")
        except BaseException:
            await built.service.stopService()
            raise
        instance = FleetInstance(f"instance-{len(self.instances)}", built, self._http_pool)
        self.instances.append(instance)
        return instance

    async def start_instances(self, count: int, **options: Any) -> list[FleetInstance]:
        """Start ``count`` instances one after another with the same options."""
        return [await self.start_instance(**options) for _ in range(count)]

    def total_interactions(self, name: str) -> int:
        """How many interactions called ``name`` every instance of the fleet ran, together."""
        return sum(instance.db.calls[name] for instance in self.instances)

    async def close(self) -> None:
        """Stop every instance (last started first)."""
        instances, self.instances = self.instances, []
        for instance in reversed(instances):
            await instance.stop()
        await self._http_pool.closeCachedConnections()


def background_only(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """The interactions run between two ``interactions()`` snapshots, asserting each is background work."""
    ran = after - before
    unexpected = set(ran) - BACKGROUND_INTERACTIONS
    assert not unexpected, f"interactions ran on the request path: {dict(ran)}"
    return ran


async def served_within(requests: Awaitable[list[HttpAnswer]], limit_s: float) -> list[HttpAnswer]:
    """Await a batch of answers and assert every one is a 200 that arrived within ``limit_s``.

    The limit is a hang detector (a request that waited for a dead server), not a speed claim.
    """
    answers = await requests
    for answer in answers:
        assert answer.status == 200, (answer.status, answer.body)
        assert answer.elapsed_s < limit_s, f"an answer took {answer.elapsed_s:.3f} s (limit {limit_s} s)"
    return answers


class Outage:
    """A server fault that is always undone: ``end()`` mid-test, or on leaving the ``with`` block."""

    def __init__(self, begin: Callable[[], None], end: Callable[[], None]):
        self._begin, self._end, self.active = begin, end, False

    def __enter__(self) -> "Outage":
        self._begin()
        self.active = True
        return self

    def end(self) -> None:
        """Bring the server back (once)."""
        if self.active:
            self.active = False
            self._end()

    def __exit__(self, *exc_info: object) -> None:
        self.end()


def postgres_outage(server: Any, fault: str) -> Outage:
    """``stopped``: ``pg_ctl stop -m immediate`` then start; ``paused``: SIGSTOP then SIGCONT."""
    return Outage(*{"stopped": (server.stop_immediate, server.start), "paused": (server.pause, server.resume)}[fault])


def redis_outage(server: Any, fault: str) -> Outage:
    """``stopped``: SIGKILL then start on the same port (empty: it keeps nothing on disk); ``paused``: SIGSTOP
    then SIGCONT (every key survives)."""
    return Outage(*{"stopped": (server.stop, server.start), "paused": (server.pause, server.resume)}[fault])


class RawRedis:
    """A blocking RESP client for a test acting as another instance (``SET … NX PX``, ``GET``, ``DEL``).

    Each call blocks the reactor for one loopback round trip, so it is only used while Redis runs.
    """

    def __init__(self, host: str, port: int, timeout_s: float = 2.0):
        self._address = (host, port)
        self._timeout_s = timeout_s

    def command(self, *words: str | int) -> Any:
        """Send one command; return its reply (str, int, None or list); raise on an error reply."""
        encoded = [str(word).encode("utf-8") for word in words]
        payload = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)
        with socket.create_connection(self._address, timeout=self._timeout_s) as sock:
            sock.sendall(payload)
            return _read_reply(sock.makefile("rb"))

    def get(self, key: str) -> str | None:
        """GET ``key``."""
        return self.command("GET", key)

    def keys(self, pattern: str = "*") -> list[str]:
        """Every key matching ``pattern`` (sorted), collected with ``SCAN`` rather than ``KEYS``."""
        found: set[str] = set()
        cursor = "0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(batch)
            if cursor == "0":
                return sorted(found)


def _read_reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode("utf-8")
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode('utf-8', 'replace')}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode("utf-8")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise RuntimeError(f"unexpected redis reply {line!r}")
