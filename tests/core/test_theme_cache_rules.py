"""Freshness windows and the single L2 value shape."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tenantsvc.core.theme import Theme
from tenantsvc.core.theme_cache_rules import (
    EXPIRED, FRESH, STALE, CachedTheme, CacheWindows, decode_l2, encode_l2, freshness,
)

WINDOWS = CacheWindows(ttl_s=300, stale_while_revalidate_s=60)


def test_windows_boundaries():
    assert freshness(1000, 1000, WINDOWS) == FRESH
    assert freshness(1000, 1299.999, WINDOWS) == FRESH
    assert freshness(1000, 1300, WINDOWS) == STALE
    assert freshness(1000, 1359.999, WINDOWS) == STALE
    assert freshness(1000, 1360, WINDOWS) == EXPIRED


@given(st.floats(0, 1e9), st.floats(0, 1e4))
def test_freshness_only_gets_worse_with_age(fetched_at, age):
    order = {FRESH: 0, STALE: 1, EXPIRED: 2}
    assert order[freshness(fetched_at, fetched_at + age, WINDOWS)] <= order[
        freshness(fetched_at, fetched_at + age + 1, WINDOWS)]


def test_l2_round_trip():
    entry = CachedTheme("acme", Theme(primary_color="#112233"), 1234.5)
    assert decode_l2(encode_l2(entry)) == entry


def test_l2_rejects_malformed_or_invalid_values():
    assert decode_l2(None) is None
    assert decode_l2(b"\xff") is None
    assert decode_l2("[]") is None
    assert decode_l2('{"v":2,"slug":"acme","fetched_at":1,"theme":{}}') is None
    assert decode_l2('{"v":1,"slug":"admin","fetched_at":1,"theme":{}}') is None
    assert decode_l2('{"v":1,"slug":"acme","fetched_at":true,"theme":{}}') is None
    assert decode_l2('{"v":1,"slug":"acme","fetched_at":1,"theme":{"primaryColor":"red"}}') is None
