"""``GET /<tenant>/api/public/load-theme`` and ``…/theme.css``: the hottest paths, served without Klein or the DB.

A cache hit is a dictionary lookup and a write of bytes computed when the entry was filled; only an
L1 miss waits (briefly, bounded) for Redis.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.web.server import NOT_DONE_YET

from tenantsvc.core.http_cache import THEME_RATE_LIMITED, CacheHeaders, not_modified
from tenantsvc.core.rate_limits import RateLimitPolicy, bucket_key
from tenantsvc.core.request_classes import PUBLIC
from tenantsvc.core.token_bucket import Decision
from tenantsvc.services.theme_cache import CSS, JSON, ThemeAnswer, ThemeCache
from tenantsvc.services.rate_limiting import LocalRateLimiter
from tenantsvc.web.errors import ApiError
from tenantsvc.web.limits import policy_header, rate_limit_headers
from tenantsvc.web.plain import Handler, fail_later
from tenantsvc.web.request import canonical_header, header_line, request_header

IF_NONE_MATCH = canonical_header(b"If-None-Match")
ROUTES = {
    b"load-theme": (JSON, "/<tenant>/api/public/load-theme", header_line(b"Content-Type", b"application/json")),
    b"theme.css": (CSS, "/<tenant>/api/public/theme.css", header_line(b"Content-Type", b"text/css; charset=utf-8")),
}
MAX_MEMOISED_HEADERS = 4096
ETAG_PREFIX, CRLF = canonical_header(b"ETag") + b": ", b"\r\n"
RATE_LIMITED_LINE = header_line(b"X-Rate-Limited", b"true")


def is_public_theme_path(segments: list[bytes]) -> bool:
    """True for ``/<tenant>/api/public/load-theme`` and ``/<tenant>/api/public/theme.css``."""
    return len(segments) == 4 and segments[1] == b"api" and segments[2] == b"public" and segments[3] in ROUTES


class RateLimitLines:
    """The rate-limit header lines of a decision (``rate_limit_headers``) in wire format, built once per value.

    They depend only on the policy, the whole tokens remaining and the whole seconds to reset, which
    take few distinct values, so each is memoised (at most ``max_entries``, then the memo starts over).
    """

    def __init__(self, policy: RateLimitPolicy, max_entries: int = MAX_MEMOISED_HEADERS):
        self._policy = policy
        self._policy_value = policy_header(policy)
        self._max_entries = max_entries
        self._memo: dict[tuple[int, int], bytes] = {}

    def __call__(self, decision: Decision) -> bytes:
        """The header lines, joined."""
        key = (decision.remaining, decision.reset_whole_s)
        lines = self._memo.get(key)
        if lines is None:
            lines = b"".join(header_line(name, value)
                             for name, value in rate_limit_headers(self._policy, decision, self._policy_value))
            if len(self._memo) >= self._max_entries:
                self._memo.clear()
            self._memo[key] = lines
        return lines


class CacheLines:
    """The caching header lines of each row of the theme's header table (``core.http_cache``), in wire format."""

    def __init__(self, table: dict[str, CacheHeaders]):
        self.cache_control = {row: header_line(b"Cache-Control", headers.cache_control.encode("ascii"))
                              for row, headers in table.items()}
        self.cache_status = {row: header_line(b"Cache-Status", headers.cache_status.encode("ascii"))
                             if headers.cache_status else b"" for row, headers in table.items()}


def public_theme_handler(cache: ThemeCache, limiter: LocalRateLimiter, policy: RateLimitPolicy,
                         may_exist: Callable[[str], bool]) -> Handler:
    """Build the handler the root resource calls for the public theme routes.

    The public routes are limited per tenant by the in-process limiter (no Redis round trip on the hot
    path), one tenant-wide bucket only: they never refuse, so no client can lock another out here. Over
    the limit, the client still gets the cached theme with 200, ``X-Rate-Limited: true`` and a short
    ``Cache-Control``, and no refresh is started. A cache hit is written in one piece
    (``TenantRequest.finish_prepared``) from lines computed once.
    """
    rate_limit_lines = RateLimitLines(policy)
    lines = CacheLines(cache.headers)
    limited_cache_control = lines.cache_control[THEME_RATE_LIMITED]

    def serve(request: Any, segments: list[bytes]) -> Any:
        kind, label, content_type = ROUTES[segments[3]]
        request.endpoint_label = label
        request.request_class = PUBLIC
        if request.method not in (b"GET", b"HEAD"):
            raise ApiError(405, "method_not_allowed", "use GET", headers={"Allow": "GET, HEAD"})
        slug = segments[0].decode("ascii")
        if not may_exist(slug):
            raise ApiError(404, "unknown_tenant", "no such tenant")
        decision = limiter.check((bucket_key(slug, PUBLIC),), policy)
        limits = rate_limit_lines(decision)
        if not decision.allowed:
            _send(request, cache.peek(slug, kind), content_type, lines, limits + RATE_LIMITED_LINE,
                  limited_cache_control)
            return NOT_DONE_YET
        result = cache.answer(slug, kind, request.correlation_id)
        if result is None:
            raise ApiError(404, "unknown_tenant", "no such tenant")
        if isinstance(result, Deferred):
            result.addCallback(lambda answer: _send(request, answer, content_type, lines, limits))
            result.addErrback(lambda failure: fail_later(request, failure))
            return NOT_DONE_YET
        _send(request, result, content_type, lines, limits)
        return NOT_DONE_YET

    return serve


def _send(request: Any, answer: ThemeAnswer, content_type: bytes, lines: CacheLines, first: bytes,
          cache_control: bytes | None = None) -> None:
    """Send ``answer`` and finish (unless the client has gone): the ``first`` header lines (rate limits),
    ``Cache-Control`` (the row's, or ``cache_control`` for a limited answer), ``ETag``, ``Cache-Status``.

    A 304 (``If-None-Match`` matched) carries the validators only: no ``Content-Type`` and no
    ``Content-Length``, which RFC 9110 §8.6 allows only if it is the 200's. A 200 carries its own
    ``Content-Length``, so it is never sent chunked, even when it is written after a wait.
    """
    row = answer.result
    head = [first, cache_control or lines.cache_control[row], ETAG_PREFIX, answer.etag, CRLF, lines.cache_status[row]]
    if_none_match = request_header(request, IF_NONE_MATCH)
    if if_none_match is not None and (if_none_match == answer.etag  # what browsers send back: no parsing
                                      or not_modified(if_none_match.decode("latin-1"), answer.etag.decode("ascii"))):
        request.finish_prepared(304, head, None)
        return
    head.append(content_type)
    request.finish_prepared(200, head, answer.body)
