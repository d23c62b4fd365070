"""Rate-limit policies per endpoint class and the Redis/LRU keys buckets are counted under."""

from __future__ import annotations

import pytest

from tenantsvc.core.rate_limits import (
    AUTH, DEFAULT_BUCKET, ENDPOINT_CLASSES, LOGIN_CLIENT, LOGIN_USER, PUBLIC, READ, WRITE, RateLimitPolicies, bucket_key,
    parse_bucket_policy,
)
from tenantsvc.core.token_bucket import BucketPolicy


def test_every_endpoint_class_defaults_to_100_tokens_refilling_at_2_per_second():
    policies = RateLimitPolicies()
    assert DEFAULT_BUCKET == BucketPolicy(100, 2.0)
    assert [policies[c].bucket for c in (PUBLIC, AUTH, WRITE, READ)] == [DEFAULT_BUCKET] * 4
    assert ENDPOINT_CLASSES == (PUBLIC, AUTH, WRITE, READ, LOGIN_CLIENT, LOGIN_USER)


def test_login_buckets_are_tighter_than_the_tenant_wide_ones():
    policies = RateLimitPolicies()
    assert policies[LOGIN_USER].bucket == BucketPolicy(10, 0.05)
    assert policies[LOGIN_CLIENT].bucket == BucketPolicy(30, 0.5)


def test_classes_are_configurable_one_by_one():
    policies = RateLimitPolicies.from_text({"auth": "10/0.2", "write": " 50 / 1 "})
    assert policies[AUTH].bucket == BucketPolicy(10, 0.2)
    assert policies[WRITE].bucket == BucketPolicy(50, 1.0)
    assert policies[PUBLIC].bucket == DEFAULT_BUCKET


@pytest.mark.parametrize("text", ["", "100", "100/", "/2", "0/2", "100/0", "-1/2", "1e3/2", "ten/2"])
def test_malformed_policy_text_is_refused(text):
    with pytest.raises(ValueError):
        parse_bucket_policy(text)


def test_unknown_classes_are_refused_with_their_name():
    with pytest.raises(ValueError, match="admin"):
        RateLimitPolicies.from_text({"admin": "1/1"})
    with pytest.raises(ValueError, match="auth"):
        RateLimitPolicies.from_text({"auth": "lots"})


def test_keys_name_tenant_class_and_extra():
    assert bucket_key("acme", PUBLIC) == "ratelimit:acme:public"
    assert bucket_key("acme", AUTH, "ip:2001:db8::1") == "ratelimit:acme:auth:ip:2001:db8::1"
    assert bucket_key("acme", AUTH, "user:alice.b-c_d") == "ratelimit:acme:auth:user:alice.b-c_d"


@pytest.mark.parametrize("extra", ["user:bob smith", "user:" + "x" * 100, "user:\u00e9", "user:\ud800", "a\r\nb"])
def test_unusual_or_long_extras_become_a_bounded_digest(extra):
    key = bucket_key("acme", AUTH, extra)
    assert key.startswith("ratelimit:acme:auth:h-") and len(key) == len("ratelimit:acme:auth:h-") + 32
    assert key == bucket_key("acme", AUTH, extra)
    assert key != bucket_key("acme", AUTH, extra + "!")


def test_unknown_class_in_a_key_is_a_programming_error():
    with pytest.raises(ValueError):
        bucket_key("acme", "admin")
