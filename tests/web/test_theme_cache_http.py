"""The two-tier cache seen over HTTP: theme.css, Cache-Status, stale answers, refreshes named by their trigger."""

from __future__ import annotations

import pytest
from eliot.testing import LoggedAction

from tenantsvc.services.theme_cache import REFRESH
from tests.support.web_harness import WebHarness
from tests.web.theme_samples import CUSTOM_THEME

CSS = "/acme/api/public/theme.css"
JSON = "/acme/api/public/load-theme"


@pytest.fixture
def acme(harness: WebHarness) -> WebHarness:
    """Tenant acme with its custom theme saved (so cached fresh)."""
    harness.create_tenant("acme")
    assert harness.admin("PUT", "/admin/api/tenants/acme/theme", json=CUSTOM_THEME).status == 200
    return harness


def test_theme_css_is_served_from_the_same_entry_with_its_own_etag(acme):
    css, json = acme.get(CSS), acme.get(JSON)
    assert css.status == 200 and css.header("Content-Type") == "text/css; charset=utf-8"
    assert css.body.startswith(b":root {")
    assert f"--primary-color: {CUSTOM_THEME['primaryColor'].upper()};".encode() in css.body
    assert css.header("ETag") != json.header("ETag")
    assert css.header("Cache-Control") == json.header("Cache-Control")
    assert css.header("Set-Cookie") is None and css.header("Vary") is None


def test_theme_css_revalidates_with_304(acme):
    etag = acme.get(CSS).header("ETag")
    again = acme.get(CSS, headers={"If-None-Match": f'"other", {etag}'})
    assert again.status == 304 and again.body == b"" and again.header("ETag") == etag


def test_saving_a_theme_changes_the_css(acme):
    before = acme.get(CSS)
    assert acme.admin("PUT", "/admin/api/tenants/acme/theme", json={"primaryColor": "#0A0B0C"}).status == 200
    after = acme.get(CSS)
    assert b"--primary-color: #0A0B0C;" in after.body and after.header("ETag") != before.header("ETag")


def test_cache_status_says_hit_then_stale_and_a_stale_answer_triggers_one_refresh(acme, eliot_logger):
    assert acme.get(JSON).header("Cache-Status") == "tenantsvc; hit"
    acme.clock.advance(301)  # past the 300 s TTL, inside the 60 s stale-while-revalidate window
    before = acme.components.db.calls["refresh_theme"]
    stale = acme.get(JSON, headers={"X-Correlation-ID": "stale-trigger"})
    assert stale.status == 200 and "stale" in stale.header("Cache-Status")
    assert stale.header("Cache-Control") == "public, max-age=60, stale-while-revalidate=30"
    assert acme.components.db.calls["refresh_theme"] == before + 1
    (refresh,) = LoggedAction.of_type(eliot_logger.messages, REFRESH)
    assert refresh.start_message["trigger_correlation_id"] == "stale-trigger"
    assert refresh.end_message["outcome"] == "ok"
    assert acme.get(JSON).header("Cache-Status") == "tenantsvc; hit", "the refresh made the entry fresh again"


def test_unknown_tenant_is_404_and_leaves_no_cache_entry_or_refresh(acme):
    calls = dict(acme.components.db.calls)
    assert acme.get("/nosuch/api/public/theme.css").status == 404
    assert acme.components.themes.cached_theme("nosuch") is None
    assert dict(acme.components.db.calls) == calls


def test_post_to_theme_css_is_405(acme):
    response = acme.request("POST", CSS)
    assert response.status == 405 and response.header("Allow") == "GET, HEAD"
