"""The root resource: frames every request (ids, eliot task, metrics, in-flight count) and dispatches it.

Operational endpoints and the public theme are served by plain ``twisted.web`` code here; everything
else goes to the Klein apps (admin, tenant API), which see the request as if they were the root.
"""

from __future__ import annotations

import os
import random as _random
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
    return os.urandom(16).hex()


@implementer(IResource)
class RootResource:
    """Dispatches on the first path segment; a leaf, so Twisted does no traversal of its own.

    Every request is counted in metrics. Every request also gets an eliot task, except successful
    answers on the plain fast paths (public theme, health probes, metrics scrapes), of which only a
    sample of ``access_log_sample_rate`` is logged: at thousands of cache hits a second a log line
    each would cost more than the answer itself. Errors and anything that goes through Klein are
    always logged.
    """

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
        access_log_sample_rate: float = 1.0,
        random: Callable[[], float] = _random.random,
    ):
        self._clock = clock
        self._metrics = metrics
        self._is_known_tenant = is_known_tenant
        self._operational = operational
        self._public_theme = public_theme
        self._admin = admin
        self._tenant_api = tenant_api
        self._sample_rate = access_log_sample_rate
        self._random = random
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
        request.started_at = self._clock.seconds()
        correlation_id, request_id = choose_ids(
            _header(request, b"x-correlation-id"), _header(request, b"x-request-id"),
            _header(request, b"traceparent"), _new_id,
        )
        request.correlation_id, request.request_id = correlation_id, request_id
        request.setHeader(b"X-Correlation-ID", correlation_id.encode("ascii"))
        request.setHeader(b"X-Request-ID", request_id.encode("ascii"))
        segments = request.postpath
        first = segments[0] if segments else b""
        fast_path = first in self._operational or is_public_theme_path(segments)
        request.tenant_label = self._tenant_label(first, fast_path)
        self.in_flight += 1
        request.on_finished = self._finished
        if not fast_path or self._random() < self._sample_rate:
            task = self._start_task(request)
            with task.context():
                return self._render_safely(request, segments, first)
        return self._render_safely(request, segments, first)

    def _render_safely(self, request: Any, segments: list[bytes], first: bytes) -> Any:
        try:
            return self._dispatch(request, segments, first)
        except ApiError as error:
            return render_api_error(request, error)
        except Exception:
            failure = Failure()
            task = request.log_task or self._start_task(request)
            with task.context():
                write_failure(failure)
            return render_api_error(request, internal_error(request.correlation_id))

    def _start_task(self, request: Any) -> Any:
        task = HTTP_REQUEST(
            correlation_id=request.correlation_id, request_id=request.request_id, tenant=request.tenant_label,
            method=request.method.decode("latin-1")[:16], path=request.path.decode("latin-1")[:MAX_LOGGED_PATH],
        )
        request.log_task = task
        return task

    def _tenant_label(self, first: bytes, fast_path: bool) -> str:
        if not first or first == b"admin" or (fast_path and first in self._operational):
            return NO_TENANT
        slug = first.decode("latin-1")
        return slug if self._is_known_tenant(slug) else UNKNOWN_TENANT

    def _dispatch(self, request: Any, segments: list[bytes], first: bytes) -> Any:
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

    def _finished(self, request: Any, completed: bool) -> None:
        self.in_flight -= 1
        status = request.code if completed else 499  # 499: the client went away first
        self._metrics.record_request(request.method.decode("latin-1"), request.endpoint_label, status,
                                     request.tenant_label, self._clock.seconds() - request.started_at)
        task = request.log_task
        if task is None:
            if status < 500:
                return  # an unsampled fast-path success
            task = self._start_task(request)
        with task.context():
            task.addSuccessFields(status=status, user_id=request.user_id)
            task.finish()


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None
