"""The Request class used by our Site (caps request bodies, carries per-request context), and header access
for the hot paths.

``twisted.web``'s ``setHeader``/``getHeader`` canonicalise the name and sanitise the value on every call.
On the public theme path, where a dozen headers per request are constants or our own ids and numbers,
``set_response_headers`` and ``request_header`` do that work once, up front (``canonical_header``), and
then touch the ``Headers`` mapping directly. ``DIRECT_HEADERS`` is False, and they fall back to the public
API, if the installed Twisted stores headers differently (a test checks that it does not).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import unquote_to_bytes

from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES, datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import _IEncodingResource
from twisted.web.server import Request, version as SERVER_VERSION

from tenantsvc.core.bounded_memo import BoundedMemo

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


def header_line(name: bytes, value: bytes) -> bytes:
    """One response header as written on the wire (``Name: value\\r\\n``), ``name`` canonicalised."""
    return canonical_header(name) + b": " + value + b"\r\n"


class HttpDate:
    """The ``Date`` header value for now, formatted at most once a second (``datetimeToString``)."""

    def __init__(self, now: Callable[[], float] = time.time):
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        """RFC 9110 IMF-fixdate of the current second."""
        second = int(self._now())
        if second != self._second:
            self._second, self._value = second, datetimeToString(second)
        return self._value


http_date = HttpDate()
SERVER, DATE, CONTENT_LENGTH = (canonical_header(name) for name in (b"Server", b"Date", b"Content-Length"))
# ``HTTP/1.1 200 OK\r\n`` per (version, code), and ``Content-Length: <size>\r\n`` per size.
_STATUS_LINES: BoundedMemo[tuple[bytes, int], bytes] = BoundedMemo(
    lambda key: b"%s %d %s\r\n" % (key[0], key[1], RESPONSES.get(key[1], b"Unknown Status")))
_LENGTH_LINES: BoundedMemo[int, bytes] = BoundedMemo(lambda size: b"%s: %d\r\n" % (CONTENT_LENGTH, size))


def content_length_line(size: int) -> bytes:
    """``Content-Length: <size>\\r\\n`` (memoised: answers come in few sizes; bounded all the same)."""
    return _LENGTH_LINES[size]


def request_header(request: Any, name: bytes) -> bytes | None:
    """The last value of request header ``name`` (from ``canonical_header``), or None: ``getHeader``, cheaper."""
    if DIRECT_HEADERS:
        values = request.requestHeaders._rawHeaders.get(name)
        return values[-1] if values else None
    return request.getHeader(name)


def add_request_header(request: Any, name: bytes, value: bytes) -> None:
    """Add one value of request header ``name`` (from ``canonical_header``; ``value`` already checked as Twisted
    checks it): ``requestHeaders.addRawHeader``, cheaper."""
    if DIRECT_HEADERS:
        request.requestHeaders._rawHeaders.setdefault(name, []).append(value)
    else:
        request.requestHeaders.addRawHeader(name, value)


def has_none_of(request: Any, names: Iterable[bytes]) -> bool:
    """True when the request carries none of the headers ``names`` (from ``canonical_header``)."""
    if DIRECT_HEADERS:
        raw = request.requestHeaders._rawHeaders
        for name in names:
            if name in raw:
                return False
        return True
    return all(request.getHeader(name) is None for name in names)


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

    def process(self) -> None:
        """``twisted.web``'s ``Request.process``, with ``Server`` and ``Date`` set without ``setHeader``'s
        per-call checks and the date formatted once a second (1.3 µs of every request)."""
        if not DIRECT_HEADERS:
            super().process()
            return
        self.site = self.channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol
        raw = self.responseHeaders._rawHeaders
        raw[SERVER] = [SERVER_VERSION]
        raw[DATE] = [http_date()]
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        if self.path == b"*":
            self._handleStar()
            return
        try:
            resource = self.site.getResourceFor(self)
            if _IEncodingResource.providedBy(resource):
                encoder = resource.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def finish(self) -> None:
        """Finish the response, then tell the root resource (metrics, log task, in-flight count)."""
        super().finish()
        self._report_finished(True)

    def finish_prepared(self, code: int, head: Sequence[bytes], body: bytes | None) -> None:
        """Send a whole response at once and finish: the bytes ``write`` and ``finish`` would send, without
        their per-call header handling (for the public theme's hot path).

        ``head`` is pieces of header lines in wire format (``header_line``; joined, whole lines), written
        after the headers set on the request (``Server``, ``Date``, ids, …). With a ``body`` the response
        carries its ``Content-Length`` (sent without the body for a HEAD), so it is never chunked; ``None``
        is a response without a body (304). Anything ``write`` would treat specially (started, finished,
        lost, cookies, validators set on the request, an encoder) takes ``write`` and ``finish`` instead.
        No access-log line is written: our Site keeps none (``QuietSite``).
        """
        if (self.startedWriting or self.finished or self._disconnected or self.cookies or self.etag is not None
                or self.lastModified is not None or self._encoder is not None or not DIRECT_HEADERS):
            self._finish_generically(code, head, body)
            return
        self.code, self.code_message = code, RESPONSES.get(code, b"Unknown Status")
        self.startedWriting = 1
        parts = [_STATUS_LINES[(self.clientproto, code)]]
        for name, values in self.responseHeaders._rawHeaders.items():
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts += head
        if body is not None:
            parts.append(content_length_line(len(body)))
        parts.append(b"\r\n")
        if body and self.method != b"HEAD" and code not in NO_BODY_CODES:
            parts.append(body)
            self.sentLength = len(body)
        self.channel.writeSequence(parts)
        self.finished = 1
        if not self.queued:
            self._cleanup()
        self._report_finished(True)

    def _finish_generically(self, code: int, head: Sequence[bytes], body: bytes | None) -> None:
        """``finish_prepared`` through ``setResponseCode``, ``setHeader``, ``write`` and ``finish``."""
        if self.finished or self._disconnected:
            return
        self.setResponseCode(code)
        for line in b"".join(head).split(b"\r\n"):
            if line:
                name, _, value = line.partition(b": ")
                self.responseHeaders.setRawHeaders(name, [value])
        if body is not None:
            self.responseHeaders.setRawHeaders(CONTENT_LENGTH, [b"%d" % len(body)])
        self.write(body or b"")
        self.finish()

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
