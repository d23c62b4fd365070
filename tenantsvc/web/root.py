"""The root resource: frames every request (ids, eliot task, metrics, in-flight count) and dispatches it.

Operational endpoints and the public theme are served by plain ``twisted.web`` code here; everything
else goes to the Klein apps (admin, tenant API), which see the request as if they were the root.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from eliot import ActionType, Field, fields, write_failure
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from zope.interface import implementer

from tenantsvc.core.ids import choose_ids
from tenantsvc.core.tenants import is_valid_slug
from tenantsvc.obs.metrics import NO_TENANT, UNKNOWN_TENANT, Metrics
from tenantsvc.web.errors import ApiError, internal_error, render_api_error
from tenantsvc.web.plain import Handler
from tenantsvc.web.public_theme import is_public_theme_path

HTTP_REQUEST = ActionType(
    "tenantsvc:http:request",
    fields(correlation_id=str, request_id=str, tenant=str, method=str, path=str),
    [Field.for_types("status", [int], "HTTP status sent"),
     Field.for_types("user_id", [int, type(None)], "authenticated user, if any")],
    "One HTTP request, from arrival to the last byte sent.",
)
MAX_LOGGED_PATH = 512



def _new_id() -> str:
    return uuid.uuid4().hex


@implementer(IResource)
class RootResource:
    """Dispatches on the first path segment; a leaf, so Twisted does no traversal of its own."""

    isLeaf = True

    def __init__(
        self,
        *,
        clock: Any,
        metrics: Metrics,
        is_known_tenant: Callable[[str], bool],
        operational: dict[bytes, Handler],
        public_theme: Handler,
        admin: IResource,
        tenant_api: IResource,
    ):
        self._clock = clock
        self._metrics = metrics
        self._is_known_tenant = is_known_tenant
        self._operational = operational
        self._public_theme = public_theme
        self._admin = admin
        self._tenant_api = tenant_api
        self.in_flight = 0

    # IResource plumbing: this resource has no children.
    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        """Never called for a leaf; present for the interface."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Children are not supported."""
        raise NotImplementedError("RootResource dispatches itself")

    def render(self, request: Any) -> Any:
        """Frame the request, dispatch it, and record metrics and the log task when it finishes."""
        started = self._clock.seconds()
        correlation_id, request_id = choose_ids(
            _header(request, b"x-correlation-id"), _header(request, b"x-request-id"),
            _header(request, b"traceparent"), _new_id,
        )
        request.correlation_id, request.request_id = correlation_id, request_id
        request.setHeader(b"X-Correlation-ID", correlation_id.encode("ascii"))
        request.setHeader(b"X-Request-ID", request_id.encode("ascii"))
        segments = request.postpath
        tenant_label = self._tenant_label(segments)
        request.tenant_label = tenant_label
        method = request.method.decode("latin-1")
        task = HTTP_REQUEST(
            correlation_id=correlation_id, request_id=request_id, tenant=tenant_label, method=method[:16],
            path=request.path.decode("latin-1")[:MAX_LOGGED_PATH],
        )
        self.in_flight += 1
        request.notifyFinish().addBoth(self._finished, request, task, method, started)
        with task.context():
            try:
                return self._dispatch(request, segments)
            except ApiError as error:
                return render_api_error(request, error)
            except Exception:
                write_failure(Failure())
                return render_api_error(request, internal_error(correlation_id))

    def _tenant_label(self, segments: list[bytes]) -> str:
        if not segments or segments[0] in self._operational or segments[0] == b"admin":
            return NO_TENANT
        slug = segments[0].decode("latin-1")
        return slug if self._is_known_tenant(slug) else UNKNOWN_TENANT

    def _dispatch(self, request: Any, segments: list[bytes]) -> Any:
        first = segments[0] if segments else b""
        operational = self._operational.get(first)
        if operational is not None:
            return operational(request, segments)
        if request.body_too_large:
            raise ApiError(413, "body_too_large", f"request body exceeds {request.max_body_bytes} bytes")
        if first == b"admin":
            return self._admin.render(request)
        if not is_valid_slug(first.decode("latin-1")):
            raise ApiError(404, "not_found", "no such tenant or route")
        if is_public_theme_path(segments):
            return self._public_theme(request, segments)
        return self._tenant_api.render(request)

    def _finished(self, result: object, request: Any, task: Any, method: str, started: float) -> None:
        self.in_flight -= 1
        status = request.code if result is None else 499  # 499: the client went away first
        self._metrics.record_request(method, request.endpoint_label, status, request.tenant_label,
                                     self._clock.seconds() - started)
        with task.context():
            task.addSuccessFields(status=status, user_id=request.user_id)
            task.finish()


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None
