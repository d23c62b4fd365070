"""Settings of issue 11's items 4-5: the reactor-lag readiness rule, the probe cache, the operations listener and token."""

from __future__ import annotations

import pytest

from tenantsvc.config import ConfigError, load_settings


def test_the_defaults_hold_readiness_for_half_a_second_of_lag_and_cache_probes_five_seconds():
    settings = load_settings({})
    assert (settings.reactor_lag_ready_threshold_s, settings.reactor_lag_ready_recovery_s) == (0.5, 5.0)
    assert settings.health_probe_cache_s == 5.0
    assert (settings.ops_listen, settings.ops_token) == (None, None)


def test_values_are_read_and_the_option_wins_over_the_environment():
    settings = load_settings({"REACTOR_LAG_READY_THRESHOLD": "1.5s", "REACTOR_LAG_READY_RECOVERY": "0",
                              "HEALTH_PROBE_CACHE_SECONDS": "0", "OPS_LISTEN": "tcp:9091:interface=127.0.0.1",
                              "OPS_TOKEN": "x" * 16}, ops_listen="unix:/run/tenantsvc-ops.sock")
    assert (settings.reactor_lag_ready_threshold_s, settings.reactor_lag_ready_recovery_s) == (1.5, 0.0)
    assert settings.health_probe_cache_s == 0.0
    assert settings.ops_listen == "unix:/run/tenantsvc-ops.sock"
    assert settings.ops_token == "x" * 16 and "x" * 16 not in repr(settings)


def test_the_fly_operations_endpoint_with_escaped_ipv6_colons_is_accepted():
    assert load_settings({"OPS_LISTEN": r"tcp6:port=9091:interface=\:\:"}).ops_listen == r"tcp6:port=9091:interface=\:\:"


@pytest.mark.parametrize(("env", "option", "message"), [
    ({"OPS_LISTEN": "tcp:ninety"}, None, "OPS_LISTEN must be a Twisted endpoint string"),
    ({"OPS_LISTEN": "carrier-pigeon:1"}, None, "Unknown endpoint type: 'carrier-pigeon'"),
    ({}, "tcp", "--ops-listen must be a Twisted endpoint string"),
    ({"OPS_TOKEN": "short"}, None, "OPS_TOKEN must be at least 16 characters"),
    ({"OPS_TOKEN": " " + "x" * 20}, None, "OPS_TOKEN must be at least 16 characters without surrounding spaces"),
    ({"REACTOR_LAG_READY_THRESHOLD": "0.01"}, None, "REACTOR_LAG_READY_THRESHOLD must be between 0.05 and 60"),
    ({"REACTOR_LAG_READY_RECOVERY": "a while"}, None, "REACTOR_LAG_READY_RECOVERY must be a number of seconds"),
    ({"HEALTH_PROBE_CACHE_SECONDS": "301"}, None, "HEALTH_PROBE_CACHE_SECONDS must be between 0 and 300"),
])
def test_bad_values_are_refused_with_a_message_naming_the_setting(env, option, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env, ops_listen=option)
