"""Login: the orchestration behind ``POST /<tenant>/api/auth/login``, rate limits aside (the route declares them).

In order: the ``remember`` flag is checked; a session store that would refuse every call refuses the login
before the password is hashed for nothing; whatever session the client brought is destroyed (rotation: a
fixated id is worthless from here on); the credentials are checked (the same cost and the same answer,
``InvalidCredentials``, for an unknown user and a wrong password); a new session is created. Each outcome is
a security event.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantsvc.core.validation import ValidationFailed
from tenantsvc.services.accounts import AccountService
from tenantsvc.services.errors import InvalidCredentials
from tenantsvc.services.security_events import LOGIN_FAILED, LOGIN_SUCCEEDED, log_security_event
from tenantsvc.services.sessions import SessionService


@dataclass(frozen=True)
class LoggedIn:
    """A successful login: who, the new session id (for the cookie only: never log it) and the cookie's max age."""

    user_id: int
    username: str
    session_id: str
    cookie_max_age_s: int | None  # None: a browser-session cookie (no "remember me")


class LoginService:
    """Logs players in over the accounts and sessions services."""

    def __init__(self, accounts: AccountService, sessions: SessionService):
        self._accounts = accounts
        self._sessions = sessions

    async def login(self, tenant: str, username: object, password: object, remember: object,
                    presented_session_id: object, client: str) -> LoggedIn:
        """Rotate the client's session and start a new one for these credentials, or raise.

        ``ValidationFailed`` for a non-boolean ``remember``, ``SessionStoreUnavailable`` when sessions cannot be
        stored, ``InvalidCredentials`` (after the session the client brought is destroyed all the same).
        """
        if not isinstance(remember, bool):
            raise ValidationFailed({"remember": "must be true or false"})
        self._sessions.ensure_reachable()
        await self._sessions.destroy(presented_session_id)
        user = await self._accounts.authenticate(tenant, username, password)
        if user is None:
            log_security_event(LOGIN_FAILED, tenant, client, username if isinstance(username, str) else "")
            raise InvalidCredentials()
        session_id = await self._sessions.create(tenant, user.user_id, user.username, remember)
        log_security_event(LOGIN_SUCCEEDED, tenant, client, user.username)
        max_age_s = int(self._sessions.policy.idle_ttl(True)) if remember else None
        return LoggedIn(user.user_id, user.username, session_id, max_age_s)
