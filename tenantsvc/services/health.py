"""The detailed health report (``application/health+json``): DB round trip, pool figures, Redis, workers.

The probes that leave the process are cached (``services.probe_cache``): see ``HealthReport``.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine

from twisted.internet.defer import Deferred, ensureDeferred

from tenantsvc.adapters.db.pool import Database, select_one_txn
from tenantsvc.core.clock import iso_utc_seconds
from tenantsvc.runtime.bounded import with_timeout
from tenantsvc.runtime.deferreds import as_deferred
from tenantsvc.services.probe_cache import CachedProbe

DB_CHECK_TIMEOUT_S = 2.0


class HealthReport:
    """Builds the detailed report; a failing DB check makes the whole report fail (503).

    Each probe that leaves the process (database ``SELECT 1``, Redis ``PING``, the session count, PgBouncer's
    ``SHOW POOLS``) is a ``CachedProbe``: run at most once per ``probe_cache_s`` however many callers, the
    callers of one period sharing one run; each check's ``time`` is when its reading was taken and
    ``ageSeconds`` how old it is. ``metrics`` (``obs.metrics.Metrics``) counts how callers were answered.
    """

    def __init__(self, *, clock: Any, db: Database, version: str, role: str,
                 redis_ping: Callable[[], Deferred | Coroutine[Any, Any, float]] | None = None,
                 breaker: Callable[[], dict[str, Any]] | None = None,
                 pgbouncer_pools: Callable[[], Deferred] | None = None,
                 sessions_count: Callable[[], Deferred | Coroutine[Any, Any, int]] | None = None,
                 odds_feed: Callable[[], dict[str, dict[str, Any]]] | None = None,
                 redis_breaker: Callable[[], dict[str, Any]] | None = None,
                 probe_cache_s: float = 0.0, metrics: Any = None):
        self._clock = clock
        self._db = db
        self._version = version
        self._role = role
        self._redis_ping = redis_ping
        self._breaker = breaker
        self._pgbouncer_pools = pgbouncer_pools
        self._sessions_count = sessions_count
        self._odds_feed = odds_feed
        self._redis_breaker = redis_breaker
        probes = {"database": self._database_entry, "redis": self._redis_entry if redis_ping else None,
                  "pgbouncer": self._pool_entry if pgbouncer_pools else None,
                  "sessions": self._sessions_entry if sessions_count else None}
        self._probes = {name: self._cached_probe(name, entry, probe_cache_s, metrics)
                        for name, entry in probes.items() if entry is not None}

    def _cached_probe(self, name: str, entry: Callable[[], Coroutine[Any, Any, dict[str, Any]]], max_age_s: float,
                      metrics: Any) -> CachedProbe:
        on_answer = None
        if metrics is not None:
            metrics.health_probe_built(name)
            on_answer = lambda source: metrics.record_health_probe(name, source)  # noqa: E731
        return CachedProbe(name, self._clock, lambda: as_deferred(entry()), max_age_s, on_answer)

    def check(self) -> Deferred:
        """Run every check (probes from their cache); fires with the report dict."""
        return ensureDeferred(self._report())

    async def _reading(self, probe: str) -> dict[str, Any]:
        """The probe's entry with the time its reading was taken and its age now."""
        reading = await self._probes[probe].get()
        return {**reading.value, "time": iso_utc_seconds(reading.taken_at),
                "ageSeconds": round(reading.age_s(self._clock.seconds()), 3)}

    async def _pool_entry(self) -> dict[str, Any]:
        assert self._pgbouncer_pools is not None
        try:
            pools = await with_timeout(self._clock, self._pgbouncer_pools(), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # reported, not raised
            return {"componentType": "datastore", "status": "warn", "output": type(error).__name__}
        waiting = sum(int(pool.get("cl_waiting", 0)) for pool in pools)
        return {"componentType": "datastore", "observedValue": waiting, "observedUnit": "clients waiting",
                "status": "pass", "pools": pools}

    async def _sessions_entry(self) -> dict[str, Any]:
        assert self._sessions_count is not None
        try:
            count: int = await with_timeout(self._clock, as_deferred(self._sessions_count()), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # the session store is down: logins fail, public traffic carries on
            return {"componentType": "datastore", "status": "warn", "output": type(error).__name__}
        return {"componentType": "datastore", "observedValue": count, "observedUnit": "sessions", "status": "pass"}

    async def _database_entry(self) -> dict[str, Any]:
        status, elapsed, error = await self._timed(
            lambda: self._db.run_interaction("health_check", select_one_txn))
        return _timed_entry("datastore", self._db.dialect.name, status, elapsed, error)

    async def _redis_entry(self) -> dict[str, Any]:
        ping = self._redis_ping
        assert ping is not None
        status, elapsed, error = await self._timed(lambda: as_deferred(ping()))
        return _timed_entry("datastore", "redis", "pass" if status == "pass" else "warn", elapsed, error)

    def _odds_feed_report(self, now: str) -> dict[str, Any]:
        """Per sport: next run, consecutive failures, last success and last error; warn while any sport fails."""
        assert self._odds_feed is not None
        sports = self._odds_feed()
        failing = sorted(sport for sport, state in sports.items() if state.get("consecutive_failures"))
        return {"componentType": "component", "observedValue": len(failing), "observedUnit": "sports failing",
                "status": "warn" if failing else "pass", "time": now, "sports": sports}

    async def _timed(self, probe: Callable[[], Deferred]) -> tuple[str, float | None, str | None]:
        started = self._clock.seconds()
        try:
            await with_timeout(self._clock, probe(), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # reported, not raised: a health check must describe failure
            return "fail", None, type(error).__name__
        return "pass", round((self._clock.seconds() - started) * 1000, 3), None

    async def _report(self) -> dict[str, Any]:
        checks: dict[str, list[dict[str, Any]]] = {}
        now = iso_utc_seconds(self._clock.seconds())
        database = await self._reading("database")
        checks["database:responseTime"] = [database]
        pool = self._db.snapshot()
        checks["database:connections"] = [{
            "componentType": "datastore", "observedValue": pool.in_use, "observedUnit": "connections",
            "status": "pass", "time": now,
            "pool": {"size": pool.size, "in_use": pool.in_use, "waiting": pool.waiting,
                     "usage_percent": round(pool.usage_percent, 1)},
        }]
        overall = database["status"]
        if "redis" in self._probes:
            checks["redis:responseTime"] = [await self._reading("redis")]
            overall = _worst(overall, checks["redis:responseTime"][0]["status"])
        for check_name, describe in (("database:circuitBreaker", self._breaker),
                                     ("redis:circuitBreaker", self._redis_breaker)):
            if describe is not None:
                checks[check_name] = [_breaker_check(describe(), now)]
                overall = _worst(overall, checks[check_name][0]["status"])
        if "pgbouncer" in self._probes:
            checks["pgbouncer:pools"] = [await self._reading("pgbouncer")]
        if "sessions" in self._probes:
            checks["sessions:count"] = [await self._reading("sessions")]
            overall = _worst(overall, checks["sessions:count"][0]["status"])
        if self._odds_feed is not None:
            checks["odds:feed"] = [self._odds_feed_report(now)]
            overall = _worst(overall, checks["odds:feed"][0]["status"])
        return {"status": overall, "version": self._version, "serviceId": f"tenantsvc-{self._role}",
                "description": "tenantsvc detailed health", "checks": checks}


def _timed_entry(component_type: str, component_id: str, status: str, elapsed_ms: float | None,
                 error: str | None) -> dict[str, Any]:
    """A response-time check: its status, the round trip in ms when answered, the error's class when not."""
    entry: dict[str, Any] = {"componentType": component_type, "componentId": component_id, "status": status}
    if elapsed_ms is not None:
        entry.update(observedValue=elapsed_ms, observedUnit="ms")
    if error:
        entry["output"] = error
    return entry


def _breaker_check(breaker: dict[str, Any], now: str) -> dict[str, Any]:
    """A circuit breaker's entry: its state as the observed value, ``warn`` unless it is closed."""
    return {"componentType": "component", "observedValue": breaker["state"],
            "status": "pass" if breaker["state"] == "closed" else "warn", "time": now, "breaker": breaker}


def _worst(current: str, other: str) -> str:
    """The more severe of two health statuses (pass < warn < fail)."""
    order = {"pass": 0, "warn": 1, "fail": 2}
    return current if order[current] >= order[other] else other
