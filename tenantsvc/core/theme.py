"""The tenant theme: one model, one default palette, validation on save and safe rendering.

The public JSON, the admin API and the theme CSS all come from this one model, so they can never
disagree (the original system had four default palettes).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping
from urllib.parse import urlsplit

from tenantsvc.core.validation import ValidationFailed, check_text, check_unknown_fields

COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
FONT_FAMILY = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,100}$")
LAYOUT_STYLES = ("modern", "classic", "compact", "wide", "minimal")
BUTTON_STYLES = ("rounded", "sharp", "minimal")
CARD_STYLES = ("shadow", "border", "minimal", "glow")
LOGO_TYPES = ("default", "text", "image", "custom")
MAX_NAME_LENGTH = 100
MAX_URL_LENGTH = 2048

# camelCase wire name → attribute name, in the order of the public contract.
WIRE_NAMES = {
    "primaryColor": "primary_color",
    "secondaryColor": "secondary_color",
    "accentColor": "accent_color",
    "backgroundColor": "background_color",
    "textColor": "text_color",
    "fontFamily": "font_family",
    "layoutStyle": "layout_style",
    "buttonStyle": "button_style",
    "cardStyle": "card_style",
    "logoType": "logo_type",
    "logoUrl": "logo_url",
    "sportsbookName": "sportsbook_name",
}
COLOR_FIELDS = ("primaryColor", "secondaryColor", "accentColor", "backgroundColor", "textColor")
ENUM_FIELDS = {
    "layoutStyle": LAYOUT_STYLES,
    "buttonStyle": BUTTON_STYLES,
    "cardStyle": CARD_STYLES,
    "logoType": LOGO_TYPES,
}


@dataclass(frozen=True, slots=True)
class Theme:
    """A tenant's branding; every value has already passed validation."""

    primary_color: str = "#10B981"
    secondary_color: str = "#1F2937"
    accent_color: str = "#3B82F6"
    background_color: str = "#111827"
    text_color: str = "#F9FAFB"
    font_family: str = "Inter, sans-serif"
    layout_style: str = "modern"
    button_style: str = "rounded"
    card_style: str = "shadow"
    logo_type: str = "default"
    logo_url: str = ""
    sportsbook_name: str = "Your Sportsbook"

    def __post_init__(self) -> None:
        # Tenants share most values (fonts, styles, common colours): one string object per distinct value,
        # freed with its last theme (interned strings are not immortal).
        for name in self.__slots__:
            object.__setattr__(self, name, sys.intern(getattr(self, name)))

    def to_wire(self) -> dict[str, str]:
        """The camelCase mapping used by the public and admin JSON."""
        values = asdict(self)
        return {wire: values[attr] for wire, attr in WIRE_NAMES.items()}

    def to_json_bytes(self) -> bytes:
        """Compact UTF-8 JSON of ``to_wire()``: the exact bytes served to front-ends."""
        return json.dumps(self.to_wire(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> "Theme":
        """Build from a stored row keyed by attribute name (values were validated when saved)."""
        return cls(**{f.name: str(row[f.name]) for f in fields(cls) if row.get(f.name) is not None})

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> "Theme":
        """Rebuild from ``to_wire()``'s camelCase mapping, without validating (it came from a valid theme)."""
        return cls(**{attr: str(wire[name]) for name, attr in WIRE_NAMES.items() if name in wire})


DEFAULT_THEME = Theme()
ATTRIBUTES = tuple(f.name for f in fields(Theme))


def _check_logo_url(errors: dict[str, str], value: object) -> str | None:
    if not isinstance(value, str):
        errors["logoUrl"] = "must be a string"
        return None
    url = value.strip()
    if url == "":
        return url
    if len(url) > MAX_URL_LENGTH:
        errors["logoUrl"] = f"must be at most {MAX_URL_LENGTH} characters"
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s\"'()\\<>]", url):
        errors["logoUrl"] = "must be an http(s) URL without spaces, quotes, parentheses or backslashes, or empty"
        return None
    return url


def parse_theme(payload: Mapping[str, object], base: Theme = DEFAULT_THEME) -> Theme:
    """Validate camelCase theme fields onto ``base`` (absent keys keep ``base``'s values).

    Raises ``ValidationFailed`` with a message per bad field.
    """
    errors: dict[str, str] = {}
    check_unknown_fields(errors, payload, set(WIRE_NAMES))
    changes: dict[str, str] = {}
    for wire, attr in WIRE_NAMES.items():
        if wire not in payload:
            continue
        value = payload[wire]
        if wire in COLOR_FIELDS:
            if not isinstance(value, str) or not COLOR.fullmatch(value):
                errors[wire] = "must be a colour in the form #RRGGBB"
                continue
            changes[attr] = value.upper()
        elif wire in ENUM_FIELDS:
            if value not in ENUM_FIELDS[wire]:
                errors[wire] = "must be one of " + ", ".join(ENUM_FIELDS[wire])
                continue
            changes[attr] = str(value)
        elif wire == "fontFamily":
            if not isinstance(value, str) or not FONT_FAMILY.match(value.strip()) or _unbalanced_quotes(value):
                errors[wire] = "must be 1-100 characters of letters, digits, spaces, commas, hyphens and balanced quotes"
                continue
            changes[attr] = value.strip()
        elif wire == "logoUrl":
            url = _check_logo_url(errors, value)
            if url is not None:
                changes[attr] = url
        elif wire == "sportsbookName":
            name = check_text(errors, wire, value, min_len=1, max_len=MAX_NAME_LENGTH)
            if name is not None:
                changes[attr] = name
    if errors:
        raise ValidationFailed(errors)
    return replace(base, **changes)


def _unbalanced_quotes(text: str) -> bool:
    return text.count("'") % 2 == 1 or text.count('"') % 2 == 1
