"""Drive the real HTTP stack in memory: ``StubTreq`` over the root resource, a ``Clock`` and a threadless DB pool.

``build_harness`` composes the application exactly as ``tenantsvc.service`` does (``build_components`` +
``build_web``, with ``Overrides``), except that:

- every time-dependent web object gets a ``twisted.internet.task.Clock`` instead of the reactor;
- the database runs on ``ThreadlessConnectionPool``: the ``adbapi.ConnectionPool`` surface that
  ``tenantsvc.adapters.db.pool.Database`` uses, running each interaction synchronously on one real
  sqlite3 connection (the idea of synapse's threadless test pool), so every Deferred a request
  creates has fired by the time ``StubTreq`` returns.

The schema is migrated through ``DatabaseService`` and the theme cache warmed before the first request.
Nothing here imports klein at module scope: ``build_web`` imports it when a harness is built.

It also holds the log helpers the web and end-to-end tests share: finding a request's eliot task and
rendering a log with the real ``eliot-tree`` CLI.
"""

from __future__ import annotations

import json as jsonlib
import sqlite3
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from eliot.testing import LoggedAction
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from tenantsvc.config import Settings, load_settings
from tenantsvc.composition.core_parts import Components, build_components
from tenantsvc.composition.redis_parts import RedisParts
from tenantsvc.composition.web_parts import WebParts, build_web
from tenantsvc.service import Overrides
from tenantsvc.web.root import HTTP_REQUEST
from tests.support.metrics import metric_total

ADMIN_TOKEN = "test-admin-token-0123456789"
BASE_URL = "http://tenantsvc.test"
# A fixed, readable start time for the Clock: 2026-01-02T03:04:05Z.
CLOCK_START_S = 1767323045.0
ELIOT_TREE = Path(sys.executable).parent / "eliot-tree"
REPO_ROOT = Path(__file__).resolve().parents[2]


class SynchronousPasswordHashing:
    """``PasswordHashing``'s interface run inline with cheap argon2id parameters (a Clock has no threads).

    The threaded implementation is tested in tests/services/test_accounts.py; here only the routes matter.
    """

    def __init__(self) -> None:
        from argon2 import PasswordHasher

        self.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        self._dummy = self.hasher.hash("dummy-password")

    def hash(self, password: str) -> Deferred:
        """The argon2id hash of ``password``, already computed."""
        return succeed(self.hasher.hash(password))

    def verify(self, stored_hash: str, password: str) -> Deferred:
        """Check ``password`` like ``PasswordHashing.verify``."""
        from tenantsvc.adapters.passwords import _verify

        return succeed(_verify(self.hasher, stored_hash, password))

    async def verify_unknown(self, password: str) -> Any:
        """Do a verification's work for an unknown user; never matches."""
        from tenantsvc.adapters.passwords import Verification

        await self.verify(self._dummy, password)
        return Verification(False)


class PoolClosed(Exception):
    """An interaction was submitted after ``ThreadlessConnectionPool.close()``."""


class ThreadlessConnectionPool:
    """The part of ``adbapi.ConnectionPool`` that ``Database`` uses, run synchronously on one sqlite3 connection.

    ``runInteraction(fn, *args, **kw)`` calls ``fn(cursor, *args, **kw)`` at once and commits (or rolls
    back when ``fn`` raises), exactly like adbapi's ``_runInteraction`` but without a thread, and
    returns an already-fired Deferred. ``pause()`` models a saturated pool: interactions queue (their
    Deferreds stay unfired) until ``resume()`` runs them in order.
    """

    def __init__(self, module: str, *connect_args: Any, cp_min: int = 1, cp_max: int = 1, cp_reconnect: bool = True,
                 cp_noisy: bool = False, cp_openfun: Callable[[Any], None] | None = None, cp_reactor: Any = None,
                 **connect_kwargs: Any):
        if module != "sqlite3":
            raise ValueError(f"the threadless pool only drives sqlite3, not {module!r}")
        self.connection = sqlite3.connect(*connect_args, **connect_kwargs)
        if self.connection.isolation_level is not None:
            raise ValueError("SqliteDialect begins transactions itself: connect with isolation_level=None")
        if cp_openfun is not None:
            cp_openfun(self.connection)
        self.closed = False
        self.interactions = 0
        self._paused = False
        self._queued: deque[tuple[Deferred, Callable[..., Any], tuple, dict]] = deque()

    def runInteraction(self, interaction: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:  # noqa: N802
        """Run ``interaction(cursor, *args, **kwargs)`` in one transaction; queue it while paused."""
        if self._paused:
            waiting: Deferred = Deferred()
            self._queued.append((waiting, interaction, args, kwargs))
            return waiting
        return self._run(interaction, args, kwargs)

    def _run(self, interaction: Callable[..., Any], args: tuple, kwargs: dict) -> Deferred:
        """Run one interaction now, in its own transaction, as adbapi's ``_runInteraction`` does."""
        if self.closed:
            return fail(PoolClosed("the connection pool is closed"))
        self.interactions += 1
        cursor = self.connection.cursor()
        try:
            result = interaction(cursor, *args, **kwargs)
            cursor.close()
            self.connection.commit()
        except BaseException:
            failure = Failure()
            self.connection.rollback()
            return fail(failure)
        return succeed(result)

    def pause(self) -> None:
        """Hold every new interaction until ``resume()`` (like a pool with no free connection)."""
        self._paused = True

    def resume(self) -> None:
        """Run the held interactions in submission order and stop holding new ones."""
        self._paused = False
        while self._queued:
            waiting, interaction, args, kwargs = self._queued.popleft()
            self._run(interaction, args, kwargs).chainDeferred(waiting)

    @property
    def queued(self) -> int:
        """How many interactions are held by ``pause()``."""
        return len(self._queued)

    def close(self) -> None:
        """Close the connection; later interactions fail with ``PoolClosed``."""
        if not self.closed:
            self.closed = True
            self.connection.close()


def fired(deferred: Deferred) -> Any:
    """The result of a Deferred that must already have fired; re-raises its failure."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    if not results:
        raise AssertionError(f"{deferred!r} has not fired")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@implementer(IBodyProducer)
class ChunkedBodyProducer:
    """A request body of unknown length (sent with chunked transfer-encoding), produced at once."""

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    def startProducing(self, consumer: Any) -> Deferred:  # noqa: N802 - IBodyProducer
        """Write every chunk, then finish."""
        for chunk in self._chunks:
            consumer.write(chunk)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802 - IBodyProducer
        """Nothing to pause: everything is written at once."""

    def resumeProducing(self) -> None:  # noqa: N802 - IBodyProducer
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802 - IBodyProducer
        """Nothing to stop."""


@dataclass(frozen=True)
class WebResponse:
    """A finished HTTP response as the client saw it."""

    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The single value of header ``name`` (None when absent; an error when repeated)."""
        values = self.headers.getRawHeaders(name)
        if values is None:
            return None
        if len(values) != 1:
            raise AssertionError(f"header {name} repeated: {values!r}")
        return values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]

    def json(self) -> Any:
        """The body parsed as JSON (after checking the response says it is JSON)."""
        content_type = self.header("Content-Type") or ""
        if "json" not in content_type:
            raise AssertionError(f"not a JSON response: {content_type!r} {self.body[:200]!r}")
        return jsonlib.loads(self.body)


class WebHarness:
    """The built application plus an in-memory HTTP client and its clock."""

    def __init__(self, components: Components, web: WebParts, clock: Clock, pool: ThreadlessConnectionPool,
                 root: Any = None):
        from treq.testing import StubTreq

        self.components = components
        self.web = web
        self.clock = clock
        self.pool = pool
        self.client = StubTreq(root if root is not None else web.root)
        # treq's HTTPClient behind StubTreq keeps cookies between requests; reach it to empty it.
        self._cookie_jar = self.client.request.__wrapped__.__self__._cookiejar
        # StubTreq builds its own Site around the resource; give it the production Site's request
        # class (body cap, per-request context) and traceback policy, or the root could not frame requests.
        self._agent = self.client._agent
        server_site = self._agent._serverFactory
        server_site.requestFactory = web.site.requestFactory
        server_site.displayTracebacks = web.site.displayTracebacks

    def ops(self) -> "WebHarness":
        """A harness on the same application talking to the operations listener's root (``OPS_LISTEN``)."""
        assert self.web.ops is not None, "built without OPS_LISTEN"
        return WebHarness(self.components, self.web, self.clock, self.pool, root=self.web.ops.root)

    @property
    def db(self) -> Any:
        """The ``Database`` the services use."""
        return self.components.db

    def run_interaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(txn, *args)`` through the application's ``Database`` and return its result."""
        return fired(self.db.run_interaction(f"test_{fn.__name__}", fn, *args))

    def start_request(self, method: str, path: str, *, headers: Mapping[str, str | list[str]] | None = None,
                      body: bytes | Any = None, json: Any = None, admin: bool = False) -> Deferred:
        """Send a request; the Deferred fires with the treq response (it may still be pending)."""
        all_headers: dict[str, list[str]] = {}
        if json is not None:
            body = jsonlib.dumps(json).encode("utf-8")
            all_headers["Content-Type"] = ["application/json"]
        if admin:
            all_headers["Authorization"] = [f"Bearer {ADMIN_TOKEN}"]
        for name, value in (headers or {}).items():
            all_headers[name] = value if isinstance(value, list) else [value]
        self._cookie_jar.clear()  # no implicit cookie jar: each test sends exactly the cookies it means to
        return self.client.request(method, BASE_URL + path, headers=all_headers, data=body)

    def finish(self, pending: Deferred) -> WebResponse:
        """Deliver whatever the server wrote for ``pending`` and return the complete response."""
        self.client.flush()
        response = fired(pending)
        body = self.client.content(response)
        self.client.flush()
        return WebResponse(response.code, response.headers, fired(body))

    def answered(self, pending: Deferred) -> bool:
        """True once the response to ``pending`` has arrived (without consuming it)."""
        self.client.flush()
        arrived: list[bool] = []

        def note(result: Any) -> Any:
            """Record that a result arrived and pass it on unchanged."""
            arrived.append(True)
            return result

        pending.addBoth(note)
        return bool(arrived)

    def stream(self, method: str, path: str, chunks: list[bytes], headers: Mapping[str, str]) -> WebResponse:
        """Send a chunked (no Content-Length) request body and return the response."""
        raw_headers = Headers({name: [value] for name, value in headers.items()})
        pending = self._agent.request(method.encode("ascii"), (BASE_URL + path).encode("ascii"), raw_headers,
                                      ChunkedBodyProducer(chunks))
        return self.finish(pending)

    def request(self, method: str, path: str, **options: Any) -> WebResponse:
        """Send a request that the application answers synchronously and return its response."""
        return self.finish(self.start_request(method, path, **options))

    def get(self, path: str, **options: Any) -> WebResponse:
        """``GET path``."""
        return self.request("GET", path, **options)

    def admin(self, method: str, path: str, **options: Any) -> WebResponse:
        """A request to the admin API carrying the valid bearer token."""
        return self.request(method, path, admin=True, **options)

    def metric(self, sample_name: str, **labels: str) -> float:
        """Sum of the samples of ``sample_name`` whose labels include ``labels`` (0 when there are none)."""
        return metric_total(self.components.registry, sample_name, **labels)

    def create_tenant(self, slug: str, name: str | None = None) -> dict[str, Any]:
        """Create a tenant through the admin API (asserting it worked) and return its JSON."""
        response = self.admin("POST", "/admin/api/tenants", json={"slug": slug, "name": name or slug.title()})
        assert response.status == 201, (response.status, response.body)
        return response.json()

    def close(self) -> None:
        """Stop the database service (which closes the pool)."""
        self.components.db_service.stopService()


def harness_settings(db_path: str, *, admin_token: str | None = ADMIN_TOKEN,
                     env: Mapping[str, str] | None = None) -> Settings:
    """Settings for a web process on ``db_path``, parsed by the real ``load_settings``."""
    environment = {"DATABASE_URL": db_path, **(env or {})}
    if admin_token is not None:
        environment["ADMIN_TOKEN"] = admin_token
    return load_settings(environment, role="web")


def build_harness(db_path: str, *, admin_token: str | None = ADMIN_TOKEN, warm: bool = True,
                  env: Mapping[str, str] | None = None, clock: Clock | None = None, redis: Any = None,
                  redis_breaker: Callable[[Any], Any] | None = None) -> WebHarness:
    """Build the application on a threadless pool over ``db_path``, migrate it and (unless ``warm`` is False) warm it.

    With ``warm=False`` the process looks like one whose database has not answered yet: the tenant
    registry is not loaded and the theme cache is empty. ``redis`` replaces the in-process stores with a
    Redis client (one on a fake pool, timed by ``clock``); ``redis_breaker(metrics)`` builds the breaker
    guarding it, as ``service.build_redis`` does.
    """
    if clock is None:
        clock = Clock()
        clock.advance(CLOCK_START_S)
    pools: list[ThreadlessConnectionPool] = []

    def pool_factory(*args: Any, **kwargs: Any) -> ThreadlessConnectionPool:
        """Build the threadless pool ``Database`` asks for, and keep it for the harness."""
        pool = ThreadlessConnectionPool(*args, **kwargs)
        pools.append(pool)
        return pool

    redis_parts = None
    if redis is not None:
        assert redis_breaker is not None, "a Redis client comes with the breaker guarding it"
        redis_parts = lambda metrics: RedisParts(client=redis, breaker=redis_breaker(metrics))  # noqa: E731
    overrides = Overrides(pool_factory=pool_factory, passwords=SynchronousPasswordHashing(), redis=redis_parts)
    components = build_components(harness_settings(db_path, admin_token=admin_token, env=env), clock, overrides)
    (pool,) = pools
    if warm:
        components.db_service.startService()
        fired(components.db_service.when_ready())
        fired(ensureDeferred(components.themes.warm()))
    return WebHarness(components, build_web(components, clock), clock, pool)


def logged_request(messages: Iterable[dict[str, Any]], correlation_id: str) -> LoggedAction:
    """The one ``tenantsvc:http:request`` task among eliot ``messages`` logged with ``correlation_id``."""
    (task,) = [action for action in LoggedAction.of_type(list(messages), HTTP_REQUEST)
               if action.start_message["correlation_id"] == correlation_id]
    return task


def render_eliot_tree(log_file: Path, *options: str) -> str:
    """Render ``log_file`` with the real ``eliot-tree`` CLI in plain ASCII (it fails on non-eliot lines)."""
    rendered = subprocess.run([str(ELIOT_TREE), "--ascii", "--color=never", *options, str(log_file)],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


def modules_loaded_by_importing(module: str, watched: Iterable[str]) -> list[str]:
    """Which ``watched`` packages (or exact module names) a fresh interpreter has loaded after ``import module``."""
    probe = (f"import json, sys\nimport {module}\nwatched = {sorted(watched)!r}\n"
             "print(json.dumps(sorted(name for name in sys.modules"
             " if name in watched or name.split('.')[0] in watched)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return jsonlib.loads(result.stdout)
