"""``HTTP_*`` and ``DRAIN_*`` settings (issue 11): defaults, the cap behind a proxy, clear errors."""

from __future__ import annotations

import pytest

from tenantsvc.config import ConfigError, load_settings


def test_defaults():
    settings = load_settings({})
    assert (settings.http_max_pipelined, settings.http_write_buffer_bytes, settings.http_write_timeout_s,
            settings.http_header_timeout_s, settings.http_max_connections_per_client,
            settings.drain_prestop_delay_s, settings.drain_timeout_s) == (1, 65536, 30.0, 10.0, 256, 5.0, 10.0)


def test_behind_a_trusted_proxy_the_per_peer_cap_is_off_unless_set():
    assert load_settings({"TRUSTED_PROXY_HEADER": "Fly-Client-IP"}).http_max_connections_per_client == 0
    assert load_settings({"TRUSTED_PROXY_HEADER": "Fly-Client-IP",
                          "HTTP_MAX_CONNECTIONS_PER_CLIENT": "1000"}).http_max_connections_per_client == 1000


def test_values_are_read():
    settings = load_settings({"HTTP_MAX_PIPELINED": "4", "HTTP_WRITE_BUFFER_LIMIT": "131072",
                              "HTTP_WRITE_TIMEOUT": "5s", "HTTP_HEADER_TIMEOUT": "2.5",
                              "HTTP_MAX_CONNECTIONS_PER_CLIENT": "0", "DRAIN_PRESTOP_DELAY": "0",
                              "DRAIN_TIMEOUT": "20"})
    assert (settings.http_max_pipelined, settings.http_write_buffer_bytes, settings.http_write_timeout_s,
            settings.http_header_timeout_s, settings.http_max_connections_per_client,
            settings.drain_prestop_delay_s, settings.drain_timeout_s) == (4, 131072, 5.0, 2.5, 0, 0.0, 20.0)


@pytest.mark.parametrize("name, value, message", [
    ("HTTP_MAX_PIPELINED", "0", "HTTP_MAX_PIPELINED must be between 1 and 1000"),
    ("HTTP_WRITE_BUFFER_LIMIT", "64k", "HTTP_WRITE_BUFFER_LIMIT must be a whole number"),
    ("HTTP_WRITE_BUFFER_LIMIT", "100", "HTTP_WRITE_BUFFER_LIMIT must be between 4096"),
    ("HTTP_WRITE_TIMEOUT", "0", "HTTP_WRITE_TIMEOUT must be between 0.5 and 3600 seconds"),
    ("HTTP_HEADER_TIMEOUT", "ten", "HTTP_HEADER_TIMEOUT must be a number of seconds"),
    ("HTTP_HEADER_TIMEOUT", "301", "HTTP_HEADER_TIMEOUT must be between 0.5 and 300 seconds"),
    ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "-1", "HTTP_MAX_CONNECTIONS_PER_CLIENT must be between 0"),
    ("DRAIN_PRESTOP_DELAY", "-2", "DRAIN_PRESTOP_DELAY must be between 0 and 300 seconds"),
    ("DRAIN_TIMEOUT", "forever", "DRAIN_TIMEOUT must be a number of seconds"),
])
def test_a_bad_value_is_a_clear_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value})
