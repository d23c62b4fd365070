"""Theme CSS rendering: the size mapping of the original system and escaping of stored values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from tenantsvc.core.theme import Theme
from tenantsvc.core.theme_css import css_string, render_theme_css


@pytest.mark.parametrize("layout,spacing,radius", [
    ("modern", 16, 8), ("classic", 12, 4), ("compact", 8, 6), ("wide", 20, 12), ("minimal", 6, 2),
])
def test_layout_sizes_follow_the_original_mapping(layout, spacing, radius):
    css = render_theme_css(Theme(layout_style=layout)).decode()
    assert f"--layout-spacing: {spacing}px;" in css
    assert f"--layout-radius: {radius}px;" in css


@pytest.mark.parametrize("button,radius", [("rounded", 25), ("sharp", 0), ("minimal", 4)])
def test_button_radius_follows_the_original_mapping(button, radius):
    assert f"--button-radius: {radius}px;" in render_theme_css(Theme(button_style=button)).decode()


def test_colours_and_name_are_rendered_as_custom_properties():
    css = render_theme_css(Theme(primary_color="#ABCDEF", sportsbook_name="Acme Bets")).decode()
    assert css.startswith(":root {") and css.rstrip().endswith("}")
    assert "--primary-color: #ABCDEF;" in css
    assert '--sportsbook-name: "Acme Bets";' in css
    assert "--logo-url: none;" in css


def test_hostile_name_cannot_close_the_block_or_inject_rules():
    css = render_theme_css(Theme(sportsbook_name='x"; } body { display:none } /*')).decode()
    assert css.count("{") == 1 and css.count("}") == 1
    assert "body {" not in css and "/*" not in css
    name_line = next(line for line in css.splitlines() if line.strip().startswith("--sportsbook-name:"))
    assert name_line.endswith('";') and name_line.count('"') == 2


@given(st.text(max_size=200))
def test_css_string_never_contains_raw_quote_backslash_or_braces_beyond_escapes(text):
    rendered = css_string(text)
    inner = rendered[1:-1]
    assert rendered.startswith('"') and rendered.endswith('"')
    assert '"' not in inner and "{" not in inner and "}" not in inner and "\n" not in inner and "<" not in inner
    # every backslash starts a 6-digit hex escape
    assert re.fullmatch(r"(?:[^\\]|\\[0-9a-f]{6})*", inner)


def test_logo_url_is_quoted_and_escaped():
    css = render_theme_css(Theme(logo_url="https://cdn.example/logo.png")).decode()
    assert '--logo-url: url("https://cdn.example/logo.png");' in css
