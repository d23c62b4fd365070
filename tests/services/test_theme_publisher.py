"""ThemePublisher: a theme Redis refused is written through and published once Redis answers, newest wins."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from tenantsvc.adapters.memory_kv import MemoryKeyValueStore
from tenantsvc.core.theme import DEFAULT_THEME
from tenantsvc.core.theme_cache_rules import CachedTheme, decode_l2
from tenantsvc.obs.metrics import Metrics
from tenantsvc.services.theme_publisher import INVALIDATION_CHANNEL, RETRY_BASE_S, ThemePublisher, l2_key
from tests.support.web_harness import fired

NEWER = replace(DEFAULT_THEME, primary_color="#FF0066")


@pytest.fixture
def parts() -> tuple[Clock, MemoryKeyValueStore, ThemePublisher, list[str]]:
    """A Clock, an in-memory Redis, a publisher with jitter pinned to 1.0× and what subscribers heard."""
    clock = Clock()
    l2 = MemoryKeyValueStore(clock)
    heard: list[str] = []
    l2.subscribe(INVALIDATION_CHANNEL, heard.append)
    publisher = ThemePublisher(l2, clock, Metrics(CollectorRegistry(), "web"), random=lambda: 0.5)
    return clock, l2, publisher, heard


def publish(publisher: ThemePublisher, slug: str, fetched_at: float, theme=DEFAULT_THEME) -> None:
    """Publish one entry and wait for it."""
    fired(ensureDeferred(publisher.publish(CachedTheme(slug=slug, theme=theme, fetched_at=fetched_at))))


def test_a_theme_is_written_through_and_published(parts):
    clock, l2, publisher, heard = parts
    publish(publisher, "acme", 10.0)
    assert decode_l2(fired(l2.get(l2_key("acme")))).fetched_at == 10.0
    assert [decode_l2(message).slug for message in heard] == ["acme"]
    assert clock.getDelayedCalls() == []


def test_a_refused_theme_is_retried_with_backoff_until_redis_answers(parts):
    clock, l2, publisher, heard = parts
    l2.available = False
    publish(publisher, "acme", 10.0)
    assert (publisher.waiting, heard) == (1, [])
    clock.advance(RETRY_BASE_S)  # first retry: Redis still down, the next waits twice as long
    assert publisher.waiting == 1
    l2.available = True
    clock.advance(2 * RETRY_BASE_S - 0.01)
    assert heard == []
    clock.advance(0.01)
    assert publisher.waiting == 0
    assert [decode_l2(message).fetched_at for message in heard] == [10.0]
    assert clock.getDelayedCalls() == []


def test_only_the_newest_refused_theme_of_a_tenant_is_kept_and_a_newer_one_in_redis_wins(parts):
    clock, l2, publisher, heard = parts
    l2.available = False
    publish(publisher, "acme", 20.0, NEWER)
    publish(publisher, "acme", 10.0)  # an older refresh result refused after the save: dropped
    publish(publisher, "betco", 15.0)
    assert publisher.waiting == 2
    l2.available = True
    clock.advance(RETRY_BASE_S)
    assert sorted((decode_l2(m).slug, decode_l2(m).fetched_at) for m in heard) == [("acme", 20.0), ("betco", 15.0)]
    assert decode_l2(fired(l2.get(l2_key("acme")))).theme == NEWER


def test_a_retried_theme_never_replaces_a_newer_one_already_in_redis(parts):
    clock, l2, publisher, heard = parts
    l2.available = False
    publish(publisher, "acme", 10.0)
    l2.available = True
    publish(publisher, "acme", 30.0, NEWER)  # another save went through meanwhile
    clock.advance(RETRY_BASE_S)
    assert decode_l2(fired(l2.get(l2_key("acme")))).fetched_at == 30.0
    assert [decode_l2(m).fetched_at for m in heard] == [30.0], "the stale retry is not published"


def test_stop_cancels_a_scheduled_retry(parts):
    clock, l2, publisher, heard = parts
    l2.available = False
    publish(publisher, "acme", 10.0)
    publisher.stop()
    assert clock.getDelayedCalls() == []
