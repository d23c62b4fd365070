"""Tenant slug and name rules (DESIGN §4): which path prefixes may name a tenant."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.tenants import RESERVED_SLUGS, is_valid_slug, parse_new_tenant
from tenantsvc.core.validation import ValidationFailed

DESIGN_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")
DESIGN_RESERVED = ("api", "admin", "static", "healthz", "readyz", "health", "metrics", "openapi")


@pytest.mark.parametrize("slug", ["acme", "a1b", "bet-365", "x" * 63, "0-0", "abc-def-ghi"])
def test_valid_slugs(slug):
    assert is_valid_slug(slug)


@pytest.mark.parametrize(
    "slug",
    ["", "ab", "x" * 64, "-acme", "acme-", "Acme", "ac_me", "ac.me", "acme ", "ac/me", "acmé", "acme\n"],
)
def test_invalid_slugs(slug):
    assert not is_valid_slug(slug)


@pytest.mark.parametrize("word", DESIGN_RESERVED)
def test_reserved_words_are_refused(word):
    assert word in RESERVED_SLUGS
    assert not is_valid_slug(word)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_A.", max_size=70))
def test_any_accepted_slug_matches_the_design_pattern_and_is_not_reserved(slug):
    if is_valid_slug(slug):
        assert DESIGN_SLUG.match(slug)
        assert slug not in DESIGN_RESERVED


@given(st.from_regex(DESIGN_SLUG, fullmatch=True))
def test_every_design_slug_that_is_not_reserved_is_accepted(slug):
    assert is_valid_slug(slug) == (slug not in RESERVED_SLUGS)


def test_parse_new_tenant_strips_the_name():
    tenant = parse_new_tenant({"slug": "acme", "name": "  Acme Bets  "})
    assert (tenant.slug, tenant.name) == ("acme", "Acme Bets")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"slug": "admin", "name": "Admin"}, {"slug"}),
        ({"slug": "-bad", "name": "Bad"}, {"slug"}),
        ({"slug": 42, "name": "Number"}, {"slug"}),
        ({"slug": "acme", "name": ""}, {"name"}),
        ({"slug": "acme", "name": "x" * 101}, {"name"}),
        ({"slug": "acme", "name": "line\nbreak"}, {"name"}),
        ({"slug": "acme", "name": "Acme", "owner": "me"}, {"owner"}),
        ({}, {"slug", "name"}),
    ],
)
def test_parse_new_tenant_reports_each_bad_field(payload, fields):
    with pytest.raises(ValidationFailed) as caught:
        parse_new_tenant(payload)
    assert set(caught.value.errors) == fields
