"""Correlation and request ids: on every response, inbound values kept only when safe, ``traceparent`` honoured."""

from __future__ import annotations

import re

import pytest

from tests.support.web_harness import WebHarness

FRESH_ID = re.compile(r"^[0-9a-f]{32}$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def nothing_to_prepare(harness: WebHarness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No set-up and no extra request headers."""
    return {}


def break_tenant_list(harness: WebHarness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Make the admin tenant list raise, for a 500."""
    async def broken() -> None:
        """Fail like a bug would."""
        raise RuntimeError("boom")

    monkeypatch.setattr(harness.components.tenants, "list_tenants", broken)
    return {}


def revalidate_acme(harness: WebHarness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Create tenant acme and return headers that make its load-theme answer 304."""
    harness.create_tenant("acme")
    return {"If-None-Match": harness.get("/acme/api/public/load-theme").header("ETag")}


@pytest.mark.parametrize(("method", "path", "prepare", "status"), [
    ("GET", "/healthz", nothing_to_prepare, 200),
    ("GET", "/readyz", nothing_to_prepare, 503),
    ("GET", "/metrics", nothing_to_prepare, 200),
    ("GET", "/health/detailed", nothing_to_prepare, 200),
    ("GET", "/acme/api/public/load-theme", revalidate_acme, 304),
    ("GET", "/acme/api/nope", nothing_to_prepare, 404),
    ("POST", "/healthz", nothing_to_prepare, 405),
    ("POST", "/admin/api/tenants", nothing_to_prepare, 415),
    ("GET", "/admin/api/tenants", break_tenant_list, 500),
])
def test_every_response_carries_fresh_correlation_and_request_ids(harness, eliot_logger, monkeypatch, method, path,
                                                                  prepare, status):
    response = harness.request(method, path, headers=prepare(harness, monkeypatch), admin=True)
    eliot_logger.flush_tracebacks(RuntimeError)
    assert response.status == status
    correlation_id, request_id = response.header("X-Correlation-ID"), response.header("X-Request-ID")
    assert FRESH_ID.match(correlation_id) and FRESH_ID.match(request_id)
    assert correlation_id != request_id


def test_each_request_gets_new_ids(harness):
    first, second = harness.get("/healthz"), harness.get("/healthz")
    assert first.header("X-Correlation-ID") != second.header("X-Correlation-ID")
    assert first.header("X-Request-ID") != second.header("X-Request-ID")


@pytest.mark.parametrize(("correlation_id", "request_id"), [
    ("abc.DEF_123-x", "req-1"), ("a", "b"), ("7" * 64, "8" * 64), ("4bf92f3577b34da6a3ce929d0e0e4736", "r.2_x-Y"),
], ids=["mixed", "one-char", "64-chars", "hex"])
def test_valid_inbound_ids_are_kept(harness, correlation_id, request_id):
    response = harness.get("/healthz", headers={"X-Correlation-ID": correlation_id, "X-Request-ID": request_id})
    assert response.header("X-Correlation-ID") == correlation_id
    assert response.header("X-Request-ID") == request_id


def test_a_valid_request_id_is_kept_when_the_correlation_id_is_replaced(harness):
    response = harness.get("/healthz", headers={"X-Correlation-ID": "<bad>", "X-Request-ID": "req-9"})
    assert FRESH_ID.match(response.header("X-Correlation-ID"))
    assert response.header("X-Request-ID") == "req-9"


@pytest.mark.parametrize("value", [
    "abc\r\nSet-Cookie: session=stolen",
    "x" * 65,
    "<script>alert(1)</script>",
    "abc def",
    "abc\tdef",
    "id;drop",
    "caf\u00e9",
    "",
], ids=["crlf-injection", "65-chars", "markup", "space", "tab", "semicolon", "non-ascii", "empty"])
def test_invalid_inbound_ids_are_replaced_never_echoed(harness, value):
    response = harness.get("/healthz", headers={"X-Correlation-ID": value, "X-Request-ID": value})
    correlation_id, request_id = response.header("X-Correlation-ID"), response.header("X-Request-ID")
    assert FRESH_ID.match(correlation_id) and FRESH_ID.match(request_id)
    assert response.header("Set-Cookie") is None
    raw_headers = b"".join(b"".join(values) for _, values in response.headers.getAllRawHeaders())
    assert b"script" not in raw_headers and b"stolen" not in raw_headers and b"x" * 65 not in raw_headers


def test_a_valid_traceparent_supplies_the_correlation_id(harness):
    response = harness.get("/healthz", headers={"traceparent": TRACEPARENT})
    assert response.header("X-Correlation-ID") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert FRESH_ID.match(response.header("X-Request-ID"))


def test_an_explicit_correlation_id_wins_over_traceparent(harness):
    response = harness.get("/healthz", headers={"traceparent": TRACEPARENT, "X-Correlation-ID": "mine-1"})
    assert response.header("X-Correlation-ID") == "mine-1"


def test_an_invalid_correlation_id_falls_back_to_traceparent(harness):
    response = harness.get("/healthz", headers={"traceparent": TRACEPARENT, "X-Correlation-ID": "<bad>"})
    assert response.header("X-Correlation-ID") == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("traceparent", [
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
], ids=["zero-trace-id", "zero-parent-id", "version-ff", "uppercase", "truncated"])
def test_an_invalid_traceparent_is_ignored(harness, traceparent):
    response = harness.get("/healthz", headers={"traceparent": traceparent})
    correlation_id = response.header("X-Correlation-ID")
    assert FRESH_ID.match(correlation_id) and correlation_id != "4bf92f3577b34da6a3ce929d0e0e4736"
