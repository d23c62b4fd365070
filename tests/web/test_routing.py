"""The declarative route decorator: what a route declares is what holds before its handler runs.

A small Klein app declared with ``web.routing.route`` under the tenant ``subroute``, over the real
``TenantRouteGuard`` (in-process limiter and session store on a ``Clock``), driven by ``StubTreq``
with the production request class. Klein is imported inside the fixture (importing it chooses the reactor).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from tenantsvc.adapters.session_store import MemorySessionStore
from tenantsvc.core.rate_limits import RateLimitPolicies
from tenantsvc.core.request_classes import PUBLIC, READ, WRITE
from tenantsvc.core.token_bucket import BucketPolicy
from tenantsvc.services.rate_limiting import LocalRateLimiter, RateLimiters
from tenantsvc.services.sessions import SessionService
from tests.support.web_harness import fired

BASE = "http://routes.test"
TINY = BucketPolicy(capacity=2, refill_per_s=0.001)


class App:
    """The app under test and its parts."""

    def __init__(self) -> None:
        from klein import Klein
        from treq.testing import StubTreq

        from tenantsvc.web.errors import json_bytes
        from tenantsvc.web.request import TenantRequest
        from tenantsvc.web.route_guard import TenantRouteGuard
        from tenantsvc.web.routing import (OPTIONAL_SESSION, SESSION_REQUIRED, TENANT_PREFIX,
                                           install_error_handlers, route)

        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.limiter = LocalRateLimiter(self.clock)
        self.sessions = SessionService(MemorySessionStore(self.clock), self.clock)
        self.calls: list[Any] = []
        guard = TenantRouteGuard(may_exist=lambda slug: slug in ("acme", "beta"), sessions=self.sessions,
                                 limiters=RateLimiters(local=self.limiter, fleet=self.limiter),
                                 policies=RateLimitPolicies({"write": TINY, "write_client": TINY}))
        calls = self.calls

        def seen(request: Any, **extra: Any) -> bytes:
            calls.append(extra)
            return json_bytes({"label": request.endpoint_label, "class": request.request_class,
                               "user_id": request.user_id})

        class Routes:
            app = Klein()
            install_error_handlers(app)

            def __init__(self) -> None:
                self.guard = guard

            with app.subroute(TENANT_PREFIX):
                @route(app, "/things/<string:name>", methods=["POST"], request_class=WRITE, tenant=True,
                       json_body=True, idempotency_key=True, session=SESSION_REQUIRED)
                async def make(self, request: Any, call: Any, name: str) -> bytes:
                    return seen(request, call=call, name=name)

                @route(app, "/peek", methods=["GET"], request_class=READ, tenant=True, session=OPTIONAL_SESSION)
                async def peek(self, request: Any, call: Any) -> bytes:
                    return seen(request, call=call)

                @route(app, "/poke", methods=["POST"], request_class=WRITE, tenant=True)
                async def poke(self, request: Any, call: Any) -> bytes:
                    return seen(request, call=call)

            @route(app, "/plain/<int:number>", methods=["GET"], request_class=PUBLIC)
            def plain(self, request: Any, number: int) -> bytes:
                return seen(request, number=number)

        self.client = StubTreq(Routes().app.resource())
        self.client._agent._serverFactory.requestFactory = TenantRequest

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                content_type: str | None = "application/json") -> tuple[int, Any, Any]:
        """Send one request; (status, JSON body or None, response headers)."""
        all_headers = {name: [value] for name, value in (headers or {}).items()}
        if content_type:
            all_headers["Content-Type"] = [content_type]
        data = json.dumps(body).encode() if body is not None else None
        response = fired(self.client.request(method, BASE + path, headers=all_headers, data=data))
        raw = fired(response.content())
        return response.code, (json.loads(raw) if raw else None), response.headers

    def session(self, tenant: str = "acme", user_id: int = 7) -> str:
        """A live session id of ``user_id`` in ``tenant``."""
        return fired(ensureDeferred(self.sessions.create(tenant, user_id, "alice", False)))


@pytest.fixture
def app() -> App:
    return App()


def test_a_tenant_route_is_labelled_with_its_full_template_and_gets_what_it_declared(app):
    sid = app.session()
    status, body, _ = app.request("POST", "/acme/api/things/widget", body={"size": 3},
                                  headers={"Idempotency-Key": "k-1", "Cookie": f"tsid={sid}"})
    assert status == 200
    assert body == {"label": "/<tenant>/api/things/<name>", "class": "write", "user_id": 7}
    (seen,) = app.calls
    call = seen["call"]
    assert seen["name"] == "widget" and call.tenant == "acme" and call.body == {"size": 3}
    assert call.idempotency_key == "k-1" and call.session.user_id == 7 and call.presented_session_id == sid


def test_a_route_without_tenant_is_only_tagged(app):
    status, body, _ = app.request("GET", "/plain/42", content_type=None)
    assert (status, body) == (200, {"label": "/plain/<number>", "class": "public", "user_id": None})
    assert app.calls == [{"number": 42}]


def test_an_unknown_tenant_is_404_before_anything_else_is_looked_at(app):
    status, body, _ = app.request("POST", "/nosuch/api/things/widget", content_type="text/plain")
    assert (status, body["error"]) == (404, "unknown_tenant")
    assert app.calls == [] and len(app.limiter) == 0  # no bucket created for a tenant that does not exist


@pytest.mark.parametrize("content_type,status,code", [("text/plain", 415, "unsupported_media_type"),
                                                      (None, 415, "unsupported_media_type")])
def test_the_body_is_checked_before_any_token_is_spent(app, content_type, status, code):
    response_status, body, _ = app.request("POST", "/acme/api/things/widget", body={"a": 1},
                                           headers={"Idempotency-Key": "k"}, content_type=content_type)
    assert (response_status, body["error"]) == (status, code)
    assert len(app.limiter) == 0


def test_a_missing_idempotency_key_is_400_before_the_limit(app):
    status, body, _ = app.request("POST", "/acme/api/things/widget", body={"a": 1})
    assert (status, body["error"]) == (400, "idempotency_key_required") and len(app.limiter) == 0


def test_a_body_less_write_must_still_say_json(app):
    status, body, _ = app.request("POST", "/acme/api/poke", content_type="application/x-www-form-urlencoded")
    assert (status, body) == (415, {"error": "unsupported_media_type",
                                    "message": "send the request as application/json"})


def test_the_declared_limit_is_spent_per_request_and_refuses_with_429(app):
    answers = [app.request("POST", "/acme/api/poke") for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    assert answers[0][2].getRawHeaders("X-Rate-Limit-Remaining") == ["1"]
    status, body, headers = answers[2]
    assert body["error"] == "rate_limited" and headers.getRawHeaders("Retry-After")
    assert len(app.calls) == 2  # the refused request never reached its handler
    assert app.request("POST", "/beta/api/poke")[0] == 200  # per tenant


def test_a_required_session_is_401_without_one(app):
    status, body, _ = app.request("POST", "/acme/api/things/w", body={}, headers={"Idempotency-Key": "k"})
    assert (status, body["error"]) == (401, "unauthenticated") and app.calls == []


def test_an_optional_session_of_another_tenant_counts_as_none_and_is_a_security_event(app, eliot_logger):
    sid = app.session(tenant="beta")
    status, body, _ = app.request("GET", "/acme/api/peek", headers={"Cookie": f"tsid={sid}"}, content_type=None)
    assert status == 200 and body["user_id"] is None and app.calls[0]["call"].session is None
    events = [m for m in eliot_logger.messages if m.get("message_type") == "tenantsvc:security:event"]
    assert [(m["event"], m["tenant"]) for m in events] == [("cross_tenant_session", "acme")]


def test_an_optional_session_of_this_tenant_is_resolved(app):
    sid = app.session(user_id=9)
    status, body, _ = app.request("GET", "/acme/api/peek", headers={"Cookie": f"tsid={sid}"}, content_type=None)
    assert (status, body["user_id"]) == (200, 9)


def test_every_player_route_declares_its_tenant_and_every_post_is_a_write():
    from tenantsvc.web.tenant_api import TenantApi

    rules = list(TenantApi.app.url_map.iter_rules())
    assert len(rules) == 8
    for rule in rules:
        spec = getattr(TenantApi, rule.endpoint).route_spec
        assert rule.rule.startswith("/<string:tenant>/api/") and spec.tenant and spec.limit is not None
        assert (spec.request_class == WRITE) == ("POST" in rule.methods), rule.rule


def test_an_operator_route_authorizes_before_its_handler_runs():
    from klein import Klein

    from tenantsvc.web.errors import ApiError
    from tenantsvc.web.routing import route

    class Owner:
        app = Klein()
        ran: list[str] = []

        def authorize(self, request: Any) -> None:
            if request.token != "ok":
                raise ApiError(401, "unauthorized", "no")

        @route(app, "/admin/api/thing", methods=["GET"], request_class=READ, operator=True)
        def thing(self, request: Any) -> str:
            self.ran.append("thing")
            return "done"

    class FakeRequest:
        def __init__(self, token: str) -> None:
            self.token = token

    owner = Owner()
    with pytest.raises(ApiError):
        owner.thing(FakeRequest("bad"))
    assert owner.ran == []
    assert owner.thing(FakeRequest("ok")) == "done" and owner.ran == ["thing"]


def test_every_admin_route_requires_the_operator():
    from tenantsvc.web.admin import AdminApi

    rules = list(AdminApi.app.url_map.iter_rules())
    assert len(rules) == 9
    assert all(getattr(AdminApi, rule.endpoint).route_spec.operator for rule in rules)
