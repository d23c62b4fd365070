"""The Request class used by our Site (caps request bodies, carries per-request context), and header access
for the hot paths.

``twisted.web``'s ``setHeader``/``getHeader`` canonicalise the name and sanitise the value on every call.
On the public theme path, where a dozen headers per request are constants or our own ids and numbers,
``set_response_headers`` and ``request_header`` do that work once, up front (``canonical_header``), and
then touch the ``Headers`` mapping directly. ``DIRECT_HEADERS`` is False, and they fall back to the public
API, if the installed Twisted stores headers differently (a test checks that it does not).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.web.http_headers import Headers
from twisted.web.server import Request

DEFAULT_MAX_BODY_BYTES = 64 * 1024
HeaderPairs = Iterable[tuple[bytes, bytes]]


def canonical_header(name: bytes) -> bytes:
    """``name`` as ``twisted.web`` stores and writes it (``X-Request-ID`` → ``X-Request-Id``); validates it."""
    headers = Headers()
    headers.setRawHeaders(name, [b""])
    return next(iter(headers.getAllRawHeaders()))[0]


def _headers_are_a_plain_dict() -> bool:
    """True when ``Headers`` keeps ``{canonical name: [values]}`` in ``_rawHeaders`` (Twisted 22 to 26 do)."""
    headers = Headers()
    headers.setRawHeaders(b"x-probe", [b"1"])
    raw = getattr(headers, "_rawHeaders", None)
    return isinstance(raw, dict) and raw == {canonical_header(b"x-probe"): [b"1"]}


DIRECT_HEADERS = _headers_are_a_plain_dict()


def set_response_headers(request: Any, pairs: HeaderPairs) -> None:
    """Set response headers, each replacing any earlier value, as ``setHeader`` would.

    For hot paths: each name must come from ``canonical_header`` and each value must be one line of
    visible ASCII (constants, our ids, numbers), so the per-call checks ``setHeader`` makes are not needed.
    """
    if DIRECT_HEADERS:
        raw = request.responseHeaders._rawHeaders
        for name, value in pairs:
            raw[name] = [value]
    else:
        for name, value in pairs:
            request.responseHeaders.setRawHeaders(name, [value])


def request_header(request: Any, name: bytes) -> bytes | None:
    """The last value of request header ``name`` (from ``canonical_header``), or None: ``getHeader``, cheaper."""
    if DIRECT_HEADERS:
        values = request.requestHeaders._rawHeaders.get(name)
        return values[-1] if values else None
    return request.getHeader(name)


class TenantRequest(Request):
    """A ``twisted.web`` request that stops buffering a body past ``max_body_bytes``.

    The bytes beyond the cap are read off the socket and dropped, so a huge upload costs neither
    memory nor disk; the root resource then answers 413.
    """

    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    # Context filled in by the root resource and the route wrappers; read by metrics and logging.
    correlation_id = ""
    request_id = ""
    endpoint_label = "unmatched"
    request_class = "none"  # the route class (metrics label route_class): set by whatever routes the request
    tenant_label = ""
    user_id: int | None = None
    body_too_large = False
    started_at = 0.0
    log_task: Any = None
    # Called once with (request, completed) when the response is finished or the client goes away:
    # cheaper than a notifyFinish() Deferred on every request.
    on_finished: Callable[[Any, bool], None] | None = None
    _body_bytes = 0

    def finish(self) -> None:
        """Finish the response, then tell the root resource (metrics, log task, in-flight count)."""
        super().finish()
        self._report_finished(True)

    def connectionLost(self, reason: Any) -> None:
        """The connection closed; if the response was not finished, report the request as abandoned."""
        super().connectionLost(reason)
        self._report_finished(False)

    def _report_finished(self, completed: bool) -> None:
        hook, self.on_finished = self.on_finished, None
        if hook is not None:
            hook(self, completed)

    def gotLength(self, length: int | None) -> None:
        """Refuse up front when the declared Content-Length is over the cap."""
        if length is not None and length > self.max_body_bytes:
            self.body_too_large = True
        super().gotLength(length if not self.body_too_large else 0)

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer body bytes only while under the cap."""
        if self.body_too_large:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.max_body_bytes:
            self.body_too_large = True
            return
        super().handleContentChunk(data)
