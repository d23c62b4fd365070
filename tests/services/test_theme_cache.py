"""ThemeCache with a Clock, the in-memory KV store and a hand-driven DB: freshness, coalescing, fleet locks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from tenantsvc.adapters.db import tenant_store
from tenantsvc.adapters.memory_kv import MemoryKeyValueStore
from tenantsvc.core.theme import DEFAULT_THEME, Theme
from tenantsvc.core.theme_cache_rules import CachedTheme, CacheWindows, decode_l2, encode_l2
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.registry import TenantRegistry
from tenantsvc.services.theme_cache import (
    CSS, INVALIDATION_CHANNEL, JSON, ThemeCache, ThemeCacheSettings, l2_key, lock_key,
)

SAVED = Theme(primary_color="#123456", sportsbook_name="Acme")
NEWER = Theme(primary_color="#654321", sportsbook_name="Acme 2")


@dataclass
class HandDrivenDb:
    """Records interactions and leaves each Deferred for the test to fire."""

    pending: list[tuple[str, tuple, Deferred]] = field(default_factory=list)

    def run_interaction(self, name: str, fn: Any, *args: Any) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append((name, args, d))
        return d

    def names(self) -> list[str]:
        return [name for name, _, _ in self.pending]

    def answer_last(self, value: Any) -> None:
        _, _, d = self.pending[-1]
        if isinstance(value, Exception):
            d.errback(value)
        else:
            d.callback(value)


class Env:
    """One cache instance with its collaborators."""

    def __init__(self, clock: Clock, kv: MemoryKeyValueStore | None, *, registry_slugs=None, max_entries=100):
        self.clock = clock
        self.kv = kv
        self.db = HandDrivenDb()
        self.registry = TenantRegistry()
        if registry_slugs is not None:
            self.registry.replace(registry_slugs)
        self.metrics = Metrics(CollectorRegistry(), "web")
        self.cache = ThemeCache(clock=clock, db=self.db, registry=self.registry, metrics=self.metrics, l2=kv,
                                settings=ThemeCacheSettings(CacheWindows(300, 60), max_entries, 0.05))

    def answer(self, slug: str = "acme", kind: str = JSON):
        """Resolve the answer, immediate or deferred."""
        result = self.cache.answer(slug, kind)
        if isinstance(result, Deferred):
            assert result.called, "answer should resolve without the DB"
            return result.result
        return result

    def metric(self, metric_name: str, **labels: str) -> float:
        """A sample value from this instance's registry (0 when the series does not exist)."""
        return self.metrics.registry.get_sample_value(metric_name, labels) or 0.0


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_000_000)
    return clock


@pytest.fixture
def env(clock) -> Env:
    return Env(clock, MemoryKeyValueStore(clock))


def test_cold_miss_serves_defaults_and_one_refresh_fills_the_cache(env):
    first = env.answer()
    assert first.result == "default" and first.body == DEFAULT_THEME.to_json_bytes()
    assert env.db.names() == ["refresh_theme"]
    env.db.answer_last(SAVED)
    second = env.answer()
    assert second.result == "fresh" and second.body == SAVED.to_json_bytes()
    assert env.cache.headers[second.result].cache_control == (
        "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400")
    assert env.db.names() == ["refresh_theme"]


def test_concurrent_cold_misses_make_one_db_read_and_one_l2_read(env):
    l2_reads: list[Deferred] = []
    env.kv.get = lambda key: l2_reads.append(Deferred()) or l2_reads[-1]
    answers = [env.cache.answer("acme", JSON) for _ in range(50)]
    assert len(l2_reads) == 1
    assert env.metric("singleflight_shared_total", name="branding_l2_read") == 49
    l2_reads[0].callback(None)
    assert all(a.called and a.result.result == "default" for a in answers)
    assert env.db.names() == ["refresh_theme"]


def test_fresh_then_stale_then_expired_windows(env, clock):
    env.db.pending.clear()
    env.answer(); env.db.answer_last(SAVED)
    clock.advance(299)
    assert env.answer().result == "fresh" and len(env.db.pending) == 1
    clock.advance(2)
    stale = env.answer()
    assert stale.result == "stale" and stale.body == SAVED.to_json_bytes()
    assert env.cache.headers[stale.result].cache_control == "public, max-age=60, stale-while-revalidate=30"
    assert "stale" in env.cache.headers[stale.result].cache_status
    assert env.db.names() == ["refresh_theme", "refresh_theme"]
    env.db.answer_last(NEWER)
    assert env.answer().body == NEWER.to_json_bytes()


def test_failed_refresh_never_replaces_a_good_entry_and_last_good_survives_expiry(env, clock):
    env.answer(); env.db.answer_last(SAVED)
    env.kv.available = False  # L2 gone too, so only L1 remembers the theme
    clock.advance(10_000)
    answer = env.answer()
    assert answer.result == "stale" and answer.body == SAVED.to_json_bytes()
    env.db.answer_last(RuntimeError("db down"))
    assert env.metric("cache_refresh_total", cache="branding", outcome="error") == 1
    again = env.answer()
    assert again.body == SAVED.to_json_bytes(), "the last good theme is still served"


def test_unknown_tenant_of_a_loaded_registry_is_none_and_leaves_no_trace(clock):
    kv = MemoryKeyValueStore(clock)
    env = Env(clock, kv, registry_slugs=["acme"])
    assert env.cache.answer("nosuch", JSON) is None
    assert env.db.pending == [] and kv.calls == [] and len(env.cache) == 0
    assert env.metric("cache_misses_total", cache="branding") == 0


def test_unloaded_registry_gives_valid_slugs_the_defaults(env):
    assert env.answer("maybe").result == "default"


def test_l2_hit_fills_l1_without_touching_the_db(env, clock):
    env.kv.set(l2_key("acme"), encode_l2(CachedTheme("acme", SAVED, clock.seconds())))
    answer = env.answer()
    assert answer.result == "fresh" and answer.body == SAVED.to_json_bytes()
    assert env.db.pending == []
    assert env.answer().result == "fresh" and env.kv.calls.count("GET") == 1


def test_l2_that_never_answers_times_out_and_serves_defaults(env, clock):
    env.kv.get = lambda key: Deferred()  # a paused Redis: the reply never comes
    result = env.cache.answer("acme", JSON)
    assert not result.called
    clock.advance(0.05)
    assert result.result.result == "default"
    assert env.metric("cache_l2_operations_total", cache="branding", op="get", outcome="error") == 1


def test_an_instance_that_loses_the_fleet_lock_does_not_read_the_db(env):
    env.kv.set(lock_key("acme"), "someone-else", px=15_000, nx=True)
    env.answer()
    assert env.db.pending == []
    assert env.metric("cache_refresh_total", cache="branding", outcome="lock_lost") == 1


def test_lock_is_released_only_by_its_owner(env):
    env.answer()
    env.kv.set(lock_key("acme"), "other-owner")  # our lock expired and another instance took it
    env.db.answer_last(SAVED)
    assert env.kv.get(lock_key("acme")).result == "other-owner"


def test_lock_is_released_after_a_refresh(env):
    env.answer()
    assert env.kv.get(lock_key("acme")).result is not None
    env.db.answer_last(SAVED)
    assert env.kv.get(lock_key("acme")).result is None


def test_without_redis_refresh_still_runs_once(clock):
    env = Env(clock, None)
    for _ in range(10):
        env.cache.answer("acme", JSON)
    assert env.db.names() == ["refresh_theme"]


def test_redis_down_refreshes_locally(env):
    env.kv.available = False
    env.answer()
    assert env.db.names() == ["refresh_theme"]
    env.db.answer_last(SAVED)
    assert env.answer().body == SAVED.to_json_bytes()


def test_saves_reach_other_instances_through_pubsub(clock):
    kv = MemoryKeyValueStore(clock)
    one, two = Env(clock, kv), Env(clock, kv)
    kv.subscribe(INVALIDATION_CHANNEL, two.cache.on_invalidation)
    before = two.answer()
    ensureDeferred(one.cache.store("acme", NEWER))
    after = two.answer()
    assert after.body == NEWER.to_json_bytes() and after.etag != before.etag
    assert two.registry.is_known("acme")


def test_older_invalidation_does_not_replace_a_newer_entry(env, clock):
    env.cache.on_invalidation(encode_l2(CachedTheme("acme", NEWER, clock.seconds())))
    env.cache.on_invalidation(encode_l2(CachedTheme("acme", SAVED, clock.seconds() - 5)))
    assert env.answer().body == NEWER.to_json_bytes()


def test_garbage_invalidation_is_ignored(env):
    env.cache.on_invalidation("not json")
    env.cache.on_invalidation('{"v":1,"slug":"ADMIN","fetched_at":1,"theme":{}}')
    assert len(env.cache) == 0


def test_l1_is_a_bounded_lru(clock):
    env = Env(clock, None, max_entries=3)
    for slug in ("aaa", "bbb", "ccc"):
        env.cache.on_invalidation(encode_l2(CachedTheme(slug, SAVED, clock.seconds())))
    env.answer("aaa")  # touch: bbb is now least recently used
    env.cache.on_invalidation(encode_l2(CachedTheme("ddd", SAVED, clock.seconds())))
    assert len(env.cache) == 3
    assert env.cache.answer("bbb", JSON).result.result == "default"


def test_mark_all_stale_revalidates_after_a_pubsub_outage(env):
    env.cache.on_invalidation(encode_l2(CachedTheme("acme", SAVED, env.clock.seconds())))
    env.cache.mark_all_stale()
    assert env.answer().result == "stale"
    assert env.db.names() == ["refresh_theme"]


def test_refresh_of_a_deleted_tenant_drops_the_entry(env, clock):
    env.cache.on_invalidation(encode_l2(CachedTheme("acme", SAVED, clock.seconds() - 301)))
    env.answer()
    env.db.answer_last(tenant_store.NotFound("acme"))
    assert len(env.cache) == 0


def test_css_has_its_own_body_and_etag(env):
    env.cache.on_invalidation(encode_l2(CachedTheme("acme", SAVED, env.clock.seconds())))
    css, json_answer = env.answer(kind=CSS), env.answer(kind=JSON)
    assert css.body.startswith(b":root {") and b"--primary-color: #123456;" in css.body
    assert css.etag != json_answer.etag


def test_responses_are_counted_by_result(env):
    env.answer()
    env.db.answer_last(SAVED)
    env.answer()
    assert env.metric("cache_responses_total", cache="branding", result="default") == 1
    assert env.metric("cache_responses_total", cache="branding", result="fresh") == 1
    assert env.metric("cache_hits_total", cache="branding") == 1
    assert env.metric("cache_misses_total", cache="branding") == 1


def test_a_refresh_that_read_before_a_save_never_undoes_it(clock):
    kv = MemoryKeyValueStore(clock)
    one, two = Env(clock, kv), Env(clock, kv)
    kv.subscribe(INVALIDATION_CHANNEL, two.cache.on_invalidation)
    one.answer()  # cold: a refresh starts reading the (old) theme
    clock.advance(0.5)
    ensureDeferred(one.cache.store("acme", NEWER))  # a save commits while that read is in flight
    clock.advance(0.5)
    one.db.answer_last(SAVED)  # the refresh finishes with what it read before the save
    assert one.answer().body == NEWER.to_json_bytes()
    assert two.answer().body == NEWER.to_json_bytes(), "the old theme was not published over the save"
    assert decode_l2(kv.get(l2_key("acme")).result).theme == NEWER, "nor written over it in L2"


def sample(env: Env, metric_name: str, **labels: str) -> float | None:
    """A sample value, None when the series does not exist (``Env.metric`` reads that as 0)."""
    return env.metrics.registry.get_sample_value(metric_name, labels)


def test_refresh_and_l2_series_exist_at_zero_from_construction(clock):
    with_redis, without = Env(clock, MemoryKeyValueStore(clock)), Env(clock, None)
    for outcome in ("ok", "error", "not_found", "lock_lost"):
        assert sample(with_redis, "cache_refresh_total", cache="branding", outcome=outcome) == 0
        assert sample(without, "cache_refresh_total", cache="branding", outcome=outcome) == 0
    for op, outcome in (("get", "hit"), ("get", "miss"), ("get", "error"), ("set", "ok"), ("set", "error")):
        assert sample(with_redis, "cache_l2_operations_total", cache="branding", op=op, outcome=outcome) == 0
        assert sample(without, "cache_l2_operations_total", cache="branding", op=op, outcome=outcome) is None


def test_a_save_written_to_l2_is_counted_and_a_refused_one_is_an_error(env):
    ensureDeferred(env.cache.store("acme", SAVED))
    assert env.metric("cache_l2_operations_total", cache="branding", op="set", outcome="ok") == 1
    env.kv.available = False
    ensureDeferred(env.cache.store("acme", NEWER))
    assert env.metric("cache_l2_operations_total", cache="branding", op="set", outcome="error") == 1
    assert env.metric("cache_l2_operations_total", cache="branding", op="set", outcome="ok") == 1


@pytest.mark.parametrize(("available", "outcome"), [(True, "ok"), (False, "error")])
def test_the_warm_counts_each_l2_write(env, available, outcome):
    env.kv.available = available
    warmed = env.cache.warm()
    env.db.answer_last([("acme", SAVED), ("beta", NEWER)])
    assert warmed.result == 2, "a refused L2 write never fails the warm"
    assert env.metric("cache_l2_operations_total", cache="branding", op="set", outcome=outcome) == 2


def test_a_cached_entry_keeps_bodies_not_the_theme_and_gives_the_theme_back(env):
    env.answer(); env.db.answer_last(SAVED)
    assert env.answer().result == "fresh"
    assert env.cache.cached_theme("acme") == SAVED
    rendered = env.cache._l1["acme"]
    assert not any(isinstance(getattr(rendered, name), Theme) for name in rendered.__slots__)
