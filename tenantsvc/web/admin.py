"""Admin API under ``/admin/api``: Bearer ``ADMIN_TOKEN`` (constant-time compare), 503 when no token is set."""

from __future__ import annotations

from typing import Any

from klein import Klein

from tenantsvc.core.http_cache import HIT_DB_REFUSED
from tenantsvc.services.betting import BettingService
from tenantsvc.services.tenants import TenantService
from tenantsvc.web.bearer import BearerToken
from tenantsvc.web.errors import ApiError, respond_json
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.web.routing import (PUBLIC, READ, WRITE, idempotency_key, install_error_handlers, read_json_object,
                                   route)

BREAKER_MODES = ("open", "closed", "auto")
BET_STATUSES = ("review", "pending", "won", "lost", "void")


class AdminApi:
    """Tenant administration routes; owns its Klein app and its dependencies."""

    app = Klein()
    install_error_handlers(app)

    def __init__(self, tenants: TenantService, admin_token: str | None, breaker: Any = None,
                 betting: BettingService | None = None):
        self._tenants = tenants
        self._betting = betting
        self._breaker = breaker
        self._token = (BearerToken(admin_token, realm="tenantsvc-admin", needed_for="admin")
                       if admin_token else None)

    def authorize(self, request: Any) -> None:
        """Every admin route's first step (``operator=True``): 503 without ``ADMIN_TOKEN``, 401 without it."""
        if self._token is None:
            raise ApiError(503, "admin_disabled", "the admin API is disabled: set ADMIN_TOKEN to enable it")
        self._token.check(request)

    @route(app, "/admin/api/tenants", methods=["POST"], request_class=WRITE, operator=True)
    async def create_tenant(self, request: Any) -> bytes:
        """Create a tenant: 201, 409 if the slug exists, 422 for invalid fields."""
        tenant = await self._tenants.create_tenant(read_json_object(request))
        return respond_json(request, 201, tenant, {"Location": f"/admin/api/tenants/{tenant['slug']}"})

    @route(app, "/admin/api/tenants", methods=["GET"], request_class=READ, operator=True)
    async def list_tenants(self, request: Any) -> bytes:
        """List every tenant."""
        return respond_json(request, 200, {"tenants": await self._tenants.list_tenants()})

    @route(app, "/admin/api/tenants/<string:slug>/theme", methods=["GET"], request_class=READ, operator=True)
    async def get_theme(self, request: Any, slug: str) -> bytes:
        """The tenant's saved theme in camelCase."""
        theme, from_cache = await self._tenants.get_theme(slug)
        headers = {"Cache-Status": HIT_DB_REFUSED} if from_cache else None
        return respond_json(request, 200, theme.to_wire(), headers)

    @route(app, "/admin/api/tenants/<string:slug>/theme", methods=["PUT"], request_class=WRITE, operator=True)
    async def put_theme(self, request: Any, slug: str) -> bytes:
        """Replace the tenant's theme (absent keys take the defaults); 422 with per-field errors."""
        theme = await self._tenants.save_theme(slug, read_json_object(request))
        return respond_json(request, 200, theme.to_wire())

    @route(app, "/admin/api/tenants/<string:slug>/users/<string:username>/credit", methods=["POST"],
           request_class=WRITE, operator=True)
    async def credit(self, request: Any, slug: str, username: str) -> bytes:
        """Credit a wallet (ledger row in the same transaction); an Idempotency-Key makes retries safe."""
        key = idempotency_key(request)
        result = await self._tenants.credit(slug, username, read_json_object(request), key)
        return respond_json(request, 200, {
            "username": username, "amount_cents": result.amount_cents, "balance_cents": result.balance_cents,
            "ledger_id": result.ledger_id, "replayed": result.replayed,
        })

    def _bets(self) -> BettingService:
        if self._betting is None:
            raise ApiError(503, "betting_unavailable", "betting is not configured in this process")
        return self._betting

    @route(app, "/admin/api/tenants/<string:slug>/bets", methods=["GET"], request_class=READ, operator=True)
    async def list_bets(self, request: Any, slug: str) -> bytes:
        """The tenant's bets by status (``?status=review`` lists the bets waiting for a human; default review)."""
        values = request.args.get(b"status") or [b"review"]
        status = values[0].decode("utf-8", "replace")
        if status not in BET_STATUSES:
            raise ValidationFailed({"status": "must be one of " + ", ".join(BET_STATUSES)})
        return respond_json(request, 200, {"status": status, "bets": await self._bets().tenant_bets(slug, status)})

    @route(app, "/admin/api/tenants/<string:slug>/bets/<int:bet_id>/settle", methods=["POST"], request_class=WRITE, operator=True)
    async def settle_bet(self, request: Any, slug: str, bet_id: int) -> bytes:
        """Settle one of the tenant's pending bets ``{"outcome": "won|lost|void", "reason"}``, exactly once."""
        settlement = await self._bets().settle_by_operator(slug, bet_id, read_json_object(request))
        return respond_json(request, 200, {"bet_id": bet_id, "outcome": settlement.outcome,
                                           "credited_cents": settlement.credited_cents})

    @route(app, "/admin/api/breaker", methods=["GET"], request_class=PUBLIC, operator=True)
    def get_breaker(self, request: Any) -> bytes:
        """The DB circuit breaker: state, mode, open reason and last transitions."""
        return respond_json(request, 200, self._breaker.describe())

    @route(app, "/admin/api/breaker", methods=["POST"], request_class=PUBLIC, operator=True)
    def set_breaker(self, request: Any) -> bytes:
        """Force the breaker ``open`` or ``closed``, or hand it back to its rules with ``auto``."""
        payload = read_json_object(request)
        mode = payload.get("mode")
        if set(payload) != {"mode"} or mode not in BREAKER_MODES:
            raise ValidationFailed({"mode": "must be one of " + ", ".join(BREAKER_MODES)})
        self._breaker.set_mode(mode)
        return respond_json(request, 200, self._breaker.describe())
