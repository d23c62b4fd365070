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
from tenantsvc.obs.metrics import KNOWN_METHODS, NO_TENANT, UNKNOWN_TENANT, Metrics
from tenantsvc.web.errors import ApiError, internal_error, render_api_error
from tenantsvc.web.plain import Handler
from tenantsvc.web.public_theme import is_public_theme_path
from tenantsvc.web.request import canonical_header, has_none_of, request_header, set_response_headers

HTTP_REQUEST = ActionType(
    "tenantsvc:http:request",
    fields(correlation_id=str, request_id=str, tenant=str, method=str, path=str),
    [Field.for_types("status", [int], "HTTP status sent"),
     Field.for_types("user_id", [int, type(None)], "authenticated user, if any"),
     Field.for_types("duration_ms", [float], "from arrival to the last byte (or the client leaving)")],
    "One HTTP request, from arrival to the last byte sent.",
)
MAX_LOGGED_PATH = 512



class RandomIds:
    """New ids: 32 hex digits (128 bits from ``os.urandom``) each, drawn ``batch`` at a time.

    Every request without usable inbound ids needs two; one system call per ``batch`` ids instead of
    one per id. The bytes are the same CSPRNG output as before.
    """

    def __init__(self, batch: int = 64):
        self._batch = batch
        self._ready: list[str] = []

    def __call__(self) -> str:
        """The next id."""
        ready = self._ready
        if not ready:
            digits = os.urandom(16 * self._batch).hex()
            ready.extend(digits[start:start + 32] for start in range(0, len(digits), 32))
        return ready.pop()

    def forget(self) -> None:
        """Drop the ids drawn but not handed out (in a forked child, so it never repeats its parent's)."""
        self._ready.clear()


new_id = RandomIds()
os.register_at_fork(after_in_child=new_id.forget)
X_CORRELATION_ID, X_REQUEST_ID, TRACEPARENT = (
    canonical_header(name) for name in (b"X-Correlation-ID", b"X-Request-ID", b"traceparent"))
_INBOUND_ID_HEADERS = (X_CORRELATION_ID, X_REQUEST_ID, TRACEPARENT)
_METHOD_NAMES = {name.encode("ascii"): name for name in KNOWN_METHODS}  # skips a decode per request


@implementer(IResource)
class RootResource:
    """Dispatches on the first path segment; a leaf, so Twisted does no traversal of its own.

    Every request is counted in metrics. Every request also gets an eliot task, except successful
    answers on the plain fast paths (public theme, health probes, metrics scrapes), of which only a
    sample of ``access_log_sample_rate`` is logged: at thousands of cache hits a second a log line
    each would cost more than the answer itself. Always logged, whatever the sampling: anything that
    goes through Klein; a request that brought its own ``X-Correlation-ID``, ``X-Request-ID`` or
    ``traceparent`` (someone means to look it up); any answer other than 2xx and 304 (a 304 is the
    conditional form of a 200, as frequent on the theme path); and any request slower than
    ``access_log_slow_s``. The last two are only known at the end, so their task starts then (with the
    request's ``duration_ms``). Each rule is a comparison or two on the hot path, no allocation.
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
        admin: Any,  # IResource providers (zope interfaces do not type-check as classes)
        tenant_api: Any,
        access_log_sample_rate: float = 1.0,
        access_log_slow_s: float = 0.1,
        random: Callable[[], float] = _random.random,
        new_id: Callable[[], str] = new_id,
    ):
        self._clock = clock
        self._metrics = metrics
        self._is_known_tenant = is_known_tenant
        self._operational = operational
        self._public_theme = public_theme
        self._admin = admin
        self._tenant_api = tenant_api
        self._sample_rate = access_log_sample_rate
        self._slow_s = access_log_slow_s
        self._random = random
        self._new_id = new_id
        self.in_flight = 0

    # IResource plumbing: this resource has no children.
    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        """Never called for a leaf; present for the interface."""
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """Children are not supported."""
        raise NotImplementedError("RootResource dispatches itself")

    def render(self, request: Any) -> Any:
        """Frame the request, dispatch it, and record metrics and the log task when it finishes."""
        request.started_at = self._clock.seconds()
        correlation_id, request_id, traced = self._choose_ids(request)
        request.correlation_id, request.request_id = correlation_id, request_id
        # Both ids are [A-Za-z0-9._-] (checked by choose_ids), so safe to set without twisted's checks.
        set_response_headers(request, ((X_CORRELATION_ID, correlation_id.encode("ascii")),
                                       (X_REQUEST_ID, request_id.encode("ascii"))))
        segments = request.postpath
        first = segments[0] if segments else b""
        theme = is_public_theme_path(segments)
        fast_path = theme or first in self._operational
        slug = first.decode("latin-1")
        request.tenant_label = self._tenant_label(first, slug, fast_path)
        self.in_flight += 1
        request.on_finished = self._finished
        if not fast_path or traced or self._random() < self._sample_rate:
            task = self._start_task(request)
            with task.context():
                return self._render_safely(request, segments, first, slug, theme)
        return self._render_safely(request, segments, first, slug, theme)

    def _choose_ids(self, request: Any) -> tuple[str, str, bool]:
        """The correlation and request ids, and whether the client sent any id of its own (always logged)."""
        if has_none_of(request, _INBOUND_ID_HEADERS):  # most requests: two new ids, no parsing
            return self._new_id(), self._new_id(), False
        inbound = (request_header(request, X_CORRELATION_ID), request_header(request, X_REQUEST_ID),
                   request_header(request, TRACEPARENT))
        correlation, request_id_header, traceparent = (None if value is None else value.decode("latin-1")
                                                       for value in inbound)
        correlation_id, request_id = choose_ids(correlation, request_id_header, traceparent, self._new_id)
        return correlation_id, request_id, True

    def _render_safely(self, request: Any, segments: list[bytes], first: bytes, slug: str, theme: bool) -> Any:
        try:
            return self._dispatch(request, segments, first, slug, theme)
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

    def _tenant_label(self, first: bytes, slug: str, fast_path: bool) -> str:
        if not first or first == b"admin" or (fast_path and first in self._operational):
            return NO_TENANT
        return slug if self._is_known_tenant(slug) else UNKNOWN_TENANT

    def _dispatch(self, request: Any, segments: list[bytes], first: bytes, slug: str, theme: bool) -> Any:
        operational = self._operational.get(first)
        if operational is not None:
            return operational(request, segments)
        if request.body_too_large:
            raise ApiError(413, "body_too_large", f"request body exceeds {request.max_body_bytes} bytes")
        if first == b"admin":
            return self._admin.render(request)
        if not is_valid_slug(slug):
            raise ApiError(404, "not_found", "no such tenant or route")
        if theme:
            return self._public_theme(request, segments)
        return self._tenant_api.render(request)

    def _finished(self, request: Any, completed: bool) -> None:
        self.in_flight -= 1
        status = request.code if completed else 499  # 499: the client went away first
        method = _METHOD_NAMES.get(request.method) or request.method.decode("latin-1")
        elapsed_s = self._clock.seconds() - request.started_at
        self._metrics.record_request(method, request.endpoint_label, status, request.tenant_label, elapsed_s,
                                     request.request_class)
        task = request.log_task
        if task is None:
            if (status < 300 or status == 304) and elapsed_s < self._slow_s:
                return  # an unsampled fast-path success
            task = self._start_task(request)  # an error or a slow answer: always logged
        with task.context():
            task.addSuccessFields(status=status, user_id=request.user_id, duration_ms=round(elapsed_s * 1000, 3))
            task.finish()

