"""Pure rules of the two-tier theme cache: freshness windows and the one L2 value shape."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tenantsvc.core.tenants import is_valid_slug
from tenantsvc.core.theme import Theme, parse_theme
from tenantsvc.core.validation import ValidationFailed

FRESH, STALE, EXPIRED = "fresh", "stale", "expired"
L2_VALUE_VERSION = 1


@dataclass(frozen=True)
class CacheWindows:
    """How long an entry is fresh, and for how long after that it may be served while revalidating."""

    ttl_s: float = 300.0
    stale_while_revalidate_s: float = 60.0


def freshness(fetched_at: float, now: float, windows: CacheWindows) -> str:
    """FRESH before ``ttl``, STALE within the stale-while-revalidate window after it, else EXPIRED."""
    age = now - fetched_at
    if age < windows.ttl_s:
        return FRESH
    if age < windows.ttl_s + windows.stale_while_revalidate_s:
        return STALE
    return EXPIRED


@dataclass(frozen=True, slots=True)
class CachedTheme:
    """A theme as read from the database at ``fetched_at`` (Unix seconds)."""

    slug: str
    theme: Theme
    fetched_at: float


def encode_l2(entry: CachedTheme) -> str:
    """The single L2 (and invalidation message) value shape: versioned JSON with camelCase theme keys."""
    return json.dumps({"v": L2_VALUE_VERSION, "slug": entry.slug, "fetched_at": entry.fetched_at,
                       "theme": entry.theme.to_wire()}, separators=(",", ":"))


def decode_l2(raw: str | bytes | None) -> CachedTheme | None:
    """Parse an L2 value; anything malformed, from another version or failing validation is None."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        if not isinstance(value, dict) or value.get("v") != L2_VALUE_VERSION:
            return None
        slug, fetched_at, wire = value["slug"], value["fetched_at"], value["theme"]
        if not isinstance(slug, str) or not is_valid_slug(slug) or not isinstance(wire, dict):
            return None
        if isinstance(fetched_at, bool) or not isinstance(fetched_at, (int, float)):
            return None
        return CachedTheme(slug=slug, theme=parse_theme(wire), fetched_at=float(fetched_at))
    except (ValueError, KeyError, TypeError, ValidationFailed):
        return None
