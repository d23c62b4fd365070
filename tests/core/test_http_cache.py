"""Strong ETags and RFC 9110 If-None-Match evaluation (weak comparison, lists, ``*``, malformed headers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.http_cache import not_modified, parse_if_none_match, strong_etag

BODY = b'{"primaryColor":"#10B981"}'
ETAG = strong_etag(BODY)


def test_strong_etag_is_quoted_stable_and_body_specific():
    assert ETAG.startswith('"') and ETAG.endswith('"') and not ETAG.startswith("W/")
    assert strong_etag(BODY) == ETAG
    assert strong_etag(BODY + b" ") != ETAG
    assert parse_if_none_match(ETAG) == [ETAG]


@pytest.mark.parametrize(
    "header",
    [
        ETAG,
        f"W/{ETAG}",
        f'"other", {ETAG}',
        f'"a",W/"b" ,  W/{ETAG}',
        f"  {ETAG}  ",
        "*",
        " * ",
    ],
)
def test_matching_headers_answer_not_modified(header):
    assert not_modified(header, ETAG)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        '"other"',
        '"a", "b"',
        ETAG[1:-1],  # unquoted
        f"{ETAG[:-1]}",  # unterminated
        f"w/{ETAG}",  # lower-case weak prefix is not a weak tag
        f"{ETAG} junk",
        f"*, {ETAG}",  # a star inside a list is malformed
        '"a" "b"',
        ",,,",
    ],
)
def test_non_matching_or_malformed_headers_get_a_full_response(header):
    assert not not_modified(header, ETAG)


def test_a_weak_current_etag_still_matches_by_weak_comparison():
    assert not_modified(ETAG, f"W/{ETAG}")


def test_list_parsing_strips_weak_prefixes():
    assert parse_if_none_match('W/"a", "b"') == ['"a"', '"b"']
    assert parse_if_none_match('"a" junk') is None


@given(st.text(max_size=200))
def test_arbitrary_header_text_never_crashes(header):
    assert not_modified(header, ETAG) in (True, False)


@given(st.lists(st.text(alphabet="abcdefXYZ0123456789-_", min_size=0, max_size=12), min_size=1, max_size=5),
       st.booleans())
def test_any_well_formed_list_matches_exactly_when_it_holds_the_tag(opaque_tags, include_current):
    tags = [f'"{tag}"' for tag in opaque_tags] + ([ETAG] if include_current else [])
    assert not_modified(", ".join(tags), ETAG) == (ETAG in tags)
