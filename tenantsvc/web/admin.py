"""Admin API under ``/admin/api``: Bearer ``ADMIN_TOKEN`` (constant-time compare), 503 when no token is set."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from klein import Klein

from tenantsvc.services.tenants import TenantService
from tenantsvc.web.errors import ApiError, respond_json
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.web.routing import PUBLIC, READ, WRITE, install_error_handlers, read_json_object, route

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
BREAKER_MODES = ("open", "closed", "auto")


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def idempotency_key(request: Any) -> str | None:
    """The ``Idempotency-Key`` header if present; 400 when it is malformed."""
    raw = request.getHeader(b"idempotency-key")
    if raw is None:
        return None
    text = raw.decode("latin-1")
    if not IDEMPOTENCY_KEY.fullmatch(text):
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1-128 visible ASCII characters")
    return text


class AdminApi:
    """Tenant administration routes; owns its Klein app and its dependencies."""

    app = Klein()
    install_error_handlers(app)

    def __init__(self, tenants: TenantService, admin_token: str | None, breaker: Any = None):
        self._tenants = tenants
        self._breaker = breaker
        self._token_digest = _digest(admin_token.encode("utf-8")) if admin_token else None

    def _authorize(self, request: Any) -> None:
        if self._token_digest is None:
            raise ApiError(503, "admin_disabled", "the admin API is disabled: set ADMIN_TOKEN to enable it")
        header = (request.getHeader(b"authorization") or b"").strip()
        scheme, _, token = header.partition(b" ")
        presented = _digest(token.strip()) if scheme.lower() == b"bearer" else b""
        if not hmac.compare_digest(presented, self._token_digest):
            raise ApiError(401, "unauthorized", "a valid admin bearer token is required",
                           headers={"WWW-Authenticate": 'Bearer realm="tenantsvc-admin"'})

    @route(app, "/admin/api/tenants", methods=["POST"], request_class=WRITE)
    async def create_tenant(self, request: Any) -> bytes:
        """Create a tenant: 201, 409 if the slug exists, 422 for invalid fields."""
        self._authorize(request)
        tenant = await self._tenants.create_tenant(read_json_object(request))
        return respond_json(request, 201, tenant, {"Location": f"/admin/api/tenants/{tenant['slug']}"})

    @route(app, "/admin/api/tenants", methods=["GET"], request_class=READ)
    async def list_tenants(self, request: Any) -> bytes:
        """List every tenant."""
        self._authorize(request)
        return respond_json(request, 200, {"tenants": await self._tenants.list_tenants()})

    @route(app, "/admin/api/tenants/<string:slug>/theme", methods=["GET"], request_class=READ)
    async def get_theme(self, request: Any, slug: str) -> bytes:
        """The tenant's saved theme in camelCase."""
        self._authorize(request)
        theme, from_cache = await self._tenants.get_theme(slug)
        headers = {"Cache-Status": "tenantsvc; hit; detail=db-refused"} if from_cache else None
        return respond_json(request, 200, theme.to_wire(), headers)

    @route(app, "/admin/api/tenants/<string:slug>/theme", methods=["PUT"], request_class=WRITE)
    async def put_theme(self, request: Any, slug: str) -> bytes:
        """Replace the tenant's theme (absent keys take the defaults); 422 with per-field errors."""
        self._authorize(request)
        theme = await self._tenants.save_theme(slug, read_json_object(request))
        return respond_json(request, 200, theme.to_wire())

    @route(app, "/admin/api/tenants/<string:slug>/users/<string:username>/credit", methods=["POST"],
           request_class=WRITE)
    async def credit(self, request: Any, slug: str, username: str) -> bytes:
        """Credit a wallet (ledger row in the same transaction); an Idempotency-Key makes retries safe."""
        self._authorize(request)
        key = idempotency_key(request)
        result = await self._tenants.credit(slug, username, read_json_object(request), key)
        return respond_json(request, 200, {
            "username": username, "amount_cents": result.amount_cents, "balance_cents": result.balance_cents,
            "ledger_id": result.ledger_id, "replayed": result.replayed,
        })

    @route(app, "/admin/api/breaker", methods=["GET"], request_class=PUBLIC)
    def get_breaker(self, request: Any) -> bytes:
        """The DB circuit breaker: state, mode, open reason and last transitions."""
        self._authorize(request)
        return respond_json(request, 200, self._breaker.describe())

    @route(app, "/admin/api/breaker", methods=["POST"], request_class=PUBLIC)
    def set_breaker(self, request: Any) -> bytes:
        """Force the breaker ``open`` or ``closed``, or hand it back to its rules with ``auto``."""
        self._authorize(request)
        payload = read_json_object(request)
        mode = payload.get("mode")
        if set(payload) != {"mode"} or mode not in BREAKER_MODES:
            raise ValidationFailed({"mode": "must be one of " + ", ".join(BREAKER_MODES)})
        self._breaker.set_mode(mode)
        return respond_json(request, 200, self._breaker.describe())
