"""The composition root: ``build_service`` returns the tree it built, in dependency order, with Redis optional.

Built on an in-memory reactor (nothing listens, nothing starts); the parts are the real ones. Stopping runs
the children in reverse, so the order here is also the drain order: the main listener ("web") stops before the
operations listener ("ops"), both before the Redis parts and the database.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock

from tenantsvc.adapters.redis import RedisClient
from tenantsvc.composition.redis_parts import RedisParts
from tenantsvc.core.targets import RedisTarget
from tenantsvc.service import Overrides, build_service
from tenantsvc.services.redis_guard import RedisBreaker, redis_breaker_config
from tests.support.fake_redis_pool import FakeRedisPool
from tests.support.web_harness import SynchronousPasswordHashing, ThreadlessConnectionPool, harness_settings

TEST_PARTS = Overrides(pool_factory=ThreadlessConnectionPool, log=False, freeze_heap=False)


def names(built: Any) -> list[str]:
    return [child.name for child in built.service]


def test_without_redis_the_tree_has_no_redis_parts(tmp_path):
    built = build_service(harness_settings(str(tmp_path / "db.sqlite3")), MemoryReactorClock(), TEST_PARTS)
    assert built.components.redis is None
    assert names(built) == ["reactor_lag", "db", "db_breaker", "password-hashing", "web", "theme_warmer"]
    assert built.web.ops is None and built.ops_listener is None


def test_redis_parts_and_the_operations_listener_take_their_places(tmp_path):
    reactor = MemoryReactorClock()
    client = RedisClient(RedisTarget("127.0.0.1", 1, 0, None), reactor, 0.5, pool=FakeRedisPool("up"))

    def redis(metrics: Any) -> RedisParts:
        breaker = RedisBreaker(reactor, metrics, probe_timeout_s=1.0, config=redis_breaker_config(3, 1.0, 5.0))
        breaker.protect(client)
        return RedisParts(client=client, breaker=breaker)

    settings = harness_settings(str(tmp_path / "db.sqlite3"), env={"OPS_LISTEN": "tcp:0"})
    built = build_service(settings, reactor, Overrides(pool_factory=ThreadlessConnectionPool, redis=redis,
                                                       log=False, freeze_heap=False))
    assert built.components.redis is not None and built.components.redis.client is client
    assert names(built) == ["reactor_lag", "db", "db_breaker", "password-hashing", "redis", "redis_breaker", "ops",
                            "web", "theme_warmer"]
    assert built.web.ops is not None and built.ops_listener is not None


def test_supplied_password_hashing_is_not_started_by_the_tree(tmp_path):
    passwords = SynchronousPasswordHashing()
    built = build_service(harness_settings(str(tmp_path / "db.sqlite3")), MemoryReactorClock(),
                          Overrides(pool_factory=ThreadlessConnectionPool, passwords=passwords, log=False))
    assert built.components.players.passwords is passwords and built.components.players.hashing_pool is None
    assert "password-hashing" not in names(built)


def test_production_defaults_add_the_log_destination_first(tmp_path):
    built = build_service(harness_settings(str(tmp_path / "db.sqlite3")), MemoryReactorClock(),
                          Overrides(pool_factory=ThreadlessConnectionPool))
    assert names(built)[0] == "logging"
