"""The checks a player route declares (``web.routing.RouteSpec``), applied in one place before its handler runs.

In order, each failing with its own 4xx: the tenant is known (404); the JSON body parses, or a body-less
write says it is JSON (413/415/400); the ``Idempotency-Key`` is there and well-formed (400); the request
spends from its rate-limit stack — this client's bucket under the tenant-wide ceiling, one atomic check
through the fleet-wide limiter (Redis, with an in-process fallback) — or gets 429, which is a security
event; the caller's session is resolved under this tenant (401 when one is required; a session of another
tenant is a security event and counts as none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tenantsvc.core.rate_limits import AUTH, RateLimitPolicies, RateLimitPolicy, bucket_keys
from tenantsvc.core.request_classes import WRITE
from tenantsvc.services.rate_limiting import RateLimiters
from tenantsvc.services.security_events import CROSS_TENANT_SESSION, RATE_LIMITED, log_security_event
from tenantsvc.services.sessions import CrossTenantSession, Session, SessionService
from tenantsvc.web.cookies import session_cookie_value
from tenantsvc.web.errors import ApiError
from tenantsvc.web.limits import apply_headers, too_many_requests
from tenantsvc.web.routing import (LOGIN_LIMIT, NO_SESSION, SESSION_REQUIRED, RouteSpec, idempotency_key,
                                   read_json_object, require_json_content_type)

UNKNOWN_TENANT = ApiError(404, "unknown_tenant", "no such tenant")
UNAUTHENTICATED = ApiError(401, "unauthenticated", "log in first")
IDEMPOTENCY_KEY_REQUIRED = ApiError(400, "idempotency_key_required",
                                    "send an Idempotency-Key header (1-128 visible ASCII characters) with every bet")


@dataclass(frozen=True)
class TenantCall:
    """What a guarded handler gets: the tenant, the client address and whatever its route declared."""

    tenant: str
    client: str
    presented_session_id: str | None  # the session cookie's raw value (never log it)
    body: dict[str, Any]  # the JSON object, or {} for a route without a body
    idempotency_key: str | None = None
    session: Session | None = None

    @property
    def user_id(self) -> int:
        """The session's user (for routes that declare ``SESSION_REQUIRED``, where there always is one)."""
        assert self.session is not None, "the route does not require a session"
        return self.session.user_id

    @property
    def required_key(self) -> str:
        """The Idempotency-Key (for routes that declare ``idempotency_key``, where there always is one)."""
        assert self.idempotency_key is not None, "the route does not take an Idempotency-Key"
        return self.idempotency_key


class TenantRouteGuard:
    """Applies a ``RouteSpec`` to a request: tenant, body, idempotency key, rate limit and session."""

    def __init__(self, *, may_exist: Callable[[str], bool], sessions: SessionService, limiters: RateLimiters,
                 policies: RateLimitPolicies, trusted_proxy_header: str | None = None):
        self._may_exist = may_exist
        self._sessions = sessions
        self._limiters = limiters
        self._policies = policies
        self._proxy_header = trusted_proxy_header.lower().encode("ascii") if trusted_proxy_header else None

    async def admit(self, request: Any, spec: RouteSpec, tenant: str) -> TenantCall:
        """Check everything ``spec`` declares, in the order of the module docstring; the handler's call."""
        if not self._may_exist(tenant):
            raise UNKNOWN_TENANT
        if spec.json_body:
            body = read_json_object(request)
        else:
            body = {}
            if spec.request_class == WRITE:
                require_json_content_type(request)
        key = None
        if spec.idempotency_key:
            key = idempotency_key(request)
            if key is None:
                raise IDEMPOTENCY_KEY_REQUIRED
        client = self.client(request)
        if spec.limit is not None:
            await self._spend(request, tenant, client, *self._policy(spec.limit, body))
        presented = session_cookie_value(request)
        session = None
        if spec.session != NO_SESSION:
            session = await self._session(request, tenant, client, presented, spec.session == SESSION_REQUIRED)
        return TenantCall(tenant, client, presented, body, key, session)

    def client(self, request: Any) -> str:
        """The client address: the socket peer, or the configured trusted proxy header's value."""
        if self._proxy_header is not None:
            value = request.getHeader(self._proxy_header)
            if value:
                # X-Forwarded-For: the last entry is the one our own (trusted) proxy appended.
                return value.decode("latin-1").split(",")[-1].strip()[:64]
        return str(getattr(request.getClientAddress(), "host", "unknown"))

    def _policy(self, limit: str, body: dict[str, Any]) -> tuple[RateLimitPolicy, str | None]:
        """The policy and username of a route's limit: login is keyed by the body's username when it has one
        (a login without one is refused all the same, and still counted against this client)."""
        if limit == LOGIN_LIMIT:
            username = body.get("username")
            return (self._policies.login, username) if isinstance(username, str) else (self._policies[AUTH], None)
        return self._policies[limit], None

    async def _spend(self, request: Any, tenant: str, client: str, policy: RateLimitPolicy,
                     username: str | None) -> None:
        """One atomic check of every bucket of ``policy`` for this request; 429 saying which level refused."""
        decision = await self._limiters.fleet.hit(bucket_keys(tenant, policy, client, username), policy)
        apply_headers(request, policy, decision)
        if not decision.allowed:
            log_security_event(RATE_LIMITED, tenant, client, username or "")
            raise too_many_requests(decision, policy)

    async def _session(self, request: Any, tenant: str, client: str, presented: str | None,
                       required: bool) -> Session | None:
        """The caller's live session in ``tenant``; 401 when ``required`` and there is none."""
        try:
            session = await self._sessions.resolve(presented, tenant)
        except CrossTenantSession:
            log_security_event(CROSS_TENANT_SESSION, tenant, client)
            session = None
        if session is None:
            if required:
                raise UNAUTHENTICATED
            return None
        request.user_id = session.user_id
        return session
