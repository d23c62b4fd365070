"""Player routes under ``/<tenant>/api/…``: register, login, logout, logout-all, ``/me``, odds and bets.

Every route is rate limited per client within its tenant, under a tenant-wide ceiling, per endpoint class,
through the fleet-wide limiter (Redis, with an in-process fallback), both levels in one atomic check; login
is limited per (username, client), per client and per tenant (``core.rate_limits``). State-changing
routes take only ``application/json`` (a cross-site form post is refused with 415: the CSRF defence
that goes with a SameSite=Lax cookie). The public theme routes are served by the root resource.
"""

from __future__ import annotations

from typing import Any, Callable

from eliot import MessageType, fields
from klein import Klein

from tenantsvc.core.http_cache import not_modified
from tenantsvc.core.rate_limits import AUTH, READ, WRITE, RateLimitPolicies, RateLimitPolicy, bucket_keys
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.services.accounts import AccountService
from tenantsvc.services.betting import BettingService
from tenantsvc.services.odds_board import OddsBoard
from tenantsvc.services.rate_limiting import RateLimiters
from tenantsvc.services.sessions import CrossTenantSession, Session, SessionService
from tenantsvc.web.cookies import clear_session_cookie, session_cookie_value, set_session_cookie
from tenantsvc.web.errors import ApiError, respond_json
from tenantsvc.web.limits import apply_headers, too_many_requests
from tenantsvc.web.routing import READ as READ_ROUTE
from tenantsvc.web.routing import WRITE as WRITE_ROUTE
from tenantsvc.web.routing import idempotency_key, install_error_handlers, read_json_object, route

SECURITY_EVENT = MessageType(
    "tenantsvc:security:event",
    fields(event=str, tenant=str, client=str, username=str),
    "Login succeeded or failed, a session presented under another tenant, a request rate limited. "
    "Never carries passwords, session ids or cookies.",
)
UNAUTHENTICATED = ApiError(401, "unauthenticated", "log in first")
IDEMPOTENCY_KEY_REQUIRED = ApiError(400, "idempotency_key_required",
                                    "send an Idempotency-Key header (1-128 visible ASCII characters) with every bet")


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
    ):
        self._accounts = accounts
        self._sessions = sessions
        self._betting = betting
        self._odds = odds
        self._limiters = limiters
        self._policies = policies
        self._may_exist = may_exist
        self._secure = secure_cookies
        self._proxy_header = trusted_proxy_header.lower().encode("ascii") if trusted_proxy_header else None

    # -- helpers ------------------------------------------------------------------------------------

    def _known_tenant(self, tenant: str) -> None:
        if not self._may_exist(tenant):
            raise ApiError(404, "unknown_tenant", "no such tenant")

    def _client(self, request: Any) -> str:
        """The client address: the socket peer, or the configured trusted proxy header's value."""
        if self._proxy_header is not None:
            value = request.getHeader(self._proxy_header)
            if value:
                # X-Forwarded-For: the last entry is the one our own (trusted) proxy appended.
                return value.decode("latin-1").split(",")[-1].strip()[:64]
        return str(getattr(request.getClientAddress(), "host", "unknown"))

    async def _limit(self, request: Any, tenant: str, endpoint_class: str) -> None:
        """Spend from this client's bucket of ``endpoint_class`` and the tenant's ceiling, or answer 429."""
        await self._spend(request, tenant, self._policies[endpoint_class])

    async def _spend(self, request: Any, tenant: str, policy: RateLimitPolicy, username: str | None = None) -> None:
        """One atomic check of every bucket of ``policy`` for this request; 429 saying which level refused."""
        keys = bucket_keys(tenant, policy, self._client(request), username)
        decision = await self._limiters.fleet.hit(keys, policy)
        apply_headers(request, policy, decision)
        if not decision.allowed:
            self._security(request, "rate_limited", tenant, username or "")
            raise too_many_requests(decision, policy)

    def _security(self, request: Any, event: str, tenant: str, username: str = "") -> None:
        SECURITY_EVENT.log(event=event, tenant=tenant, client=self._client(request), username=username[:64])

    async def _session(self, request: Any, tenant: str) -> Session:
        """The caller's live session in ``tenant``, or 401 (a session of another tenant is a security event)."""
        try:
            session = await self._sessions.resolve(session_cookie_value(request), tenant)
        except CrossTenantSession:
            self._security(request, "cross_tenant_session", tenant)
            raise UNAUTHENTICATED from None
        if session is None:
            raise UNAUTHENTICATED
        request.user_id = session.user_id
        return session

    async def _body_less_write(self, request: Any, tenant: str) -> None:
        """Checks of a state-changing route without a body: known tenant, JSON content type, write limit.

        The content type is demanded even without a body: a cross-site form post cannot send it (CSRF).
        """
        self._known_tenant(tenant)
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            raise ApiError(415, "unsupported_media_type", "send the request as application/json")
        await self._limit(request, tenant, WRITE)

    def _signed_out(self, request: Any, tenant: str) -> bytes:
        """204 with the session cookie cleared."""
        clear_session_cookie(request, tenant, secure=self._secure)
        request.setResponseCode(204)
        return b""

    # -- routes ---------------------------------------------------------------------------------------

    @route(app, "/<string:tenant>/api/auth/register", methods=["POST"], request_class=WRITE_ROUTE)
    async def register(self, request: Any, tenant: str) -> bytes:
        """Create an account: 201, 409 if the username is taken, 422 for an invalid username or password."""
        self._known_tenant(tenant)
        payload = read_json_object(request)
        await self._limit(request, tenant, AUTH)
        user = await self._accounts.register(tenant, payload.get("username"), payload.get("password"))
        return respond_json(request, 201, {"username": user["username"], "balance_cents": user["balance_cents"]})

    @route(app, "/<string:tenant>/api/auth/login", methods=["POST"], request_class=WRITE_ROUTE)
    async def login(self, request: Any, tenant: str) -> bytes:
        """Log in: 200 and a new session cookie; the same 401 for an unknown user and a wrong password."""
        self._known_tenant(tenant)
        payload = read_json_object(request)
        remember = payload.get("remember", False)
        if not isinstance(remember, bool):
            raise ValidationFailed({"remember": "must be true or false"})
        username = payload.get("username")
        if isinstance(username, str):  # per (username, client), per client and per tenant, in one check
            await self._spend(request, tenant, self._policies.login, username)
        else:  # refused below (401) all the same; still counted against this client
            await self._limit(request, tenant, AUTH)
        self._sessions.ensure_reachable()  # a session could not be stored: do not hash the password for nothing
        await self._sessions.destroy(session_cookie_value(request))  # whatever the client brought is now worthless
        user = await self._accounts.authenticate(tenant, username, payload.get("password"))
        if user is None:
            self._security(request, "login_failed", tenant, username if isinstance(username, str) else "")
            raise ApiError(401, "invalid_credentials", "wrong username or password")
        session_id = await self._sessions.create(tenant, user.user_id, user.username, remember)
        request.user_id = user.user_id
        set_session_cookie(request, tenant, session_id, secure=self._secure,
                           max_age_s=int(self._sessions.policy.idle_ttl(True)) if remember else None)
        self._security(request, "login_succeeded", tenant, user.username)
        return respond_json(request, 200, {"username": user.username})

    @route(app, "/<string:tenant>/api/auth/logout", methods=["POST"], request_class=WRITE_ROUTE)
    async def logout(self, request: Any, tenant: str) -> bytes:
        """End this session (204 even when there was none) and clear the cookie."""
        await self._body_less_write(request, tenant)
        try:
            session = await self._sessions.resolve(session_cookie_value(request), tenant)
        except CrossTenantSession:
            self._security(request, "cross_tenant_session", tenant)
            session = None
        if session is not None:
            await self._sessions.destroy(session_cookie_value(request))
        return self._signed_out(request, tenant)

    @route(app, "/<string:tenant>/api/auth/logout-all", methods=["POST"], request_class=WRITE_ROUTE)
    async def logout_all(self, request: Any, tenant: str) -> bytes:
        """End every session of the logged-in user, on every device."""
        await self._body_less_write(request, tenant)
        session = await self._session(request, tenant)
        await self._sessions.destroy_all(tenant, session.user_id)
        return self._signed_out(request, tenant)

    @route(app, "/<string:tenant>/api/me", methods=["GET"], request_class=READ_ROUTE)
    async def me(self, request: Any, tenant: str) -> bytes:
        """The logged-in player: ``{"username", "balance_cents"}``."""
        self._known_tenant(tenant)
        await self._limit(request, tenant, READ)
        session = await self._session(request, tenant)
        return respond_json(request, 200, await self._accounts.profile(tenant, session.user_id))

    @route(app, "/<string:tenant>/api/public/odds/<string:sport>", methods=["GET"], request_class=READ_ROUTE)
    async def odds(self, request: Any, tenant: str, sport: str) -> bytes:
        """Upcoming matches of ``sport`` with their prices; 404 for an unknown sport; ETag/304; short cache."""
        self._known_tenant(tenant)
        await self._limit(request, tenant, READ)
        answer = await self._odds.upcoming(sport)
        headers = {b"ETag": answer.etag, b"Cache-Control": f"public, max-age={int(self._odds.ttl_s)}"}
        if answer.stale:
            headers[b"Cache-Status"] = "tenantsvc; hit; detail=db-refused"
        for name, value in headers.items():
            request.setHeader(name, value.encode("latin-1"))
        if_none_match = request.getHeader(b"if-none-match")
        if not_modified(if_none_match.decode("latin-1") if if_none_match else None, answer.etag):
            request.setResponseCode(304)
            return b""
        request.setHeader(b"Content-Type", b"application/json")
        return answer.body

    @route(app, "/<string:tenant>/api/bets", methods=["POST"], request_class=WRITE_ROUTE)
    async def place_bet(self, request: Any, tenant: str) -> bytes:
        """Place a single bet priced by the server: 201 (a replayed Idempotency-Key answers the same bet)."""
        self._known_tenant(tenant)
        payload = read_json_object(request)
        key = idempotency_key(request)
        if key is None:
            raise IDEMPOTENCY_KEY_REQUIRED
        await self._limit(request, tenant, WRITE)
        session = await self._session(request, tenant)
        placed = await self._betting.place(tenant, session.user_id, payload, key)
        headers = {"Location": f"/{tenant}/api/bets/{placed.bet['id']}"}
        if placed.replayed:
            headers["Idempotent-Replayed"] = "true"
        return respond_json(request, 201, {"bet": placed.bet, "balance_cents": placed.balance_cents}, headers)

    @route(app, "/<string:tenant>/api/bets", methods=["GET"], request_class=READ_ROUTE)
    async def list_bets(self, request: Any, tenant: str) -> bytes:
        """The logged-in player's bets, newest first (``?limit=1..100&before_id=…``)."""
        self._known_tenant(tenant)
        await self._limit(request, tenant, READ)
        session = await self._session(request, tenant)
        bets = await self._betting.list_bets(tenant, session.user_id, _query(request, b"limit"),
                                             _query(request, b"before_id"))
        return respond_json(request, 200, {"bets": bets})


def _query(request: Any, name: bytes) -> str | None:
    """The first value of query parameter ``name`` as text, or None."""
    values = (request.args or {}).get(name)
    return values[0].decode("utf-8", "replace") if values else None
