"""Correlation/request ids: which inbound values are echoed, and W3C traceparent parsing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.ids import choose_ids, is_valid_id, trace_id_from_traceparent

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", ["a", "req-123", "A.b_c-9", "x" * 64, TRACE_ID])
def test_valid_ids(value):
    assert is_valid_id(value)


@pytest.mark.parametrize(
    "value",
    [None, "", "x" * 65, "abc\r\nSet-Cookie: a=b", "abc\n", "abc\r", "a b", "<script>", "id;drop", "ünï", "a/b"],
)
def test_invalid_ids(value):
    assert not is_valid_id(value)


@given(st.text(max_size=80))
def test_any_accepted_id_is_short_and_header_safe(value):
    if is_valid_id(value):
        assert 1 <= len(value) <= 64
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in value)


def test_traceparent_yields_its_trace_id():
    assert trace_id_from_traceparent(TRACEPARENT) == TRACE_ID
    assert trace_id_from_traceparent(f"  {TRACEPARENT} ") == TRACE_ID


@pytest.mark.parametrize(
    "header",
    [
        None, "", "garbage",
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # upper-case hex is invalid
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01\r\nX: y",
    ],
)
def test_invalid_traceparent_yields_nothing(header):
    assert trace_id_from_traceparent(header) is None


def _minter():
    counter = itertools.count(1)
    return lambda: f"new-{next(counter)}"


def test_valid_inbound_ids_are_kept():
    assert choose_ids("corr-1", "req-1", TRACEPARENT, _minter()) == ("corr-1", "req-1")


def test_traceparent_supplies_the_correlation_id_when_no_valid_inbound_one():
    assert choose_ids(None, None, TRACEPARENT, _minter()) == (TRACE_ID, "new-1")
    assert choose_ids("bad\r\nid", "req-1", TRACEPARENT, _minter()) == (TRACE_ID, "req-1")


def test_invalid_inbound_ids_are_replaced_never_echoed():
    correlation, request_id = choose_ids("x" * 65, "a\r\nb", "nonsense", _minter())
    assert (correlation, request_id) == ("new-1", "new-2")
