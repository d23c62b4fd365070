"""The pieces the public fast path is made of: direct header access, memoised rate-limit headers, batched ids."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from tenantsvc.core.rate_limits import PUBLIC, tenant_policy
from tenantsvc.core.token_bucket import BucketPolicy, decision_for
from tenantsvc.web import request as request_module
from tenantsvc.web.limits import apply_headers
from tenantsvc.web.public_theme import RateLimitLines
from tenantsvc.web.request import canonical_header, request_header, set_response_headers
from tenantsvc.web.root import RandomIds

POLICY = tenant_policy(PUBLIC, BucketPolicy(capacity=100, refill_per_s=2.0))


def test_the_installed_twisted_lets_the_fast_path_touch_headers_directly():
    # If a Twisted upgrade changes how Headers stores values, this fails rather than silently slowing down.
    assert request_module.DIRECT_HEADERS


@pytest.mark.parametrize("direct", [True, False])
def test_setting_headers_directly_is_what_set_header_does(monkeypatch, direct):
    monkeypatch.setattr(request_module, "DIRECT_HEADERS", direct)
    ours, theirs = DummyRequest([b""]), DummyRequest([b""])
    pairs = [(b"X-Request-ID", b"abc"), (b"etag", b'"e"'), (b"Cache-Control", b"public"), (b"ETag", b'"f"')]
    set_response_headers(ours, [(canonical_header(name), value) for name, value in pairs])
    for name, value in pairs:  # what twisted.web's Request.setHeader does
        theirs.responseHeaders.setRawHeaders(name, [value])
    assert list(ours.responseHeaders.getAllRawHeaders()) == list(theirs.responseHeaders.getAllRawHeaders())


@pytest.mark.parametrize("direct", [True, False])
def test_reading_a_request_header_is_what_get_header_does(monkeypatch, direct):
    monkeypatch.setattr(request_module, "DIRECT_HEADERS", direct)
    request = Request(DummyChannel())
    request.requestHeaders = Headers({b"if-none-match": [b'"a"', b'"b"']})
    assert request_header(request, canonical_header(b"If-None-Match")) == b'"b"'  # the last, as getHeader
    assert request_header(request, canonical_header(b"X-Request-ID")) is None


def test_canonical_names_are_twisted_s_and_invalid_names_are_refused():
    assert canonical_header(b"x-correlation-id") == b"X-Correlation-Id"
    assert canonical_header(b"etag") == b"ETag"
    with pytest.raises(ValueError):
        canonical_header(b"bad name")


@given(tokens=st.floats(min_value=0.0, max_value=100.0), allowed=st.booleans())
def test_memoised_rate_limit_lines_are_what_apply_headers_sets_on_the_wire(tokens, allowed):
    decision = decision_for(POLICY.ceiling, tokens, allowed)
    expected = DummyRequest([b""])
    apply_headers(expected, POLICY, decision)
    wire = b"".join(name + b": " + value + b"\r\n"  # as HTTPChannel.writeHeaders writes them
                    for name, values in expected.responseHeaders.getAllRawHeaders() for value in values)
    memo = RateLimitLines(POLICY)
    for _ in range(2):  # the second answer comes from the memo
        assert memo(decision) == wire


def test_the_rate_limit_line_memo_is_bounded():
    memo = RateLimitLines(POLICY, max_entries=3)
    for tokens in range(10):
        memo(decision_for(POLICY.ceiling, float(tokens), True))
    assert len(memo._memo) <= 3


def test_ids_are_128_random_bits_in_hex_drawn_a_batch_at_a_time(monkeypatch):
    calls = []
    real_urandom = os.urandom

    def counting_urandom(size: int) -> bytes:
        calls.append(size)
        return real_urandom(size)

    monkeypatch.setattr("tenantsvc.web.root.os.urandom", counting_urandom)
    ids = RandomIds(batch=4)
    drawn = [ids() for _ in range(9)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in drawn)
    assert len(set(drawn)) == 9
    assert calls == [64, 64, 64]  # 16 bytes per id, 4 ids per call
    ids.forget()
    ids()
    assert calls == [64, 64, 64, 64]  # after forget() nothing drawn before is handed out
