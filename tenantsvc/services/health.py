"""The detailed health report (``application/health+json``): DB round trip, pool figures, Redis, workers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, ensureDeferred

from tenantsvc.adapters.db.pool import Database, select_one_txn
from tenantsvc.runtime.deferreds import with_timeout

DB_CHECK_TIMEOUT_S = 2.0


class HealthReport:
    """Builds the detailed report; a failing DB check makes the whole report fail (503)."""

    def __init__(self, *, clock: Any, db: Database, version: str, role: str,
                 redis_ping: Callable[[], Awaitable[float]] | None = None,
                 breaker: Callable[[], dict[str, Any]] | None = None,
                 pgbouncer_pools: Callable[[], Deferred] | None = None,
                 sessions_count: Callable[[], Awaitable[int]] | None = None,
                 odds_feed: Callable[[], dict[str, dict[str, Any]]] | None = None,
                 redis_breaker: Callable[[], dict[str, Any]] | None = None):
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

    def check(self) -> Deferred:
        """Run every check; fires with the report dict."""
        return ensureDeferred(self._report())

    async def _pool_report(self, now: str) -> dict[str, Any]:
        assert self._pgbouncer_pools is not None
        try:
            pools = await with_timeout(self._clock, self._pgbouncer_pools(), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # reported, not raised
            return {"componentType": "datastore", "status": "warn", "time": now, "output": type(error).__name__}
        waiting = sum(int(pool.get("cl_waiting", 0)) for pool in pools)
        return {"componentType": "datastore", "observedValue": waiting, "observedUnit": "clients waiting",
                "status": "pass", "time": now, "pools": pools}

    async def _sessions_report(self, now: str) -> dict[str, Any]:
        assert self._sessions_count is not None
        try:
            count = await with_timeout(self._clock, ensureDeferred(self._sessions_count()), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # the session store is down: logins fail, public traffic carries on
            return {"componentType": "datastore", "status": "warn", "time": now, "output": type(error).__name__}
        return {"componentType": "datastore", "observedValue": count, "observedUnit": "sessions",
                "status": "pass", "time": now}

    def _odds_feed_report(self, now: str) -> dict[str, Any]:
        """Per sport: next run, consecutive failures, last success and last error; warn while any sport fails."""
        assert self._odds_feed is not None
        sports = self._odds_feed()
        failing = sorted(sport for sport, state in sports.items() if state.get("consecutive_failures"))
        return {"componentType": "component", "observedValue": len(failing), "observedUnit": "sports failing",
                "status": "warn" if failing else "pass", "time": now, "sports": sports}

    def _now(self) -> str:
        return datetime.fromtimestamp(self._clock.seconds(), timezone.utc).isoformat().replace("+00:00", "Z")

    async def _timed(self, probe: Callable[[], Deferred]) -> tuple[str, float | None, str | None]:
        started = self._clock.seconds()
        try:
            await with_timeout(self._clock, probe(), DB_CHECK_TIMEOUT_S)
        except Exception as error:  # reported, not raised: a health check must describe failure
            return "fail", None, type(error).__name__
        return "pass", round((self._clock.seconds() - started) * 1000, 3), None

    async def _report(self) -> dict[str, Any]:
        checks: dict[str, list[dict[str, Any]]] = {}
        now = self._now()
        status, elapsed, error = await self._timed(
            lambda: self._db.run_interaction("health_check", select_one_txn))
        entry: dict[str, Any] = {"componentType": "datastore", "componentId": self._db.dialect.name,
                                 "status": status, "time": now}
        if elapsed is not None:
            entry.update(observedValue=elapsed, observedUnit="ms")
        if error:
            entry["output"] = error
        checks["database:responseTime"] = [entry]
        pool = self._db.snapshot()
        checks["database:connections"] = [{
            "componentType": "datastore", "observedValue": pool.in_use, "observedUnit": "connections",
            "status": "pass", "time": now,
            "pool": {"size": pool.size, "in_use": pool.in_use, "waiting": pool.waiting,
                     "usage_percent": round(pool.usage_percent, 1)},
        }]
        overall = status
        if self._redis_ping is not None:
            redis_status, redis_elapsed, redis_error = await self._timed(lambda: ensureDeferred(self._redis_ping()))
            redis_entry: dict[str, Any] = {"componentType": "datastore", "componentId": "redis",
                                           "status": "pass" if redis_status == "pass" else "warn", "time": now}
            if redis_elapsed is not None:
                redis_entry.update(observedValue=redis_elapsed, observedUnit="ms")
            if redis_error:
                redis_entry["output"] = redis_error
            checks["redis:responseTime"] = [redis_entry]
            if redis_status != "pass" and overall == "pass":
                overall = "warn"
        for check_name, describe in (("database:circuitBreaker", self._breaker),
                                     ("redis:circuitBreaker", self._redis_breaker)):
            if describe is not None:
                checks[check_name] = [_breaker_check(describe(), now)]
                overall = _worst(overall, checks[check_name][0]["status"])
        if self._pgbouncer_pools is not None:
            checks["pgbouncer:pools"] = [await self._pool_report(now)]
        if self._sessions_count is not None:
            checks["sessions:count"] = [await self._sessions_report(now)]
            overall = _worst(overall, checks["sessions:count"][0]["status"])
        if self._odds_feed is not None:
            checks["odds:feed"] = [self._odds_feed_report(now)]
            overall = _worst(overall, checks["odds:feed"][0]["status"])
        return {"status": overall, "version": self._version, "serviceId": f"tenantsvc-{self._role}",
                "description": "tenantsvc detailed health", "checks": checks}


def _breaker_check(breaker: dict[str, Any], now: str) -> dict[str, Any]:
    """A circuit breaker's entry: its state as the observed value, ``warn`` unless it is closed."""
    return {"componentType": "component", "observedValue": breaker["state"],
            "status": "pass" if breaker["state"] == "closed" else "warn", "time": now, "breaker": breaker}


def _worst(current: str, other: str) -> str:
    """The more severe of two health statuses (pass < warn < fail)."""
    order = {"pass": 0, "warn": 1, "fail": 2}
    return current if order[current] >= order[other] else other
