"""``GET /<tenant>/api/public/load-theme`` and ``…/theme.css``: the hottest paths, served without Klein or the DB.

A cache hit is a dictionary lookup and a write of bytes computed when the entry was filled; only an
L1 miss waits (briefly, bounded) for Redis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from twisted.internet.defer import Deferred

from tenantsvc.core.http_cache import not_modified
from tenantsvc.core.rate_limits import PUBLIC, RateLimitPolicy, bucket_key
from tenantsvc.services.theme_cache import CSS, JSON, ThemeAnswer, ThemeCache
from tenantsvc.services.rate_limiting import LocalRateLimiter
from tenantsvc.web.errors import ApiError
from tenantsvc.web.limits import apply_headers, policy_header
from tenantsvc.web.plain import Handler, finish_later

LIMITED_CACHE_CONTROL = b"public, max-age=30, stale-while-revalidate=60"
ROUTES = {
    b"load-theme": (JSON, "/<tenant>/api/public/load-theme", b"application/json"),
    b"theme.css": (CSS, "/<tenant>/api/public/theme.css", b"text/css; charset=utf-8"),
}


def is_public_theme_path(segments: list[bytes]) -> bool:
    """True for ``/<tenant>/api/public/load-theme`` and ``/<tenant>/api/public/theme.css``."""
    return len(segments) == 4 and segments[1] == b"api" and segments[2] == b"public" and segments[3] in ROUTES


def public_theme_handler(cache: ThemeCache, limiter: LocalRateLimiter, policy: RateLimitPolicy,
                         may_exist: Callable[[str], bool]) -> Handler:
    """Build the handler the root resource calls for the public theme routes.

    The public routes are limited per tenant by the in-process limiter (no Redis round trip on the hot
    path). Over the limit, the client still gets the cached theme with 200, ``X-Rate-Limited: true``
    and a short ``Cache-Control``, and no refresh is started.
    """
    policy_value = policy_header(policy)

    def serve(request: Any, segments: list[bytes]) -> Any:
        kind, label, content_type = ROUTES[segments[3]]
        request.endpoint_label = label
        if request.method not in (b"GET", b"HEAD"):
            raise ApiError(405, "method_not_allowed", "use GET", headers={"Allow": "GET, HEAD"})
        slug = segments[0].decode("ascii")
        if not may_exist(slug):
            raise ApiError(404, "unknown_tenant", "no such tenant")
        decision = limiter.check(bucket_key(slug, PUBLIC), policy)
        apply_headers(request, policy, decision, policy_value)
        if not decision.allowed:
            request.setHeader(b"X-Rate-Limited", b"true")
            return _write(request, replace(cache.peek(slug, kind), cache_control=LIMITED_CACHE_CONTROL),
                          content_type)
        result = cache.answer(slug, kind, request.correlation_id)
        if result is None:
            raise ApiError(404, "unknown_tenant", "no such tenant")
        if isinstance(result, Deferred):
            return finish_later(request, result, lambda answer: _write(request, answer, content_type))
        return _write(request, result, content_type)

    return serve


def _write(request: Any, answer: ThemeAnswer, content_type: bytes) -> bytes:
    request.setHeader(b"Cache-Control", answer.cache_control)
    request.setHeader(b"ETag", answer.etag)
    request.setHeader(b"Cache-Status", answer.cache_status)
    if_none_match = request.getHeader(b"if-none-match")
    if if_none_match is not None and not_modified(if_none_match.decode("latin-1"), answer.etag_text):
        request.setResponseCode(304)
        return b""
    request.setHeader(b"Content-Type", content_type)
    return answer.body
