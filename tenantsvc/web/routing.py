"""Klein route declarations with their metrics label and request class, JSON body parsing, and error handlers."""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable

from eliot import write_failure
from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tenantsvc.core.request_classes import PUBLIC, READ, ROUTE_CLASSES, WRITE  # noqa: F401 (re-exported)
from tenantsvc.web.errors import ApiError, internal_error, render_api_error, to_api_error

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def route(app: Klein, template: str, *, methods: list[str], request_class: str) -> Callable:
    """Register a handler on ``app`` and tag each request with its route template and request class.

    ``template`` is the Klein/werkzeug rule; it doubles as the bounded ``endpoint`` metrics label.
    """
    assert request_class in ROUTE_CLASSES, request_class
    label = template.replace("<string:", "<").replace("<int:", "<")

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def tagged(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            request.endpoint_label = label
            request.request_class = request_class
            return handler(self, request, *args, **kwargs)

        app.route(template, methods=methods)(tagged)
        return tagged

    return decorate


def read_json_object(request: Any) -> dict[str, Any]:
    """Parse the request body as a JSON object, or raise the right 4xx ``ApiError``."""
    if request.body_too_large:
        raise ApiError(413, "body_too_large", f"request body exceeds {request.max_body_bytes} bytes")
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = request.content.read() if request.content is not None else b""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "malformed_json", "the request body is not valid UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "malformed_json", "the request body must be a JSON object")
    return payload


def idempotency_key(request: Any) -> str | None:
    """The ``Idempotency-Key`` header if present; 400 when it is malformed."""
    raw = request.getHeader(b"idempotency-key")
    if raw is None:
        return None
    text = raw.decode("latin-1")
    if not IDEMPOTENCY_KEY.fullmatch(text):
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1-128 visible ASCII characters")
    return text


def install_error_handlers(app: Klein) -> None:
    """Render every failure of ``app``'s routes as JSON: 404/405 for routing, mapped service errors, else 500."""

    @app.handle_errors(NotFound)
    def not_found(self: Any, request: Any, failure: Any) -> bytes:
        return render_api_error(request, ApiError(404, "not_found", "no such route"))

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self: Any, request: Any, failure: Any) -> bytes:
        allowed = ", ".join(sorted(failure.value.valid_methods or []))
        return render_api_error(
            request, ApiError(405, "method_not_allowed", "method not allowed here", headers={"Allow": allowed})
        )

    @app.handle_errors(Exception)
    def everything_else(self: Any, request: Any, failure: Any) -> bytes:
        error = to_api_error(failure.value)
        if error is None:
            write_failure(failure)
            error = internal_error(request.correlation_id)
        return render_api_error(request, error)
