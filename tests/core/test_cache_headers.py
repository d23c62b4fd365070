"""The header policy table: the Cache-Control and Cache-Status strings DESIGN promises, built from data."""

from __future__ import annotations

from tenantsvc.core.http_cache import (
    THEME_DEFAULT, THEME_FRESH, THEME_RATE_LIMITED, THEME_STALE, CacheHeaders, odds_cache_headers, theme_cache_headers,
)


def test_the_theme_table_sends_design_s_headers():
    table = theme_cache_headers(300, 60)
    assert table[THEME_FRESH].cache_control == "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"
    assert table[THEME_FRESH].cache_status == "tenantsvc; hit"
    assert table[THEME_STALE].cache_control == table[THEME_DEFAULT].cache_control == \
        "public, max-age=60, stale-while-revalidate=30"
    assert table[THEME_STALE].cache_status == "tenantsvc; hit; detail=stale"
    assert table[THEME_DEFAULT].cache_status == "tenantsvc; fwd=miss; detail=default"
    assert table[THEME_RATE_LIMITED].cache_control == "public, max-age=30, stale-while-revalidate=60"


def test_fresh_answers_follow_the_cache_windows():
    assert theme_cache_headers(120.4, 10)[THEME_FRESH].cache_control.startswith(
        "public, max-age=120, stale-while-revalidate=10,")


def test_odds_headers_say_when_the_copy_was_served_because_the_db_refused():
    assert odds_cache_headers(5.0, stale=False).pairs() == ((b"Cache-Control", b"public, max-age=5"),)
    assert odds_cache_headers(5.0, stale=True).pairs() == (
        (b"Cache-Control", b"public, max-age=5"), (b"Cache-Status", b"tenantsvc; hit; detail=db-refused"))


def test_a_row_without_cache_status_sends_cache_control_only():
    assert CacheHeaders(30, 60).pairs() == ((b"Cache-Control", b"public, max-age=30, stale-while-revalidate=60"),)
