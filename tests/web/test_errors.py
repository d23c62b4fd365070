"""Error rendering over HTTP: every failure is JSON ``{"error", "message"}`` with the right status.

Routing errors (404/405), body errors (400/413/415), and unexpected exceptions (500 naming the
correlation id, traceback logged but never sent) on both the plain twisted.web path and the Klein apps.
"""

from __future__ import annotations

import json

import pytest

from tests.support.web_harness import ADMIN_TOKEN, logged_request

TENANTS = "/admin/api/tenants"
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("path", "message"), [
    ("/acme/api/nope", "no such route"),
    ("/admin/api/nope", "no such route"),
    ("/admin", "no such route"),
    ("/Not_A_Slug/api/public/load-theme", "no such tenant or route"),
    ("/", "no such tenant or route"),
    ("/health/nope", "no such route"),
    ("/healthz/extra", "no such route"),
    ("/readyz/extra", "no such route"),
    ("/metrics/extra", "no such route"),
])
def test_an_unknown_route_is_a_json_404(harness, path, message):
    response = harness.get(path)
    assert response.status == 404
    assert response.json() == {"error": "not_found", "message": message}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", TENANTS, {"GET", "HEAD", "POST"}),
    ("PATCH", "/admin/api/tenants/acme/theme", {"GET", "HEAD", "PUT"}),
    ("GET", "/admin/api/tenants/acme/users/alice/credit", {"POST"}),
    ("POST", "/healthz", {"GET", "HEAD"}),
    ("POST", "/metrics", {"GET", "HEAD"}),
    ("DELETE", "/acme/api/public/load-theme", {"GET", "HEAD"}),
])
def test_a_wrong_method_is_a_json_405_listing_the_allowed_methods(harness, method, path, allow):
    response = harness.request(method, path, admin=True)
    assert response.status == 405
    assert {m.strip() for m in response.header("Allow").split(",")} - {"OPTIONS"} == allow
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"slug": "acme",', "the request body is not valid UTF-8 JSON"),
    (b"", "the request body is not valid UTF-8 JSON"),
    (b'{"slug": "acme\xff"}', "the request body is not valid UTF-8 JSON"),
    (b"[1, 2]", "the request body must be a JSON object"),
    (b'"acme"', "the request body must be a JSON object"),
    (b"null", "the request body must be a JSON object"),
], ids=["truncated", "empty", "not-utf8", "array", "string", "null"])
def test_a_body_that_is_not_a_json_object_is_400(harness, body, message):
    response = harness.admin("POST", TENANTS, body=body, headers=JSON_HEADERS)
    assert response.status == 400
    assert response.json() == {"error": "malformed_json", "message": message}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonp"])
def test_a_body_that_is_not_declared_as_json_is_415(harness, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = harness.admin("POST", TENANTS, body=b'{"slug": "acme", "name": "Acme"}', headers=headers)
    assert response.status == 415
    assert response.json() == {"error": "unsupported_media_type", "message": "send the body as application/json"}


def test_json_with_a_charset_parameter_is_accepted(harness):
    response = harness.admin("POST", TENANTS, body=b'{"slug": "acme", "name": "Acme"}',
                             headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status == 201


def padded_tenant_body(size: int) -> bytes:
    """A create-tenant JSON body of exactly ``size`` bytes (padded with whitespace, so still valid)."""
    body = b'{"slug": "acme", "name": "Acme"}'
    return body + b" " * (size - len(body))


def body_too_large(harness) -> dict[str, str]:
    """The 413 body for the harness's cap."""
    return {"error": "body_too_large",
            "message": f"request body exceeds {harness.components.settings.max_body_bytes} bytes"}


def test_a_body_exactly_at_the_cap_is_accepted(harness):
    cap = harness.components.settings.max_body_bytes
    response = harness.admin("POST", TENANTS, body=padded_tenant_body(cap), headers=JSON_HEADERS)
    assert response.status == 201


def test_a_content_length_over_the_cap_is_413_and_nothing_is_written(harness):
    cap = harness.components.settings.max_body_bytes
    response = harness.admin("POST", TENANTS, body=padded_tenant_body(cap + 1), headers=JSON_HEADERS)
    assert response.status == 413
    assert response.json() == body_too_large(harness)
    assert harness.admin("GET", TENANTS).json() == {"tenants": []}


def test_a_chunked_body_that_grows_over_the_cap_is_413(harness):
    cap = harness.components.settings.max_body_bytes
    chunks = [b'{"slug": "acme", "name": "Acme"}', b" " * cap]
    response = harness.stream("POST", TENANTS, chunks,
                              {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 413
    assert response.json() == body_too_large(harness)
    assert harness.admin("GET", TENANTS).json() == {"tenants": []}


def test_a_chunked_body_under_the_cap_is_read_whole(harness):
    response = harness.stream("POST", TENANTS, [b'{"slug": "ac', b'me", "name": "Acme"}'],
                              {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 201
    assert response.json()["slug"] == "acme"


def assert_internal_error(eliot_logger, response, secret: str) -> None:
    """A 500 that names the correlation id, leaks nothing, and whose traceback was logged in the request's task."""
    correlation_id = response.header("X-Correlation-ID")
    assert response.status == 500
    assert response.json() == {"error": "internal_error", "message": "unexpected server error",
                               "correlation_id": correlation_id}
    assert b"Traceback" not in response.body and secret.encode() not in response.body
    (logged,) = eliot_logger.flush_tracebacks(RuntimeError)
    assert secret in str(logged["reason"]) and "Traceback" in logged["traceback"]
    assert logged["task_uuid"] == logged_request(eliot_logger.messages, correlation_id).start_message["task_uuid"]


def test_an_unexpected_exception_in_a_klein_route_is_a_500_naming_the_correlation_id(
        harness, eliot_logger, monkeypatch):
    async def broken() -> None:
        """Fail like a bug whose message holds a secret."""
        raise RuntimeError("connection string postgresql://app:hunter2@db")

    monkeypatch.setattr(harness.components.tenants, "list_tenants", broken)
    response = harness.admin("GET", TENANTS)
    assert_internal_error(eliot_logger, response, "hunter2")


def test_an_unexpected_exception_on_the_public_path_is_a_500_naming_the_correlation_id(
        harness, eliot_logger, monkeypatch):
    def broken(*args: object) -> None:
        """Fail like a bug whose message holds a secret."""
        raise RuntimeError("hunter2 leaked")

    harness.create_tenant("acme")
    monkeypatch.setattr(harness.components.themes, "answer", broken)
    response = harness.get("/acme/api/public/load-theme", headers={"X-Correlation-ID": "support-ticket-42"})
    assert response.header("X-Correlation-ID") == "support-ticket-42"
    assert_internal_error(eliot_logger, response, "hunter2")


def test_an_error_response_is_compact_json_with_exactly_error_and_message(harness):
    response = harness.get("/acme/api/nope")
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body).keys() == {"error", "message"}
