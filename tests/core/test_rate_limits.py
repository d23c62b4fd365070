"""Rate-limit policies: the stack of buckets of each endpoint class and of login, and their keys."""

from __future__ import annotations

import pytest

from tenantsvc.core.rate_limits import (
    AUTH, AUTH_CLIENT, CLIENT, DEFAULT_BUCKETS, ENDPOINT_CLASSES, LOGIN_USER, PUBLIC, READ, READ_CLIENT, TENANT, WRITE,
    WRITE_CLIENT, Level, RateLimitPolicies, RateLimitPolicy, bucket_key, bucket_keys, parse_bucket_policy,
)
from tenantsvc.core.token_bucket import BucketPolicy


def test_each_class_but_public_is_a_client_bucket_under_the_tenant_ceiling():
    policies = RateLimitPolicies()
    assert ENDPOINT_CLASSES == (PUBLIC, AUTH, WRITE, READ)
    assert [(level.name, level.scope) for level in policies[PUBLIC].levels] == [(PUBLIC, TENANT)]
    for endpoint_class, client_bucket in ((AUTH, AUTH_CLIENT), (WRITE, WRITE_CLIENT), (READ, READ_CLIENT)):
        policy = policies[endpoint_class]
        assert policy.endpoint_class == endpoint_class
        assert [(level.name, level.scope) for level in policy.levels] == [(client_bucket, CLIENT),
                                                                         (endpoint_class, TENANT)]
        assert policy.buckets == (DEFAULT_BUCKETS[client_bucket], DEFAULT_BUCKETS[endpoint_class])


def test_login_is_limited_per_username_and_client_then_per_client_then_per_tenant():
    login = RateLimitPolicies().login
    assert login.endpoint_class == AUTH
    assert [(level.name, level.scope) for level in login.levels] == [(LOGIN_USER, CLIENT), (AUTH_CLIENT, CLIENT),
                                                                     (AUTH, TENANT)]
    assert login.levels[0].bucket == BucketPolicy(10, 0.05)  # 10 tries at an account from one client, then 1 per 20 s


def test_client_buckets_are_far_smaller_than_their_tenant_ceiling_by_default():
    for endpoint_class, client_bucket in ((AUTH, AUTH_CLIENT), (WRITE, WRITE_CLIENT), (READ, READ_CLIENT)):
        client, tenant = DEFAULT_BUCKETS[client_bucket], DEFAULT_BUCKETS[endpoint_class]
        assert client.capacity * 10 <= tenant.capacity and client.refill_per_s * 10 <= tenant.refill_per_s


def test_buckets_are_configurable_one_by_one():
    policies = RateLimitPolicies.from_text({"auth": "10/0.2", "read_client": " 50 / 1 "})
    assert policies[AUTH].ceiling == BucketPolicy(10, 0.2)
    assert policies.login.ceiling == BucketPolicy(10, 0.2)
    assert policies[READ].levels[0].bucket == BucketPolicy(50, 1.0)
    assert policies[READ].ceiling == DEFAULT_BUCKETS[READ]


@pytest.mark.parametrize("text", ["", "100", "100/", "/2", "0/2", "100/0", "-1/2", "1e3/2", "ten/2"])
def test_malformed_policy_text_is_refused(text):
    with pytest.raises(ValueError):
        parse_bucket_policy(text)


def test_unknown_buckets_are_refused_with_their_name():
    with pytest.raises(ValueError, match="admin"):
        RateLimitPolicies.from_text({"admin": "1/1"})
    with pytest.raises(ValueError, match="auth"):
        RateLimitPolicies.from_text({"auth": "lots"})


def test_a_policy_ends_with_its_tenant_ceiling():
    with pytest.raises(ValueError):
        RateLimitPolicy(READ, (Level(READ_CLIENT, CLIENT, BucketPolicy(1, 1.0)),))


def test_keys_name_tenant_bucket_and_extra():
    assert bucket_key("acme", PUBLIC) == "ratelimit:acme:public"
    assert bucket_key("acme", READ_CLIENT, "2001:db8::1") == "ratelimit:acme:read_client:2001:db8::1"


def test_a_request_has_one_key_per_level():
    policies = RateLimitPolicies()
    assert bucket_keys("acme", policies[READ], "127.0.0.7") == ("ratelimit:acme:read_client:127.0.0.7",
                                                                "ratelimit:acme:read")
    login = bucket_keys("acme", policies.login, "127.0.0.7", "Alice")
    assert login[1:] == ("ratelimit:acme:auth_client:127.0.0.7", "ratelimit:acme:auth")
    assert login[0].startswith("ratelimit:acme:login_user:h-")
    assert login[0] == bucket_keys("acme", policies.login, "127.0.0.7", "alice")[0]  # usernames fold case
    assert login[0] != bucket_keys("acme", policies.login, "127.0.0.8", "alice")[0]  # and pair with the client
    assert login[0] != bucket_keys("acme", policies.login, "127.0.0.7", "bob")[0]


@pytest.mark.parametrize("extra", ["bob smith", "x" * 100, "\u00e9", "\ud800", "a\r\nb", "alice@127.0.0.1"])
def test_unusual_or_long_extras_become_a_bounded_digest(extra):
    key = bucket_key("acme", AUTH_CLIENT, extra)
    assert key.startswith("ratelimit:acme:auth_client:h-") and len(key) == len("ratelimit:acme:auth_client:h-") + 32
    assert key == bucket_key("acme", AUTH_CLIENT, extra)
    assert key != bucket_key("acme", AUTH_CLIENT, extra + "!")


def test_unknown_bucket_in_a_key_is_a_programming_error():
    with pytest.raises(ValueError):
        bucket_key("acme", "admin")
