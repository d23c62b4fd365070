"""``GET /<tenant>/api/public/load-theme`` (the simple form of issue 2): cached theme, caching headers, ETag/304."""

from __future__ import annotations

import json
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import ensureDeferred
from twisted.internet.testing import StringTransport

from tenantsvc.adapters.db import tenant_store
from tenantsvc.web.request import canonical_header
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


def raw_exchange(harness: WebHarness, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Send ``request`` bytes to the real Site over an in-memory connection; (status line, headers, body)."""
    transport = StringTransport()
    channel = harness.web.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    channel.dataReceived(request)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    return status, dict(line.split(b": ", 1) for line in lines), body


def raw_get(harness: WebHarness, path: str, *headers: bytes, method: bytes = b"GET") -> tuple:
    """``raw_exchange`` of a keep-alive request for ``path`` with extra header lines."""
    return raw_exchange(harness, method + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                        + b"".join(header + b"\r\n" for header in headers) + b"\r\n")


def test_a_200_states_its_length_and_a_304_states_none(acme):
    # On the wire (an HTTP client hides Content-Length). RFC 9110 §8.6: a 304 may only repeat the 200's
    # Content-Length; twisted.web writes 0 for an empty body returned from render.
    status, headers, body = raw_get(acme, ACME)
    assert status == b"HTTP/1.1 200 OK" and headers[b"Content-Length"] == str(len(body)).encode()
    status, revalidated, body = raw_get(acme, ACME, b"If-None-Match: " + headers[b"ETag"])
    assert status == b"HTTP/1.1 304 Not Modified" and body == b""
    assert b"Content-Length" not in revalidated and b"Content-Type" not in revalidated
    assert b"Transfer-Encoding" not in revalidated
    assert revalidated[b"ETag"] == headers[b"ETag"] and revalidated[b"Cache-Status"] == headers[b"Cache-Status"]


def test_head_states_the_length_of_the_body_it_leaves_out(acme):
    _, get, body = raw_get(acme, ACME)
    status, head, nothing = raw_get(acme, ACME, method=b"HEAD")
    assert status == b"HTTP/1.1 200 OK" and nothing == b""
    assert head[b"Content-Length"] == get[b"Content-Length"] == str(len(body)).encode()


def test_an_answer_that_waited_for_the_cache_states_its_length_too(make_harness):
    harness = make_harness(warm=False)
    harness.pool.pause()
    _, headers, body = raw_get(harness, "/anyone/api/public/load-theme")  # an L1 miss: written after the lookup
    assert headers[b"Content-Length"] == str(len(body)).encode() and b"Transfer-Encoding" not in headers
    assert json.loads(body) == DEFAULT_THEME


def test_the_wire_names_of_the_fast_path_headers_are_twisted_web_s_own(acme):
    _, headers, _ = raw_get(acme, ACME)
    names = [name for name in headers if name not in (b"Server", b"Date")]
    assert names == [canonical_header(name) for name in names]
    assert names[:2] == [b"X-Correlation-Id", b"X-Request-Id"] and b"Ratelimit" in names


def test_a_rate_limited_answer_still_revalidates(make_harness):
    harness = make_harness(env={"RATE_LIMIT_PUBLIC": "1/0.001"})
    harness.create_tenant("acme")
    etag = harness.get("/acme/api/public/load-theme").header("ETag")
    limited = harness.get("/acme/api/public/load-theme", headers={"If-None-Match": etag})
    assert limited.header("X-Rate-Limited") == "true"
    assert limited.status == 304
    assert limited.header("Cache-Control") == "public, max-age=30, stale-while-revalidate=60"
    assert limited.header("X-Rate-Limit-Remaining") == "0"
