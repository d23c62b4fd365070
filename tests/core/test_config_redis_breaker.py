"""``REDIS_BREAKER_*``: the Redis circuit breaker's thresholds are parsed, defaulted and refused clearly."""

from __future__ import annotations

import pytest

from tenantsvc.config import ConfigError, load_settings


def breaker_settings(**env: str) -> tuple[int, float, float]:
    settings = load_settings(env)
    return settings.redis_breaker_failures, settings.redis_breaker_open_s, settings.redis_breaker_open_max_s


def test_defaults_open_after_three_failures_for_one_to_five_seconds():
    assert breaker_settings() == (3, 1.0, 5.0)


def test_values_are_read_with_an_optional_seconds_suffix():
    assert breaker_settings(REDIS_BREAKER_FAILURES="5", REDIS_BREAKER_OPEN="0.5s",
                            REDIS_BREAKER_OPEN_MAX="30") == (5, 0.5, 30.0)


def test_a_first_period_above_the_default_cap_raises_the_cap_with_it():
    assert breaker_settings(REDIS_BREAKER_OPEN="10") == (3, 10.0, 10.0)


@pytest.mark.parametrize(("name", "raw"), [
    ("REDIS_BREAKER_FAILURES", "0"), ("REDIS_BREAKER_FAILURES", "three"), ("REDIS_BREAKER_FAILURES", "2.5"),
    ("REDIS_BREAKER_OPEN", "0"), ("REDIS_BREAKER_OPEN", "1min"), ("REDIS_BREAKER_OPEN_MAX", "-1"),
    ("REDIS_BREAKER_OPEN_MAX", "7200"),
])
def test_bad_values_name_the_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: raw})


def test_a_cap_below_the_first_period_is_refused():
    with pytest.raises(ConfigError, match="REDIS_BREAKER_OPEN_MAX must be at least REDIS_BREAKER_OPEN"):
        load_settings({"REDIS_BREAKER_OPEN": "3", "REDIS_BREAKER_OPEN_MAX": "2"})
