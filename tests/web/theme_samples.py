"""Theme payloads shared by the web tests, written out literally so the tests check the contract, not the code."""

from __future__ import annotations

# DESIGN.md §4: the one default palette.
DEFAULT_THEME = {
    "primaryColor": "#10B981", "secondaryColor": "#1F2937", "accentColor": "#3B82F6",
    "backgroundColor": "#111827", "textColor": "#F9FAFB", "fontFamily": "Inter, sans-serif",
    "layoutStyle": "modern", "buttonStyle": "rounded", "cardStyle": "shadow", "logoType": "default",
    "logoUrl": "", "sportsbookName": "Your Sportsbook",
}

# Every key set to a non-default, valid value (two colours in lower case, which the API normalises).
CUSTOM_THEME = {
    "primaryColor": "#ff0066", "secondaryColor": "#000000", "accentColor": "#00FF00",
    "backgroundColor": "#FFFFFF", "textColor": "#123abc", "fontFamily": "'Open Sans', Arial, sans-serif",
    "layoutStyle": "compact", "buttonStyle": "minimal", "cardStyle": "border", "logoType": "image",
    "logoUrl": "https://cdn.example.com/acme/logo.png?v=2", "sportsbookName": "Acme Bets",
}
