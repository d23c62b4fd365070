"""Settings: every variable of DESIGN §4 is parsed, bad values name the variable, secrets stay out of repr."""

from __future__ import annotations

import pytest

from tenantsvc.config import (
    DEFAULT_SQLITE_PATH,
    ConfigError,
    PostgresTarget,
    SqliteTarget,
    load_settings,
    parse_duration_ms,
)

ADMIN_TOKEN = "an-admin-token-of-some-length"

FULL_ENV = {
    "DATABASE_URL": "postgresql://app:db-secret@db.internal:6432/tenants?sslmode=require",
    "REDIS_URL": "rediss://:redis-secret@cache.internal:6380/3",
    "PROCESS_TYPE": "worker_odds",
    "DB_WEB_POOL_MAX": "30",
    "DB_WORKER_POOL_MAX": "4",
    "DB_POOL_MIN": "3",
    "DB_CONN_TIMEOUT": "2.5",
    "DB_STATEMENT_TIMEOUT": "1500ms",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT": "1min",
    "DB_PREPARE_THRESHOLD": "none",
    "ENVIRONMENT": "staging",
    "APP_VERSION": "2026.11.1",
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "GOALSERVE_BASE_URL": "https://feeds.example.test/getfeed/",
    "GOALSERVE_API_KEY": "goalserve-secret",
    "PORT": "9090",
    "LOG_FILE": "/tmp/tenantsvc.json",
    "MAX_BODY_BYTES": "2048",
}


def test_every_design_variable_is_parsed():
    settings = load_settings(FULL_ENV)
    assert settings.database == PostgresTarget(host="db.internal", port=6432, dbname="tenants", user="app",
                                                password="db-secret", options={"sslmode": "require"})
    assert settings.redis is not None
    assert (settings.redis.host, settings.redis.port, settings.redis.db) == ("cache.internal", 6380, 3)
    assert settings.redis.password == "redis-secret" and settings.redis.tls
    assert settings.role == "worker_odds"
    assert (settings.db_web_pool_max, settings.db_worker_pool_max, settings.db_pool_min) == (30, 4, 3)
    assert settings.db_conn_timeout_s == 2.5
    assert settings.db_statement_timeout_ms == 1500
    assert settings.db_idle_in_transaction_timeout_ms == 60_000
    assert settings.environment == "staging"
    assert settings.app_version == "2026.11.1"
    assert settings.admin_token == ADMIN_TOKEN
    assert settings.goalserve_base_url == "https://feeds.example.test/getfeed"
    assert settings.goalserve_api_key == "goalserve-secret"
    assert settings.listen == "tcp:9090"
    assert settings.log_file == "/tmp/tenantsvc.json"
    assert settings.max_body_bytes == 2048


def test_defaults_are_the_embedded_laptop_setup():
    settings = load_settings({})
    assert settings.database == SqliteTarget(DEFAULT_SQLITE_PATH)
    assert settings.redis is None
    assert settings.role == "all" and settings.listen == "tcp:8080"
    assert (settings.db_web_pool_max, settings.db_worker_pool_max, settings.db_pool_min) == (20, 5, 2)
    assert settings.db_conn_timeout_s == 5.0
    assert settings.db_statement_timeout_ms == 3000
    assert settings.db_idle_in_transaction_timeout_ms == 5000
    assert settings.environment == "development" and settings.is_development
    assert settings.admin_token is None and settings.goalserve_api_key is None
    assert settings.log_file is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sqlite:///srv/data/t.db", "/srv/data/t.db"), ("sqlite:var/t.db", "var/t.db"), ("data/t.sqlite3", "data/t.sqlite3")],
)
def test_sqlite_database_urls(raw, expected):
    assert load_settings({"DATABASE_URL": raw}).database == SqliteTarget(expected)


def test_options_override_the_environment():
    settings = load_settings({"PROCESS_TYPE": "web", "PORT": "9000"}, role="worker_settlement",
                             listen="unix:/tmp/t.sock", demo=True)
    assert (settings.role, settings.listen, settings.demo) == ("worker_settlement", "unix:/tmp/t.sock", True)


PRODUCTION = {"ENVIRONMENT": "production", "DATABASE_URL": "postgresql://app@db.internal:6432/tenantsvc",
              "GOALSERVE_API_KEY": "feed-key"}


def test_production_logs_to_a_file_by_default():
    assert load_settings(PRODUCTION).log_file is not None


def test_production_refuses_the_sqlite_default():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"ENVIRONMENT": "production"})


@pytest.mark.parametrize("raw", ["postgresql://admin@pgb:6432/tenantsvc", "http://pgb/pgbouncer", "nonsense"])
def test_pgbouncer_admin_url_must_name_the_admin_console(raw):
    with pytest.raises(ConfigError, match="PGBOUNCER_ADMIN_URL"):
        load_settings({"PGBOUNCER_ADMIN_URL": raw})


def test_pgbouncer_admin_url_is_kept_out_of_repr():
    settings = load_settings({"PGBOUNCER_ADMIN_URL": "postgresql://stats:s3cret@pgb:6432/pgbouncer"})
    assert settings.pgbouncer_admin_url.endswith("/pgbouncer") and "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "milliseconds"),
    [("3s", 3000), ("500ms", 500), ("1min", 60_000), ("250", 250), (" 2 s ", 2000), ("0", 0)],
)
def test_durations_follow_postgres_units(raw, milliseconds):
    assert parse_duration_ms("DB_STATEMENT_TIMEOUT", raw) == milliseconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_STATEMENT_TIMEOUT", "abc"),
        ("DB_STATEMENT_TIMEOUT", "-1s"),
        ("DB_STATEMENT_TIMEOUT", "25h"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT", "soon"),
        ("DB_WEB_POOL_MAX", "0"),
        ("DB_WEB_POOL_MAX", "many"),
        ("DB_WORKER_POOL_MAX", "0"),
        ("DB_POOL_MIN", "-1"),
        ("DB_CONN_TIMEOUT", "abc"),
        ("DB_CONN_TIMEOUT", "0"),
        ("REDIS_URL", "ftp://x"),
        ("REDIS_URL", "redis://cache:notaport/0"),
        ("REDIS_URL", "redis://cache/99"),
        ("DATABASE_URL", "postgresql://db:notaport/tenants"),
        ("DATABASE_URL", "postgres:tenants"),
        ("DATABASE_URL", "mysql://db/tenants"),
        ("DATABASE_URL", "postgresql:///tenants"),
        ("DATABASE_URL", "postgresql://db/"),
        ("DATABASE_URL", "sqlite://relative"),
        ("DATABASE_URL", "postgresql://db/tenants?prepare_threshold=5"),
        ("DB_PREPARE_THRESHOLD", "5"),
        ("ADMIN_TOKEN", "short"),
        ("PORT", "70000"),
        ("PORT", "http"),
        ("ENVIRONMENT", "prod"),
        ("PROCESS_TYPE", "scheduler"),
        ("GOALSERVE_BASE_URL", "ftp://feeds.example.test"),
        ("MAX_BODY_BYTES", "1"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert variable in str(caught.value)


def test_database_url_error_does_not_echo_the_password():
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "postgresql://app:db-secret@db:notaport/tenants"})
    assert "db-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("role", "expected_max"),
    [("all", 30), ("web", 30), ("worker_odds", 4), ("worker_settlement", 4)],
)
def test_pool_size_follows_the_role(role, expected_max):
    settings = load_settings({"DB_WEB_POOL_MAX": "30", "DB_WORKER_POOL_MAX": "4", "DB_POOL_MIN": "2",
                              "GOALSERVE_API_KEY": "k"}, role=role)
    assert settings.pool_max == expected_max
    assert settings.pool_min == 2


def test_pool_minimum_never_exceeds_the_ceiling():
    settings = load_settings({"DB_WORKER_POOL_MAX": "2", "DB_POOL_MIN": "8", "GOALSERVE_API_KEY": "k"},
                             role="worker_odds")
    assert (settings.pool_max, settings.pool_min) == (2, 2)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://app:db-secret@db.internal/tenants",
        "postgresql://db.internal/tenants?user=app&password=db-secret",
    ],
)
def test_secrets_stay_out_of_repr_and_descriptions(database_url):
    env = dict(FULL_ENV, DATABASE_URL=database_url)
    settings = load_settings(env)
    assert settings.database.password == "db-secret"
    shown = repr(settings) + settings.database.describe() + (settings.redis.describe() if settings.redis else "")
    for secret in ("db-secret", "redis-secret", ADMIN_TOKEN, "goalserve-secret"):
        assert secret not in shown


def test_settings_are_frozen():
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.role = "web"  # type: ignore[misc]


def test_every_variable_the_code_reads_is_listed_for_help_and_docs():
    import re
    from pathlib import Path

    import tenantsvc.config as config

    source = Path(config.__file__).read_text()
    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    read |= set(config.RATE_LIMIT_VARIABLES.values()) | set(config.RATE_LIMIT_OLD_NAMES)  # read through these tables
    assert read == set(config.ENVIRONMENT_VARIABLES)
    readme = (Path(config.__file__).parents[1] / "README.md").read_text()
    assert [name for name in config.ENVIRONMENT_VARIABLES if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("role", ["worker_odds", "worker_settlement"])
def test_worker_roles_refuse_to_start_without_a_feed_key_outside_demo(role):
    with pytest.raises(ConfigError, match="GOALSERVE_API_KEY must be set for --role " + role):
        load_settings({}, role=role)
    assert load_settings({}, role=role, demo=True).runs_worker(role)


def test_role_all_without_a_key_runs_no_feed_workers_in_development_and_refuses_elsewhere():
    settings = load_settings({})
    assert settings.serves_web and not settings.runs_feed_workers
    assert load_settings({}, demo=True).runs_worker("worker_odds")
    assert load_settings({"GOALSERVE_API_KEY": "k"}).runs_worker("worker_settlement")
    with pytest.raises(ConfigError, match="GOALSERVE_API_KEY"):
        load_settings({"ENVIRONMENT": "staging"})


def test_web_role_runs_no_feed_worker_even_with_a_key():
    settings = load_settings({"GOALSERVE_API_KEY": "k"}, role="web")
    assert not settings.runs_worker("worker_odds") and not settings.runs_worker("worker_settlement")


def test_the_feed_key_is_kept_out_of_the_settings_repr():
    assert "sekrit-key" not in repr(load_settings({"GOALSERVE_API_KEY": "sekrit-key"}))


def test_odds_sports_default_to_every_feed_sport_and_accept_a_subset():
    from tenantsvc.core.odds import SPORTS

    assert load_settings({}).odds_sports == SPORTS
    assert load_settings({"ODDS_SPORTS": " Soccer, tennis,soccer"}).odds_sports == ("soccer", "tennis")


@pytest.mark.parametrize("raw", ["soccer,curling", ",", "snooker"])
def test_unknown_odds_sports_are_refused_with_the_names(raw):
    with pytest.raises(ConfigError, match="ODDS_SPORTS"):
        load_settings({"ODDS_SPORTS": raw})


@pytest.mark.parametrize("name,raw", [("ODDS_MAX_AGE", "5"), ("ODDS_POLL_INTERVAL", "x"),
                                      ("SETTLEMENT_REVIEW_AFTER", "60"), ("GOALSERVE_TIMEOUT", "0")])
def test_sportsbook_durations_are_checked(name, raw):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: raw})


def test_demo_mode_polls_the_sports_of_the_bundled_sample_feed():
    assert load_settings({}, demo=True).odds_sports == ("soccer", "basketball")
    assert load_settings({"ODDS_SPORTS": "tennis"}, demo=True).odds_sports == ("tennis",)


@pytest.mark.parametrize(("raw", "expected_ms"), [(None, 100), ("250", 250), ("250ms", 250), ("2s", 2000)])
def test_the_slow_request_log_threshold_is_a_duration(raw, expected_ms):
    env = {} if raw is None else {"ACCESS_LOG_SLOW_THRESHOLD": raw}
    assert load_settings(env).access_log_slow_threshold_ms == expected_ms


@pytest.mark.parametrize("raw", ["0", "fast", "-5ms", "25h"])
def test_a_bad_slow_request_log_threshold_names_the_variable(raw):
    with pytest.raises(ConfigError, match="ACCESS_LOG_SLOW_THRESHOLD"):
        load_settings({"ACCESS_LOG_SLOW_THRESHOLD": raw})
