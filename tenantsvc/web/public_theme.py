"""``GET /<tenant>/api/public/load-theme``: the hottest path, served from memory without Klein or the DB.

Each cache entry already holds its body bytes and ETag, so a hit is a dictionary lookup and a write.
"""

from __future__ import annotations

from typing import Any

from tenantsvc.core.http_cache import not_modified
from tenantsvc.services.themes import ThemeService
from tenantsvc.web.errors import ApiError

JSON_TYPE = b"application/json"
ENDPOINT_LABEL = "/<tenant>/api/public/load-theme"


def public_theme_handler(themes: ThemeService) -> Any:
    """Build the handler the root resource calls for load-theme requests."""

    def load_theme(request: Any, segments: list[bytes]) -> bytes:
        request.endpoint_label = ENDPOINT_LABEL
        if request.method not in (b"GET", b"HEAD"):
            raise ApiError(405, "method_not_allowed", "use GET", headers={"Allow": "GET, HEAD"})
        answer = themes.public_answer(segments[0].decode("ascii"))
        if answer is None:
            raise ApiError(404, "unknown_tenant", "no such tenant")
        request.setHeader(b"Cache-Control", answer.cache_control)
        request.setHeader(b"ETag", answer.etag)
        request.setHeader(b"Cache-Status", answer.cache_status)
        if not_modified(_if_none_match(request), answer.etag_text):
            request.setResponseCode(304)
            return b""
        request.setHeader(b"Content-Type", JSON_TYPE)
        return answer.body

    return load_theme


def _if_none_match(request: Any) -> str | None:
    value = request.getHeader(b"if-none-match")
    return value.decode("latin-1") if value is not None else None
