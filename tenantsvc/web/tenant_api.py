"""Player routes under ``/<tenant>/api/…``: register, login, logout, logout-all, ``/me``, odds and bets.

Each route declares what must hold before it runs (``web.routing.route``; applied by ``web.route_guard``):
a known tenant, its body, its rate limit — per client within its tenant, under a tenant-wide ceiling,
per endpoint class, through the fleet-wide limiter; login per (username, client), per client and per
tenant (``core.rate_limits``) — and its session. State-changing routes take only ``application/json`` (a
cross-site form post is refused with 415: the CSRF defence that goes with a SameSite=Lax cookie). Handlers
are parse → one service call → render. The public theme routes are served by the root resource.
"""

from __future__ import annotations

from typing import Any, Callable

from klein import Klein

from tenantsvc.core.http_cache import not_modified, odds_cache_headers
from tenantsvc.core.rate_limits import AUTH, RateLimitPolicies
from tenantsvc.core.request_classes import READ, WRITE
from tenantsvc.services.accounts import AccountService
from tenantsvc.services.betting import BettingService
from tenantsvc.services.login import LoginService
from tenantsvc.services.odds_board import OddsBoard
from tenantsvc.services.rate_limiting import RateLimiters
from tenantsvc.services.sessions import SessionService
from tenantsvc.web.cookies import clear_session_cookie, set_session_cookie
from tenantsvc.web.errors import respond_json
from tenantsvc.web.route_guard import TenantCall, TenantRouteGuard
from tenantsvc.web.routing import (LOGIN_LIMIT, OPTIONAL_SESSION, SESSION_REQUIRED, TENANT_PREFIX,
                                   install_error_handlers, route)


class TenantApi:
    """The player-facing routes of every tenant; owns its Klein app and its dependencies."""

    app = Klein()
    install_error_handlers(app)

    def __init__(
        self,
        *,
        accounts: AccountService,
        sessions: SessionService,
        betting: BettingService,
        odds: OddsBoard,
        limiters: RateLimiters,
        policies: RateLimitPolicies,
        may_exist: Callable[[str], bool],
        secure_cookies: bool,
        trusted_proxy_header: str | None = None,
        login: LoginService | None = None,
    ):
        self._accounts = accounts
        self._sessions = sessions
        self._betting = betting
        self._odds = odds
        self._login = login or LoginService(accounts, sessions)
        self._secure = secure_cookies
        self.guard = TenantRouteGuard(may_exist=may_exist, sessions=sessions, limiters=limiters, policies=policies,
                                      trusted_proxy_header=trusted_proxy_header)

    def _signed_out(self, request: Any, tenant: str) -> bytes:
        """204 with the session cookie cleared."""
        clear_session_cookie(request, tenant, secure=self._secure)
        request.setResponseCode(204)
        return b""

    with app.subroute(TENANT_PREFIX):

        @route(app, "/auth/register", methods=["POST"], request_class=WRITE, tenant=True, json_body=True, limit=AUTH)
        async def register(self, request: Any, call: TenantCall) -> bytes:
            """Create an account: 201, 409 if the username is taken, 422 for an invalid username or password."""
            user = await self._accounts.register(call.tenant, call.body.get("username"), call.body.get("password"))
            return respond_json(request, 201, {"username": user["username"], "balance_cents": user["balance_cents"]})

        @route(app, "/auth/login", methods=["POST"], request_class=WRITE, tenant=True, json_body=True,
               limit=LOGIN_LIMIT)
        async def login(self, request: Any, call: TenantCall) -> bytes:
            """Log in: 200 and a new session cookie; the same 401 for an unknown user and a wrong password."""
            body = call.body
            done = await self._login.login(call.tenant, body.get("username"), body.get("password"),
                                           body.get("remember", False), call.presented_session_id, call.client)
            request.user_id = done.user_id
            set_session_cookie(request, call.tenant, done.session_id, secure=self._secure,
                               max_age_s=done.cookie_max_age_s)
            return respond_json(request, 200, {"username": done.username})

        @route(app, "/auth/logout", methods=["POST"], request_class=WRITE, tenant=True, session=OPTIONAL_SESSION)
        async def logout(self, request: Any, call: TenantCall) -> bytes:
            """End this session (204 even when there was none) and clear the cookie."""
            if call.session is not None:
                await self._sessions.destroy(call.presented_session_id)
            return self._signed_out(request, call.tenant)

        @route(app, "/auth/logout-all", methods=["POST"], request_class=WRITE, tenant=True, session=SESSION_REQUIRED)
        async def logout_all(self, request: Any, call: TenantCall) -> bytes:
            """End every session of the logged-in user, on every device."""
            await self._sessions.destroy_all(call.tenant, call.user_id)
            return self._signed_out(request, call.tenant)

        @route(app, "/me", methods=["GET"], request_class=READ, tenant=True, session=SESSION_REQUIRED)
        async def me(self, request: Any, call: TenantCall) -> bytes:
            """The logged-in player: ``{"username", "balance_cents"}``."""
            return respond_json(request, 200, await self._accounts.profile(call.tenant, call.user_id))

        @route(app, "/public/odds/<string:sport>", methods=["GET"], request_class=READ, tenant=True)
        async def odds(self, request: Any, call: TenantCall, sport: str) -> bytes:
            """Upcoming matches of ``sport`` with their prices; 404 for an unknown sport; ETag/304; short cache."""
            answer = await self._odds.upcoming(sport)
            request.setHeader(b"ETag", answer.etag.encode("ascii"))
            for name, value in odds_cache_headers(self._odds.ttl_s, answer.stale).pairs():
                request.setHeader(name, value)
            if_none_match = request.getHeader(b"if-none-match")
            if not_modified(if_none_match.decode("latin-1") if if_none_match else None, answer.etag):
                request.setResponseCode(304)
                return b""
            request.setHeader(b"Content-Type", b"application/json")
            return answer.body

        @route(app, "/bets", methods=["POST"], request_class=WRITE, tenant=True, json_body=True, idempotency_key=True,
               session=SESSION_REQUIRED)
        async def place_bet(self, request: Any, call: TenantCall) -> bytes:
            """Place a single bet priced by the server: 201 (a replayed Idempotency-Key answers the same bet)."""
            placed = await self._betting.place(call.tenant, call.user_id, call.body, call.required_key)
            headers = {"Location": f"/{call.tenant}/api/bets/{placed.bet['id']}"}
            if placed.replayed:
                headers["Idempotent-Replayed"] = "true"
            return respond_json(request, 201, {"bet": placed.bet, "balance_cents": placed.balance_cents}, headers)

        @route(app, "/bets", methods=["GET"], request_class=READ, tenant=True, session=SESSION_REQUIRED)
        async def list_bets(self, request: Any, call: TenantCall) -> bytes:
            """The logged-in player's bets, newest first (``?limit=1..100&before_id=…``)."""
            bets = await self._betting.list_bets(call.tenant, call.user_id, _query(request, b"limit"),
                                                 _query(request, b"before_id"))
            return respond_json(request, 200, {"bets": bets})


def _query(request: Any, name: bytes) -> str | None:
    """The first value of query parameter ``name`` as text, or None."""
    values = (request.args or {}).get(name)
    return values[0].decode("utf-8", "replace") if values else None
