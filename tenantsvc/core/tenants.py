"""Tenant slugs and names: the rules that decide which path prefixes can be tenants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from tenantsvc.core.validation import ValidationFailed, check_text, check_unknown_fields

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")
RESERVED_SLUGS = frozenset(
    {"api", "admin", "static", "healthz", "readyz", "health", "metrics", "openapi", "login", "debug"}
)
MAX_NAME_LENGTH = 100


def is_valid_slug(slug: str) -> bool:
    """True when ``slug`` may name a tenant: 3–63 of [a-z0-9-], no leading/trailing hyphen, not reserved."""
    return bool(SLUG_PATTERN.fullmatch(slug)) and slug not in RESERVED_SLUGS


@dataclass(frozen=True)
class NewTenant:
    """A validated request to create a tenant."""

    slug: str
    name: str


def parse_new_tenant(payload: Mapping[str, object]) -> NewTenant:
    """Validate ``{"slug", "name"}``; raise ``ValidationFailed`` with per-field messages."""
    errors: dict[str, str] = {}
    check_unknown_fields(errors, payload, {"slug", "name"})
    slug = payload.get("slug")
    if not isinstance(slug, str):
        errors["slug"] = "must be a string"
    elif slug in RESERVED_SLUGS:
        errors["slug"] = "is a reserved word"
    elif not SLUG_PATTERN.fullmatch(slug):
        errors["slug"] = "must be 3-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen"
    name = check_text(errors, "name", payload.get("name"), min_len=1, max_len=MAX_NAME_LENGTH)
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(slug, str) and name is not None
    return NewTenant(slug=slug, name=name)
