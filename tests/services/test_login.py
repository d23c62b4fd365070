"""LoginService: the rotation and credential check behind the login route, over the in-process session store."""

from __future__ import annotations

from typing import Any

import pytest
from eliot import MemoryLogger
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from tenantsvc.adapters.session_store import MemorySessionStore
from tenantsvc.core.validation import ValidationFailed
from tenantsvc.services.accounts import AuthenticatedUser
from tenantsvc.services.errors import InvalidCredentials, SessionStoreUnavailable
from tenantsvc.services.login import LoginService
from tenantsvc.services.sessions import SessionService
from tests.support.logs import memory_logger
from tests.support.web_harness import fired


class Accounts:
    """Knows alice/secret-password in acme; records every check."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, Any]] = []

    async def authenticate(self, tenant: str, username: object, password: object) -> AuthenticatedUser | None:
        self.checked.append((tenant, username))
        ok = (tenant, username, password) == ("acme", "alice", "secret-password")
        return AuthenticatedUser(7, "alice") if ok else None


class Unreachable(MemorySessionStore):
    """A store whose breaker is open."""

    def unavailable(self) -> Any:
        return SessionStoreUnavailable(3)


@pytest.fixture
def logger():
    with memory_logger() as captured:
        yield captured


def parts(store_class: type = MemorySessionStore) -> tuple[LoginService, SessionService, Accounts]:
    clock = Clock()
    clock.advance(1_000_000)
    sessions = SessionService(store_class(clock), clock)
    accounts = Accounts()
    return LoginService(accounts, sessions), sessions, accounts  # type: ignore[arg-type]


def login(service: LoginService, password: str = "secret-password", remember: object = False,
          presented: str | None = None) -> Any:
    return fired(ensureDeferred(service.login("acme", "alice", password, remember, presented, "10.0.0.1")))


def events(logger: MemoryLogger) -> list[str]:
    return [m["event"] for m in logger.messages if m.get("message_type") == "tenantsvc:security:event"]


def test_a_login_starts_a_session_and_is_a_security_event(logger):
    service, sessions, _ = parts()
    done = login(service)
    assert (done.user_id, done.username, done.cookie_max_age_s) == (7, "alice", None)
    assert fired(ensureDeferred(sessions.resolve(done.session_id, "acme"))).user_id == 7
    assert events(logger) == ["login_succeeded"]


def test_remember_me_gives_the_cookie_the_long_idle_ttl(logger):
    service, sessions, _ = parts()
    assert login(service, remember=True).cookie_max_age_s == int(sessions.policy.idle_ttl(True))


def test_the_session_the_client_brought_is_destroyed_even_when_the_password_is_wrong(logger):
    service, sessions, _ = parts()
    fixated = fired(ensureDeferred(sessions.create("acme", 7, "alice", False)))
    with pytest.raises(InvalidCredentials):
        login(service, password="wrong-password", presented=fixated)
    assert fired(ensureDeferred(sessions.resolve(fixated, "acme"))) is None
    assert events(logger) == ["login_failed"]


def test_a_non_boolean_remember_is_refused_before_any_password_check(logger):
    service, _, accounts = parts()
    with pytest.raises(ValidationFailed):
        login(service, remember="yes")
    assert accounts.checked == []


def test_an_unreachable_store_refuses_before_the_password_is_checked(logger):
    service, _, accounts = parts(Unreachable)
    with pytest.raises(SessionStoreUnavailable):
        login(service)
    assert accounts.checked == []
