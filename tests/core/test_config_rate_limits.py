"""``RATE_LIMIT_*``: tenant-wide ceilings under their old names, per-client buckets under new ones, the old name of
the per-client auth bucket still accepted, every value checked at start-up with a message naming the variable."""

from __future__ import annotations

import pytest

from tenantsvc.config import ConfigError, load_settings
from tenantsvc.core.rate_limits import AUTH, DEFAULT_BUCKETS, READ, RateLimitPolicies
from tenantsvc.core.token_bucket import BucketPolicy


def policies(**env: str) -> RateLimitPolicies:
    return RateLimitPolicies.from_text(load_settings(env).rate_limits)


def test_unset_means_the_defaults():
    assert load_settings({}).rate_limits == {}
    assert policies().buckets == DEFAULT_BUCKETS


def test_the_class_names_set_the_tenant_ceiling_and_the_client_names_the_client_bucket():
    configured = policies(RATE_LIMIT_READ="5000/500", RATE_LIMIT_READ_CLIENT="60/2", RATE_LIMIT_WRITE_CLIENT="10/1",
                          RATE_LIMIT_LOGIN_USER="5/0.1")
    assert configured[READ].buckets == (BucketPolicy(60, 2.0), BucketPolicy(5000, 500.0))
    assert configured["write"].levels[0].bucket == BucketPolicy(10, 1.0)
    assert configured.login.levels[0].bucket == BucketPolicy(5, 0.1)


def test_the_old_login_client_name_sets_the_per_client_auth_bucket():
    configured = policies(RATE_LIMIT_LOGIN_CLIENT="20/0.2")
    assert configured[AUTH].levels[0].bucket == BucketPolicy(20, 0.2)
    assert configured.login.levels[1].bucket == BucketPolicy(20, 0.2)
    assert policies(RATE_LIMIT_AUTH_CLIENT="40/1")[AUTH].levels[0].bucket == BucketPolicy(40, 1.0)


def test_old_and_new_names_of_one_bucket_together_are_refused():
    with pytest.raises(ConfigError, match="RATE_LIMIT_LOGIN_CLIENT is the old name of RATE_LIMIT_AUTH_CLIENT"):
        load_settings({"RATE_LIMIT_LOGIN_CLIENT": "20/0.2", "RATE_LIMIT_AUTH_CLIENT": "40/1"})


@pytest.mark.parametrize(("name", "raw"), [
    ("RATE_LIMIT_READ_CLIENT", "lots"), ("RATE_LIMIT_READ_CLIENT", "0/1"), ("RATE_LIMIT_WRITE_CLIENT", "10/0"),
    ("RATE_LIMIT_AUTH_CLIENT", "10"), ("RATE_LIMIT_READ", "1e3/2"), ("RATE_LIMIT_LOGIN_USER", "-1/1"),
    ("RATE_LIMIT_LOGIN_CLIENT", "x/y"),
])
def test_malformed_values_stop_start_up_naming_the_variable(name, raw):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: raw})
    assert str(caught.value).startswith(f"{name} must be <capacity>/<tokens per second>")
    assert repr(raw) in str(caught.value)
