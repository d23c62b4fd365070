"""HTTP caching rules: strong ETags, RFC 9110 ``If-None-Match`` evaluation, and the header policy as data.

``CacheHeaders`` is the caching headers of one kind of answer (``Cache-Control`` directives and our
``Cache-Status`` entry, RFC 9211); ``theme_cache_headers`` is the table of the public theme's answers
(fresh, stale, default, rate limited) and ``odds_cache_headers`` the odds list's. The theme cache renders
its answers from the table, the public theme route takes the rate-limited row, the odds route its own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def strong_etag(body: bytes) -> str:
    """A strong, quoted entity tag derived from the body bytes."""
    digest = hashlib.sha256(body).digest()[:18]
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"'


def parse_if_none_match(header: str) -> list[str] | None:
    """Parse ``If-None-Match`` into opaque tags (``W/`` stripped); ``["*"]`` for a star; None when malformed."""
    text = header.strip()
    if text == "*":
        return ["*"]
    tags: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] in " \t,":
            pos += 1
            continue
        match = _ENTITY_TAG.match(text, pos)
        if not match:
            return None
        tags.append(match.group(2))
        pos = match.end()
    return tags or None


def not_modified(if_none_match: str | None, current_etag: str) -> bool:
    """True when a GET may be answered 304: weak comparison of ``If-None-Match`` against ``current_etag``.

    A malformed header never matches, so the client gets a normal 200.
    """
    if not if_none_match:
        return False
    if if_none_match == current_etag:  # what browsers and CDNs send back: no parsing needed
        return True
    tags = parse_if_none_match(if_none_match)
    if tags is None:
        return False
    if tags == ["*"]:
        return True
    opaque = current_etag[2:] if current_etag.startswith("W/") else current_etag
    return opaque in tags


STALE_IF_ERROR_S = 86_400
# The Cache-Status entries (RFC 9211) we send, by where the answer came from.
HIT, HIT_STALE, DEFAULT_MISS, HIT_DB_REFUSED = (
    "tenantsvc; hit", "tenantsvc; hit; detail=stale", "tenantsvc; fwd=miss; detail=default",
    "tenantsvc; hit; detail=db-refused")
# The rows of the theme table: core.theme_cache_rules' FRESH and STALE, the default theme, over the limit.
THEME_FRESH, THEME_STALE, THEME_DEFAULT, THEME_RATE_LIMITED = "fresh", "stale", "default", "rate_limited"


@dataclass(frozen=True)
class CacheHeaders:
    """The caching headers of one kind of answer; ``cache_status`` None sends no ``Cache-Status``."""

    max_age_s: int
    stale_while_revalidate_s: int | None = None
    stale_if_error_s: int | None = None
    cache_status: str | None = None

    @property
    def cache_control(self) -> str:
        """The ``Cache-Control`` value: ``public, max-age=…`` and the stale directives that are set."""
        directives = [f"public, max-age={self.max_age_s}"]
        if self.stale_while_revalidate_s is not None:
            directives.append(f"stale-while-revalidate={self.stale_while_revalidate_s}")
        if self.stale_if_error_s is not None:
            directives.append(f"stale-if-error={self.stale_if_error_s}")
        return ", ".join(directives)

    def pairs(self) -> tuple[tuple[bytes, bytes], ...]:
        """``(name, value)`` pairs to send: ``Cache-Control``, then ``Cache-Status`` when there is one."""
        control = ((b"Cache-Control", self.cache_control.encode("ascii")),)
        if self.cache_status is None:
            return control
        return control + ((b"Cache-Status", self.cache_status.encode("ascii")),)


def theme_cache_headers(ttl_s: float, stale_while_revalidate_s: float) -> dict[str, CacheHeaders]:
    """The public theme's header table. Fresh answers let browsers and CDNs do what L1 does (``ttl_s``,
    ``stale_while_revalidate_s``) and keep a copy through our outages for a day; a stale or default answer
    is cached briefly, so the real theme replaces it soon; an answer over the rate limit is cached briefly
    too and keeps the ``Cache-Status`` of the answer it repeats."""
    degraded = (60, 30)
    return {
        THEME_FRESH: CacheHeaders(round(ttl_s), round(stale_while_revalidate_s), STALE_IF_ERROR_S, HIT),
        THEME_STALE: CacheHeaders(*degraded, cache_status=HIT_STALE),
        THEME_DEFAULT: CacheHeaders(*degraded, cache_status=DEFAULT_MISS),
        THEME_RATE_LIMITED: CacheHeaders(30, 60),
    }


def odds_cache_headers(ttl_s: float, stale: bool) -> CacheHeaders:
    """The odds list's headers: cached as long as the in-process entry lives; a copy served because the
    database refused says so."""
    return CacheHeaders(int(ttl_s), cache_status=HIT_DB_REFUSED if stale else None)
