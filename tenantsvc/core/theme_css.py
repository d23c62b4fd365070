"""Theme CSS: the theme as CSS custom properties, with the original system's size mapping.

Values were validated on save; rendering escapes them again so a stored theme can never inject CSS.
"""

from __future__ import annotations

from tenantsvc.core.theme import Theme

LAYOUT_SPACING_PX = {"modern": 16, "classic": 12, "compact": 8, "wide": 20}
LAYOUT_RADIUS_PX = {"modern": 8, "classic": 4, "compact": 6, "wide": 12}
BUTTON_RADIUS_PX = {"rounded": 25, "sharp": 0}
CARD_SHADOW = {
    "shadow": "0 4px 6px rgba(0, 0, 0, 0.1)",
    "glow": "0 0 12px var(--accent-color)",
    "border": "none",
    "minimal": "none",
}
CARD_BORDER = {"border": "1px solid var(--secondary-color)"}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-_#:/?=&%+~@!")


def css_string(text: str) -> str:
    """A double-quoted CSS string with every character outside a small safe set hex-escaped."""
    out = []
    for ch in text:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):06x}")
    return '"' + "".join(out) + '"'


def css_font_family(text: str) -> str:
    """A font-family list: only letters, digits, spaces, commas, hyphens and quotes survive validation;
    anything else is dropped here as a second line of defence."""
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " ,-'\"")
    return kept or "sans-serif"


def render_theme_css(theme: Theme) -> bytes:
    """The ``:root`` block of custom properties for ``theme`` as UTF-8 bytes."""
    logo = f"url({css_string(theme.logo_url)})" if theme.logo_url else "none"
    lines = [
        ":root {",
        f"  --primary-color: {theme.primary_color};",
        f"  --secondary-color: {theme.secondary_color};",
        f"  --accent-color: {theme.accent_color};",
        f"  --background-color: {theme.background_color};",
        f"  --text-color: {theme.text_color};",
        f"  --font-family: {css_font_family(theme.font_family)};",
        f"  --layout-spacing: {LAYOUT_SPACING_PX.get(theme.layout_style, 6)}px;",
        f"  --layout-radius: {LAYOUT_RADIUS_PX.get(theme.layout_style, 2)}px;",
        f"  --button-radius: {BUTTON_RADIUS_PX.get(theme.button_style, 4)}px;",
        f"  --card-shadow: {CARD_SHADOW.get(theme.card_style, 'none')};",
        f"  --card-border: {CARD_BORDER.get(theme.card_style, 'none')};",
        f"  --logo-url: {logo};",
        f"  --sportsbook-name: {css_string(theme.sportsbook_name)};",
        "}",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
