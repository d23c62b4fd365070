"""Declarative Klein routes (``route``: path, request class, tenant, body, idempotency key, rate limit, session),
JSON body parsing, and error handlers."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from eliot import write_failure
from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tenantsvc.core.request_classes import PUBLIC, READ, ROUTE_CLASSES, WRITE  # noqa: F401 (re-exported)
from tenantsvc.web.errors import ApiError, internal_error, render_api_error, to_api_error

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_CONVERTER = re.compile(r"<(?:string|int):")


TENANT_PREFIX = "/<string:tenant>/api"  # every player route: ``with app.subroute(TENANT_PREFIX)``
NO_SESSION, OPTIONAL_SESSION, SESSION_REQUIRED = "none", "optional", "required"
SESSION_MODES = (NO_SESSION, OPTIONAL_SESSION, SESSION_REQUIRED)
LOGIN_LIMIT = "login"  # the login stack: per (body username, client), per client and per tenant


@dataclass(frozen=True)
class RouteSpec:
    """What a route declares besides its path: its request class and what must hold before its handler runs.

    ``tenant``: the path's ``tenant`` must be a known tenant (else 404) and the handler gets a ``TenantCall``.
    ``json_body``: the body is parsed as a JSON object (413/415/400); a ``write`` route without one still
    demands the JSON content type (a cross-site form cannot send it: the CSRF defence). ``idempotency_key``:
    the ``Idempotency-Key`` header is required. ``limit``: the rate-limit endpoint class spent from (``route``
    defaults a tenant route's to its request class; ``auth`` for register, ``LOGIN_LIMIT`` for login; None
    only without a tenant). ``session``: whether the
    caller's session is resolved, and whether one is required (401). ``operator``: the caller must be the
    operator: the handler's owner's ``authorize(request)`` (the admin Bearer token) runs before the handler.
    """

    request_class: str
    tenant: bool = False
    json_body: bool = False
    idempotency_key: bool = False
    limit: str | None = None
    session: str = NO_SESSION
    operator: bool = False

    def __post_init__(self) -> None:
        assert self.request_class in ROUTE_CLASSES, self.request_class
        assert self.session in SESSION_MODES, self.session
        assert self.tenant or (self.limit is None and self.session == NO_SESSION and not self.idempotency_key), \
            "limits, sessions and idempotency keys are per tenant"


def route(app: Klein, path: str, *, methods: list[str], request_class: str, tenant: bool = False,
          json_body: bool = False, idempotency_key: bool = False, limit: str | None = None,
          session: str = NO_SESSION, operator: bool = False) -> Callable:
    """Register a handler on ``app`` (within any ``app.subroute``) with everything it declares (``RouteSpec``).

    Each request is tagged with its route template (the bounded ``endpoint`` metrics label, the full rule
    with any subroute prefix) and its request class (the ``route_class`` metrics label). A ``tenant`` route
    is called as ``handler(self, request, call, **other_path_values)`` after ``self.guard.admit(request,
    spec, tenant)`` (``web.route_guard.TenantRouteGuard``) has checked the spec and returned the call:
    handlers are parse → one service call → render. The spec is kept as the handler's ``route_spec``.
    """
    spec = RouteSpec(request_class, tenant, json_body, idempotency_key,
                     request_class if tenant and limit is None and request_class != PUBLIC else limit, session,
                     operator)
    labels: list[str] = []

    def decorate(handler: Callable) -> Callable:
        def label() -> str:
            if not labels:  # the full rule exists once any subroute block has closed: look it up once
                rule = next(rule for rule in app.url_map.iter_rules() if rule.endpoint == handler.__name__)
                labels.append(_CONVERTER.sub("<", rule.rule))
            return labels[0]

        if spec.tenant:
            @functools.wraps(handler)
            async def guarded(self: Any, request: Any, tenant: str, **values: Any) -> Any:
                request.endpoint_label = label()
                request.request_class = request_class
                call = await self.guard.admit(request, spec, tenant)
                return await handler(self, request, call, **values)

            tagged = guarded
        else:
            @functools.wraps(handler)
            def tagged(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
                request.endpoint_label = label()
                request.request_class = request_class
                if spec.operator:
                    self.authorize(request)
                return handler(self, request, *args, **kwargs)

        tagged.route_spec = spec  # type: ignore[attr-defined]
        app.route(path, methods=methods)(tagged)
        return tagged

    return decorate


def require_json_content_type(request: Any, message: str = "send the request as application/json") -> None:
    """415 unless the request says ``Content-Type: application/json`` (whatever its body)."""
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise ApiError(415, "unsupported_media_type", message)


def read_json_object(request: Any) -> dict[str, Any]:
    """Parse the request body as a JSON object, or raise the right 4xx ``ApiError``."""
    if request.body_too_large:
        raise ApiError(413, "body_too_large", f"request body exceeds {request.max_body_bytes} bytes")
    require_json_content_type(request, "send the body as application/json")
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
