"""HTTP caching rules: strong ETags and RFC 9110 ``If-None-Match`` evaluation."""

from __future__ import annotations

import base64
import hashlib
import re

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
