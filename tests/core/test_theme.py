"""The theme model: one default palette, strict validation on save, and the exact public JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.theme import DEFAULT_THEME, Theme, parse_theme
from tenantsvc.core.validation import ValidationFailed

DESIGN_KEYS = [
    "primaryColor", "secondaryColor", "accentColor", "backgroundColor", "textColor", "fontFamily",
    "layoutStyle", "buttonStyle", "cardStyle", "logoType", "logoUrl", "sportsbookName",
]
DESIGN_DEFAULTS = {
    "primaryColor": "#10B981",
    "secondaryColor": "#1F2937",
    "accentColor": "#3B82F6",
    "backgroundColor": "#111827",
    "textColor": "#F9FAFB",
    "fontFamily": "Inter, sans-serif",
    "layoutStyle": "modern",
    "buttonStyle": "rounded",
    "cardStyle": "shadow",
    "logoType": "default",
    "logoUrl": "",
    "sportsbookName": "Your Sportsbook",
}


def _rejected_fields(payload: dict) -> set[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_theme(payload)
    return set(caught.value.errors)


def test_default_palette_is_the_design_one():
    assert DEFAULT_THEME.to_wire() == DESIGN_DEFAULTS


def test_json_bytes_have_exactly_the_design_keys_in_order():
    decoded = json.loads(DEFAULT_THEME.to_json_bytes())
    assert list(decoded) == DESIGN_KEYS
    assert decoded == DESIGN_DEFAULTS


def test_json_bytes_are_compact_utf8():
    body = parse_theme({"sportsbookName": "Bet Ñandú"}).to_json_bytes()
    assert b'": "' not in body and b'", "' not in body
    assert "Ñandú".encode() in body


def test_absent_keys_keep_the_base_values():
    base = parse_theme({"primaryColor": "#000000"})
    theme = parse_theme({"textColor": "#ffffff"}, base)
    assert (theme.primary_color, theme.text_color, theme.secondary_color) == ("#000000", "#FFFFFF", "#1F2937")


def test_a_full_valid_theme_is_accepted_and_normalised():
    payload = {
        "primaryColor": "#aabbcc", "secondaryColor": "#000000", "accentColor": "#FFFFFF",
        "backgroundColor": "#123456", "textColor": "#abcdef", "fontFamily": "  'Open Sans', \"Roboto\", sans-serif ",
        "layoutStyle": "compact", "buttonStyle": "sharp", "cardStyle": "glow", "logoType": "image",
        "logoUrl": "https://cdn.example.test/logo.png", "sportsbookName": "  Acme Bets ",
    }
    theme = parse_theme(payload)
    assert theme.primary_color == "#AABBCC" and theme.text_color == "#ABCDEF"
    assert theme.font_family == "'Open Sans', \"Roboto\", sans-serif"
    assert theme.sportsbook_name == "Acme Bets"
    assert theme.logo_url == "https://cdn.example.test/logo.png"


@pytest.mark.parametrize("value", ["#12345", "#1234567", "123456", "#GGGGGG", "red", "#FFFFFF\n", "", 0x123456, None])
def test_colours_must_be_hash_rrggbb(value):
    assert _rejected_fields({"primaryColor": value}) == {"primaryColor"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("layoutStyle", "fancy"), ("buttonStyle", "ROUNDED"), ("cardStyle", ""), ("logoType", None), ("layoutStyle", 1)],
)
def test_style_fields_must_be_known_enum_values(field, value):
    assert _rejected_fields({field: value}) == {field}


@pytest.mark.parametrize("url", ["", "http://example.test/a.png", "https://example.test/logo.svg?v=2"])
def test_logo_url_accepts_http_urls_or_empty(url):
    assert parse_theme({"logoUrl": url}).logo_url == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)", "ftp://example.test/logo.png", "//example.test/logo.png", "https://",
        "https://example.test/a b.png", "https://example.test/a\".png", "https://example.test/a').png",
        "https://example.test/a\\b.png", "https://example.test/" + "a" * 2048, 42,
    ],
)
def test_logo_url_rejects_other_schemes_and_css_breaking_characters(url):
    assert _rejected_fields({"logoUrl": url}) == {"logoUrl"}


@pytest.mark.parametrize(
    "font",
    ["'Open Sans, sans-serif", '"Roboto', "Comic; Sans", "x" * 101, "", "Inter</style>", "Inter\nSans"],
)
def test_font_family_rejects_odd_characters_unbalanced_quotes_and_long_values(font):
    assert _rejected_fields({"fontFamily": font}) == {"fontFamily"}


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "Bad\u0000Name", "two\nlines", 7])
def test_sportsbook_name_length_and_characters(name):
    assert _rejected_fields({"sportsbookName": name}) == {"sportsbookName"}


def test_unknown_fields_are_rejected_alongside_other_errors():
    assert _rejected_fields({"primary_color": "#000000", "logoUrl": "ftp://x"}) == {"primary_color", "logoUrl"}


def test_from_row_falls_back_to_defaults_for_missing_columns():
    theme = Theme.from_row({"primary_color": "#000000", "text_color": None})
    assert theme.primary_color == "#000000" and theme.text_color == DEFAULT_THEME.text_color


theme_fields = st.dictionaries(
    st.sampled_from(DESIGN_KEYS + ["extra"]),
    st.one_of(st.text(max_size=40), st.sampled_from(["#a1B2c3", "modern", "glow", "https://x.test/l.png"]),
              st.integers(), st.none()),
)


@given(theme_fields)
def test_parse_theme_either_accepts_or_reports_fields_and_accepted_themes_round_trip(payload):
    try:
        theme = parse_theme(payload)
    except ValidationFailed as failed:
        assert failed.errors and set(failed.errors) <= set(payload)
        return
    wire = json.loads(theme.to_json_bytes())
    assert list(wire) == DESIGN_KEYS
    assert parse_theme(wire) == theme
    assert Theme.from_wire(wire) == theme  # what the theme cache rebuilds from a cached body
