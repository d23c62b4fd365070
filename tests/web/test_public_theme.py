"""``GET /<tenant>/api/public/load-theme`` (the simple form of issue 2): cached theme, caching headers, ETag/304."""

from __future__ import annotations

import re

import pytest
from twisted.internet.defer import ensureDeferred

from tenantsvc.adapters.db import tenant_store
from tests.support.web_harness import WebHarness, fired
from tests.web.theme_samples import CUSTOM_THEME, DEFAULT_THEME

FRESH_CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400"
DEFAULT_CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=30"
STRONG_ETAG = re.compile(r'^"[\x21\x23-\x7e]+"$')
ACME = "/acme/api/public/load-theme"


def save_theme(harness: WebHarness, theme: dict[str, str]) -> None:
    """Save ``theme`` for acme through the admin API."""
    assert harness.admin("PUT", "/admin/api/tenants/acme/theme", json=theme).status == 200


@pytest.fixture
def acme(harness: WebHarness) -> WebHarness:
    """The harness with tenant ``acme`` and its custom theme saved through the admin API."""
    harness.create_tenant("acme")
    save_theme(harness, CUSTOM_THEME)
    return harness


def assert_public_json(response) -> None:
    """A load-theme answer: JSON, strong ETag, no cookie."""
    assert response.header("Content-Type") == "application/json"
    assert STRONG_ETAG.match(response.header("ETag")), response.header("ETag")
    assert response.header("Set-Cookie") is None


def test_a_saved_theme_is_served_with_fresh_caching_headers_and_a_strong_etag(acme):
    response = acme.get(ACME)
    assert response.status == 200
    assert response.json() == acme.admin("GET", "/admin/api/tenants/acme/theme").json()
    assert response.json()["sportsbookName"] == "Acme Bets"
    assert response.header("Cache-Control") == FRESH_CACHE_CONTROL
    assert_public_json(response)


def test_serving_the_theme_never_touches_the_database(acme):
    before = acme.pool.interactions
    acme.pool.close()
    assert acme.get(ACME).status == 200
    assert acme.pool.interactions == before


def test_saving_a_theme_changes_the_served_body_and_etag(acme):
    first = acme.get(ACME)
    save_theme(acme, {**CUSTOM_THEME, "sportsbookName": "Acme Bets Reloaded"})
    second = acme.get(ACME)
    assert second.json()["sportsbookName"] == "Acme Bets Reloaded"
    assert second.header("ETag") != first.header("ETag")
    assert acme.get(ACME, headers={"If-None-Match": first.header("ETag")}).status == 200


def test_the_etag_is_stable_while_the_theme_is_unchanged(acme):
    assert acme.get(ACME).header("ETag") == acme.get(ACME).header("ETag")
    etag = acme.get(ACME).header("ETag")
    save_theme(acme, CUSTOM_THEME)
    assert acme.get(ACME).header("ETag") == etag


@pytest.mark.parametrize("if_none_match", [
    "{etag}", '"other", {etag}', "W/{etag}", "*", " {etag} ",
], ids=["exact", "in-a-list", "weak-form", "star", "whitespace"])
def test_a_matching_if_none_match_is_answered_304_without_a_body(acme, if_none_match):
    etag = acme.get(ACME).header("ETag")
    response = acme.get(ACME, headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert response.status == 304
    assert response.body == b""
    assert response.header("ETag") == etag
    assert response.header("Cache-Control") == FRESH_CACHE_CONTROL
    assert response.header("Set-Cookie") is None


@pytest.mark.parametrize("if_none_match", ['"not-the-etag"', "garbage", '"unterminated'])
def test_a_non_matching_or_malformed_if_none_match_gets_the_full_answer(acme, if_none_match):
    response = acme.get(ACME, headers={"If-None-Match": if_none_match})
    assert response.status == 200
    assert response.json()["sportsbookName"] == "Acme Bets"


def test_a_tenant_created_through_the_admin_api_gets_the_default_palette(harness):
    harness.create_tenant("fresh")
    response = harness.get("/fresh/api/public/load-theme")
    assert response.status == 200
    assert response.json() == DEFAULT_THEME
    assert_public_json(response)


def test_a_tenant_without_a_theme_row_gets_the_default_palette_after_warming(harness):
    harness.run_interaction(tenant_store.insert_tenant_txn, "legacy", "Legacy Book")
    assert harness.get("/legacy/api/public/load-theme").status == 404  # not known until the registry reloads
    fired(ensureDeferred(harness.components.themes.warm()))
    response = harness.get("/legacy/api/public/load-theme")
    assert response.status == 200
    assert response.json() == DEFAULT_THEME
    assert response.header("Cache-Control") == FRESH_CACHE_CONTROL


def test_a_theme_saved_by_another_instance_is_served_after_warming(acme):
    from tenantsvc.core.theme import parse_theme

    acme.run_interaction(tenant_store.save_theme_txn, "acme", parse_theme({"sportsbookName": "Elsewhere"}))
    assert acme.get(ACME).json()["sportsbookName"] == "Acme Bets"
    fired(ensureDeferred(acme.components.themes.warm()))
    assert acme.get(ACME).json()["sportsbookName"] == "Elsewhere"


@pytest.mark.parametrize("slug", ["Acme", "ab", "-acme", "acme-", "a_b", "x" * 64, "admin", "metrics", "api"])
def test_a_malformed_or_reserved_slug_is_404_and_creates_no_cache_entry(harness, slug):
    cached = len(harness.components.themes)
    response = harness.get(f"/{slug}/api/public/load-theme")
    assert response.status == 404
    assert response.json()["error"] == "not_found"
    assert len(harness.components.themes) == cached
    assert not harness.components.tenant_registry.is_known(slug)


def test_a_valid_slug_unknown_to_the_loaded_registry_is_404(harness):
    response = harness.get("/no-such-book/api/public/load-theme")
    assert response.status == 404
    assert response.json() == {"error": "unknown_tenant", "message": "no such tenant"}
    assert response.header("Cache-Control") is None


def test_before_the_registry_is_loaded_a_valid_slug_gets_the_defaults_with_short_caching(make_harness):
    harness = make_harness(warm=False)
    harness.pool.pause()  # the database has not answered: the refresh this miss starts stays pending
    response = harness.get("/anyone/api/public/load-theme")
    assert response.status == 200
    assert response.json() == DEFAULT_THEME
    assert response.header("Cache-Control") == DEFAULT_CACHE_CONTROL
    assert_public_json(response)
    assert harness.get("/Not_Valid/api/public/load-theme").status == 404


def test_the_default_answer_also_supports_revalidation(make_harness):
    harness = make_harness(warm=False)
    harness.pool.pause()
    etag = harness.get("/anyone/api/public/load-theme").header("ETag")
    response = harness.get("/anyone/api/public/load-theme", headers={"If-None-Match": etag})
    assert response.status == 304
    assert response.header("Cache-Control") == DEFAULT_CACHE_CONTROL


def test_head_gets_the_headers_without_the_body(acme):
    get, head = acme.get(ACME), acme.request("HEAD", ACME)
    assert head.status == 200
    assert head.body == b""
    assert head.header("ETag") == get.header("ETag")


@pytest.mark.parametrize("path", ["/acme/api/public/load-theme/extra", "/acme/api/public/load-themes",
                                  "/acme/api/public"])
def test_near_miss_paths_are_not_the_theme(acme, path):
    assert acme.get(path).status == 404
