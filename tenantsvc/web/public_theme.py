"""``GET /<tenant>/api/public/load-theme`` and ``…/theme.css``: the hottest paths, served without Klein or the DB.

A cache hit is a dictionary lookup and a write of bytes computed when the entry was filled; only an
L1 miss waits (briefly, bounded) for Redis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.web.server import NOT_DONE_YET

from tenantsvc.core.http_cache import THEME_RATE_LIMITED, not_modified
from tenantsvc.core.rate_limits import RateLimitPolicy, bucket_key
from tenantsvc.core.request_classes import PUBLIC
from tenantsvc.core.token_bucket import Decision
from tenantsvc.services.theme_cache import CSS, JSON, ThemeAnswer, ThemeCache
from tenantsvc.services.rate_limiting import LocalRateLimiter
from tenantsvc.web.errors import ApiError
from tenantsvc.web.limits import policy_header, rate_limit_headers
from tenantsvc.web.plain import Handler, finish_later
from tenantsvc.web.request import canonical_header, request_header, set_response_headers

CACHE_CONTROL, ETAG, CACHE_STATUS, CONTENT_TYPE, CONTENT_LENGTH, IF_NONE_MATCH = (
    canonical_header(name) for name in (b"Cache-Control", b"ETag", b"Cache-Status", b"Content-Type", b"Content-Length",
                                        b"If-None-Match"))
ROUTES = {
    b"load-theme": (JSON, "/<tenant>/api/public/load-theme", (CONTENT_TYPE, b"application/json")),
    b"theme.css": (CSS, "/<tenant>/api/public/theme.css", (CONTENT_TYPE, b"text/css; charset=utf-8")),
}
MAX_MEMOISED_HEADERS = 4096
_CONTENT_LENGTHS: dict[int, bytes] = {}


def is_public_theme_path(segments: list[bytes]) -> bool:
    """True for ``/<tenant>/api/public/load-theme`` and ``/<tenant>/api/public/theme.css``."""
    return len(segments) == 4 and segments[1] == b"api" and segments[2] == b"public" and segments[3] in ROUTES


class RateLimitHeaders:
    """The rate-limit headers of a decision (``rate_limit_headers``) with canonical names, built once per value.

    They depend only on the policy, the whole tokens remaining and the whole seconds to reset, which
    take few distinct values, so each is memoised (at most ``max_entries``, then the memo starts over).
    """

    def __init__(self, policy: RateLimitPolicy, max_entries: int = MAX_MEMOISED_HEADERS):
        self._policy = policy
        self._policy_value = policy_header(policy)
        self._max_entries = max_entries
        self._memo: dict[tuple[int, int], tuple[tuple[bytes, bytes], ...]] = {}

    def __call__(self, decision: Decision) -> tuple[tuple[bytes, bytes], ...]:
        """``(canonical name, value)`` pairs for ``set_response_headers``."""
        key = (decision.remaining, decision.reset_whole_s)
        pairs = self._memo.get(key)
        if pairs is None:
            pairs = tuple((canonical_header(name), value)
                          for name, value in rate_limit_headers(self._policy, decision, self._policy_value))
            if len(self._memo) >= self._max_entries:
                self._memo.clear()
            self._memo[key] = pairs
        return pairs


def public_theme_handler(cache: ThemeCache, limiter: LocalRateLimiter, policy: RateLimitPolicy,
                         may_exist: Callable[[str], bool]) -> Handler:
    """Build the handler the root resource calls for the public theme routes.

    The public routes are limited per tenant by the in-process limiter (no Redis round trip on the hot
    path), one tenant-wide bucket only: they never refuse, so no client can lock another out here. Over the limit, the client still gets the cached theme with 200, ``X-Rate-Limited: true``
    and a short ``Cache-Control``, and no refresh is started.
    """
    rate_limit_pairs = RateLimitHeaders(policy)
    limited_cache_control = cache.headers[THEME_RATE_LIMITED].cache_control.encode("ascii")

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
        set_response_headers(request, rate_limit_pairs(decision))
        if not decision.allowed:
            request.setHeader(b"X-Rate-Limited", b"true")
            return _write_now(request, replace(cache.peek(slug, kind), cache_control=limited_cache_control),
                              content_type)
        result = cache.answer(slug, kind, request.correlation_id)
        if result is None:
            raise ApiError(404, "unknown_tenant", "no such tenant")
        if isinstance(result, Deferred):
            return finish_later(request, result, lambda answer: _prepare(request, answer, content_type))
        return _write_now(request, result, content_type)

    return serve


def _prepare(request: Any, answer: ThemeAnswer, content_type: tuple[bytes, bytes]) -> bytes:
    """Set the status and headers of ``answer``; return the body to send (empty for a 304).

    A 304 (``If-None-Match`` matched) carries the validators only: no ``Content-Type``, and no
    ``Content-Length``, which RFC 9110 §8.6 allows only if it is the 200's (``twisted.web`` would write 0
    for an empty body returned from ``render``). A 200 carries its own ``Content-Length``, so it is never
    sent chunked, even when it is written after a wait.
    """
    set_response_headers(request, ((CACHE_CONTROL, answer.cache_control), (ETAG, answer.etag),
                                   (CACHE_STATUS, answer.cache_status)))
    if_none_match = request_header(request, IF_NONE_MATCH)
    if if_none_match is not None and (if_none_match == answer.etag  # what browsers send back: no parsing
                                      or not_modified(if_none_match.decode("latin-1"), answer.etag_text)):
        request.setResponseCode(304)
        return b""
    body = answer.body
    set_response_headers(request, (content_type, (CONTENT_LENGTH, _content_length(len(body)))))
    return body


def _write_now(request: Any, answer: ThemeAnswer, content_type: tuple[bytes, bytes]) -> Any:
    """Send ``answer`` now and finish (``twisted.web`` writes headers only for a HEAD or a 304)."""
    request.write(_prepare(request, answer, content_type))
    request.finish()
    return NOT_DONE_YET


def _content_length(size: int) -> bytes:
    """``size`` as a ``Content-Length`` value (memoised: answers come in few sizes; bounded all the same)."""
    value = _CONTENT_LENGTHS.get(size)
    if value is None:
        if len(_CONTENT_LENGTHS) >= MAX_MEMOISED_HEADERS:
            _CONTENT_LENGTHS.clear()
        value = _CONTENT_LENGTHS[size] = b"%d" % size
    return value
