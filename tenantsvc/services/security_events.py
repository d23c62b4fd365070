"""The security events an operator audits: logins, refused sessions, rate-limited requests.

One eliot message type for all of them, emitted by the login service and the route guard alike.
"""

from __future__ import annotations

from eliot import MessageType, fields

SECURITY_EVENT = MessageType(
    "tenantsvc:security:event",
    fields(event=str, tenant=str, client=str, username=str),
    "Login succeeded or failed, a session presented under another tenant, a request rate limited. "
    "Never carries passwords, session ids or cookies.",
)
LOGIN_SUCCEEDED, LOGIN_FAILED = "login_succeeded", "login_failed"
CROSS_TENANT_SESSION, RATE_LIMITED = "cross_tenant_session", "rate_limited"
MAX_LOGGED_USERNAME = 64


def log_security_event(event: str, tenant: str, client: str, username: str = "") -> None:
    """Log one security event (the username cut to 64 characters: it comes from the client)."""
    SECURITY_EVENT.log(event=event, tenant=tenant, client=client, username=username[:MAX_LOGGED_USERNAME])
