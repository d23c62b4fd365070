"""Settings: parsed once from the environment and twistd options into one frozen, validated object.

Every problem is reported as a ``ConfigError`` whose message names the variable, so start-up can
print one clear line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from tenantsvc import __version__
from tenantsvc.core.targets import PostgresTarget, RedisTarget, SqliteTarget

ROLES = ("all", "web", "worker_odds", "worker_settlement")
# Every environment variable read here, in the order the README documents them.
ENVIRONMENT_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "PROCESS_TYPE", "PORT", "ENVIRONMENT", "APP_VERSION", "ADMIN_TOKEN",
    "DB_WEB_POOL_MAX", "DB_WORKER_POOL_MAX", "DB_POOL_MIN", "DB_CONN_TIMEOUT", "DB_STATEMENT_TIMEOUT",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT", "DB_PREPARE_THRESHOLD", "DB_SLOW_CALL_THRESHOLD", "PGBOUNCER_ADMIN_URL", "REDIS_TIMEOUT",
    "THEME_CACHE_TTL", "THEME_CACHE_SWR", "THEME_CACHE_MAX_ENTRIES", "THEME_L2_TIMEOUT", "THEME_WARM_INTERVAL",
    "ACCESS_LOG_SAMPLE_RATE", "ACCESS_LOG_SLOW_THRESHOLD", "LOG_FILE", "MAX_BODY_BYTES", "GOALSERVE_BASE_URL", "GOALSERVE_API_KEY",
    "RATE_LIMIT_PUBLIC", "RATE_LIMIT_AUTH", "RATE_LIMIT_READ", "RATE_LIMIT_WRITE", "RATE_LIMIT_AUTH_CLIENT",
    "RATE_LIMIT_READ_CLIENT", "RATE_LIMIT_WRITE_CLIENT", "RATE_LIMIT_LOGIN_USER", "RATE_LIMIT_LOGIN_CLIENT",
    "SESSION_ABSOLUTE_LIFETIME", "TRUSTED_PROXY_HEADER",
    "GOALSERVE_TIMEOUT", "ODDS_SPORTS", "ODDS_POLL_INTERVAL", "ODDS_MAX_AGE", "ODDS_CACHE_TTL",
    "SETTLEMENT_INTERVAL", "SETTLEMENT_POSTPONED_VOID_AFTER", "SETTLEMENT_REVIEW_AFTER",
    "REDIS_BREAKER_FAILURES", "REDIS_BREAKER_OPEN", "REDIS_BREAKER_OPEN_MAX",
    "REACTOR_LAG_READY_THRESHOLD", "REACTOR_LAG_READY_RECOVERY", "HEALTH_PROBE_CACHE_SECONDS", "OPS_LISTEN",
    "OPS_TOKEN",
    "HTTP_MAX_PIPELINED", "HTTP_WRITE_BUFFER_LIMIT", "HTTP_WRITE_TIMEOUT", "HTTP_HEADER_TIMEOUT",
    "HTTP_MAX_CONNECTIONS_PER_CLIENT", "DRAIN_PRESTOP_DELAY", "DRAIN_TIMEOUT",
)
WORKER_ROLES = ("worker_odds", "worker_settlement")
# Bucket (core.rate_limits.BUCKET_NAMES) → its variable. RATE_LIMIT_<CLASS> is the tenant-wide ceiling of the
# class, RATE_LIMIT_<CLASS>_CLIENT one client's bucket within the tenant, RATE_LIMIT_LOGIN_USER login per
# (username, client).
RATE_LIMIT_VARIABLES = {
    "public": "RATE_LIMIT_PUBLIC", "auth": "RATE_LIMIT_AUTH", "read": "RATE_LIMIT_READ", "write": "RATE_LIMIT_WRITE",
    "auth_client": "RATE_LIMIT_AUTH_CLIENT", "read_client": "RATE_LIMIT_READ_CLIENT",
    "write_client": "RATE_LIMIT_WRITE_CLIENT", "login_user": "RATE_LIMIT_LOGIN_USER",
}
# Older names still accepted: RATE_LIMIT_LOGIN_CLIENT was login and registration per client, now auth_client.
RATE_LIMIT_OLD_NAMES = {"RATE_LIMIT_LOGIN_CLIENT": "RATE_LIMIT_AUTH_CLIENT"}
TRUSTED_PROXY_HEADERS = ("Fly-Client-IP", "X-Forwarded-For")
ENVIRONMENTS = ("development", "staging", "production")
DEFAULT_SQLITE_PATH = os.path.join("var", "tenantsvc.sqlite3")
MIN_ADMIN_TOKEN_LENGTH = 16

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min)?\s*$")
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, None: 1}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the process needs to know at start-up; never mutated afterwards."""

    database: PostgresTarget | SqliteTarget
    redis: RedisTarget | None
    role: str = "all"
    listen: str = "tcp:8080"
    demo: bool = False
    environment: str = "development"
    app_version: str = __version__
    admin_token: str | None = field(default=None, repr=False)
    db_web_pool_max: int = 20
    db_worker_pool_max: int = 5
    db_pool_min: int = 2
    db_conn_timeout_s: float = 5.0
    db_statement_timeout_ms: int = 3000
    db_idle_in_transaction_timeout_ms: int = 5000
    db_slow_call_threshold_ms: int = 1000
    goalserve_base_url: str = "https://www.goalserve.com/getfeed"
    goalserve_api_key: str | None = field(default=None, repr=False)
    log_file: str | None = None
    max_body_bytes: int = 64 * 1024
    redis_timeout_s: float = 0.5
    theme_cache_ttl_s: float = 300.0
    theme_cache_swr_s: float = 60.0
    theme_cache_max_entries: int = 10_000
    theme_l2_timeout_s: float = 0.05
    theme_warm_interval_s: float = 300.0
    access_log_sample_rate: float = 0.001
    access_log_slow_threshold_ms: int = 100  # a fast-path request slower than this is always logged
    pgbouncer_admin_url: str | None = field(default=None, repr=False)
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    session_absolute_lifetime_s: float = 7 * 86400.0
    trusted_proxy_header: str | None = None
    goalserve_timeout_s: float = 15.0
    odds_sports: tuple[str, ...] = ()
    odds_poll_interval_s: float = 300.0
    odds_max_age_s: float = 900.0
    odds_cache_ttl_s: float = 5.0
    settlement_interval_s: float = 300.0
    settlement_postponed_void_after_s: float = 48 * 3600.0
    settlement_review_after_s: float = 72 * 3600.0
    # The Redis circuit breaker (services.redis_guard).
    redis_breaker_failures: int = 3
    redis_breaker_open_s: float = 1.0
    redis_breaker_open_max_s: float = 5.0
    # Readiness under reactor lag (obs.reactor_lag) and the operations surface (issue 11, items 4-5).
    reactor_lag_ready_threshold_s: float = 0.5
    reactor_lag_ready_recovery_s: float = 5.0
    health_probe_cache_s: float = 5.0
    ops_listen: str | None = None
    ops_token: str | None = field(default=None, repr=False)
    # The HTTP edge (web.channel, web.connections) and the drain on SIGTERM (web.server).
    http_max_pipelined: int = 1
    http_write_buffer_bytes: int = 64 * 1024
    http_write_timeout_s: float = 30.0
    http_header_timeout_s: float = 10.0
    http_max_connections_per_client: int = 256
    drain_prestop_delay_s: float = 5.0
    drain_timeout_s: float = 10.0

    @property
    def runs_feed_workers(self) -> bool:
        """True when this process polls odds and settles bets: a worker role, or ``all`` with a feed.

        ``all`` without ``GOALSERVE_API_KEY`` outside demo mode (a laptop in development) serves the web
        API and leaves the feed workers off; load_settings refuses that combination anywhere else.
        """
        if self.role in WORKER_ROLES:
            return True
        return self.role == "all" and (self.demo or self.goalserve_api_key is not None)

    def runs_worker(self, worker: str) -> bool:
        """True when ``worker`` (``worker_odds`` or ``worker_settlement``) runs in this process."""
        return self.runs_feed_workers and self.role in ("all", worker)

    @property
    def serves_web(self) -> bool:
        """True when this process hosts the HTTP API."""
        return self.role in ("all", "web")

    @property
    def pool_max(self) -> int:
        """Connection pool ceiling for this role: web pools are larger than worker pools."""
        return self.db_web_pool_max if self.serves_web else self.db_worker_pool_max

    @property
    def pool_min(self) -> int:
        """Connections kept open; never more than the ceiling."""
        return min(self.db_pool_min, self.pool_max)

    @property
    def is_development(self) -> bool:
        """True on a laptop: cookies are not marked Secure, logs go to stdout by default."""
        return self.environment == "development"


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value with surrounding spaces removed; None when unset or blank."""
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def _number(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float, *,
            parse: Callable[[str], float], what: str, unit: str = "") -> float:
    """Read a number with ``parse`` and check it lies in [minimum, maximum]; messages name the variable."""
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}{unit}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    return int(_number(env, name, default, minimum, maximum, parse=int, what="a whole number"))


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    return _number(env, name, default, minimum, maximum, parse=lambda raw: float(raw.removesuffix("s")),
                   what="a number of seconds (e.g. 5 or 2.5s)", unit=" seconds")


def parse_duration_ms(name: str, raw: str) -> int:
    """Parse a Postgres-style duration ("3s", "500ms", "1min", bare numbers are milliseconds)."""
    match = _DURATION.match(raw)
    if not match:
        raise ConfigError(f"{name} must be a duration such as 3s, 500ms or 1min, got {raw!r}")
    value = int(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
    if value > 24 * 3600 * 1000:
        raise ConfigError(f"{name} must be at most 24h, got {raw!r}")
    return value


def _duration_ms(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _raw(env, name)
    return default if raw is None else parse_duration_ms(name, raw)


def _too_small(name: str) -> float:
    raise ConfigError(f"{name} must be at least 1ms")


def _redis_breaker(env: Mapping[str, str]) -> dict[str, Any]:
    """``REDIS_BREAKER_*``: failures in a row that open it, the first open period and its cap (>= the first)."""
    open_s = _seconds(env, "REDIS_BREAKER_OPEN", 1.0, 0.1, 300.0)
    open_max_s = _seconds(env, "REDIS_BREAKER_OPEN_MAX", max(5.0, open_s), 0.1, 3600.0)
    if open_max_s < open_s:
        raise ConfigError(f"REDIS_BREAKER_OPEN_MAX must be at least REDIS_BREAKER_OPEN ({open_s:g} s), "
                          f"got {_raw(env, 'REDIS_BREAKER_OPEN_MAX')!r}")
    return {"redis_breaker_failures": _int(env, "REDIS_BREAKER_FAILURES", 3, 1, 1000),
            "redis_breaker_open_s": open_s, "redis_breaker_open_max_s": open_max_s}


def parse_listen_endpoint(name: str, raw: str) -> str:
    """Check that ``raw`` is a Twisted server endpoint string (``tcp:9091:interface=127.0.0.1``, ``unix:/p``).

    The string is parsed as ``serverFromString`` would, against a placeholder reactor, so a typo is a
    configuration error at start-up rather than a failure to listen later; binding is not tried here.
    """
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(object(), raw)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise ConfigError(f"{name} must be a Twisted endpoint string such as tcp:9091:interface=127.0.0.1, "
                          f"got {raw!r} ({error})") from None
    return raw


def _operations(env: Mapping[str, str], ops_listen_option: str | None) -> dict[str, Any]:
    """``OPS_LISTEN`` (or ``--ops-listen``) and ``OPS_TOKEN``: the separate operations listener and its token."""
    raw = ops_listen_option.strip() if ops_listen_option else _raw(env, "OPS_LISTEN")
    name = "--ops-listen" if ops_listen_option else "OPS_LISTEN"
    ops_listen = None if raw is None else parse_listen_endpoint(name, raw)
    ops_token = env.get("OPS_TOKEN") or None
    if ops_token is not None and (len(ops_token) < MIN_ADMIN_TOKEN_LENGTH or ops_token != ops_token.strip()):
        raise ConfigError(f"OPS_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters without surrounding "
                          "spaces (or unset to leave /metrics and /health/detailed open)")
    return {"ops_listen": ops_listen, "ops_token": ops_token}


def _reactor_lag(env: Mapping[str, str]) -> dict[str, Any]:
    """``REACTOR_LAG_READY_*``: the lag that makes ``/readyz`` 503 and how long it must stay on time after."""
    return {"reactor_lag_ready_threshold_s": _seconds(env, "REACTOR_LAG_READY_THRESHOLD", 0.5, 0.05, 60.0),
            "reactor_lag_ready_recovery_s": _seconds(env, "REACTOR_LAG_READY_RECOVERY", 5.0, 0.0, 600.0)}
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 256


def _http_edge(env: Mapping[str, str], trusted_proxy_header: str | None) -> dict[str, Any]:
    """``HTTP_*`` limits per connection and per client, and ``DRAIN_*`` (the SIGTERM drain).

    The per-client connection cap counts socket peers; behind a proxy (``TRUSTED_PROXY_HEADER`` set) every
    peer is the proxy, so the cap is off (0) unless ``HTTP_MAX_CONNECTIONS_PER_CLIENT`` says otherwise.
    """
    cap_default = 0 if trusted_proxy_header is not None else DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    return {
        "http_max_pipelined": _int(env, "HTTP_MAX_PIPELINED", 1, 1, 1000),
        "http_write_buffer_bytes": _int(env, "HTTP_WRITE_BUFFER_LIMIT", 64 * 1024, 4096, 64 * 1024 * 1024),
        "http_write_timeout_s": _seconds(env, "HTTP_WRITE_TIMEOUT", 30.0, 0.5, 3600.0),
        "http_header_timeout_s": _seconds(env, "HTTP_HEADER_TIMEOUT", 10.0, 0.5, 300.0),
        "http_max_connections_per_client": _int(env, "HTTP_MAX_CONNECTIONS_PER_CLIENT", cap_default, 0, 1_000_000),
        "drain_prestop_delay_s": _seconds(env, "DRAIN_PRESTOP_DELAY", 5.0, 0.0, 300.0),
        "drain_timeout_s": _seconds(env, "DRAIN_TIMEOUT", 10.0, 0.0, 3600.0),
    }


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, 0.0, 1.0, parse=float, what="a number between 0 and 1")


def _pgbouncer_admin_url(raw: str | None) -> str | None:
    """``PGBOUNCER_ADMIN_URL``: a postgresql:// URL of PgBouncer's admin console (database ``pgbouncer``)."""
    if raw is None or raw.strip() == "":
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or parts.path.strip("/") != "pgbouncer":
        raise ConfigError("PGBOUNCER_ADMIN_URL must be postgresql://user@host:port/pgbouncer")
    return raw.strip()


def _rate_limits(env: Mapping[str, str]) -> dict[str, str]:
    """``RATE_LIMIT_*`` overrides as ``{"auth": "10/0.5", "read_client": "60/1"}``, each checked as
    ``<capacity>/<per second>``; an old name (``RATE_LIMIT_OLD_NAMES``) sets its new one, never both at once."""
    from tenantsvc.core.rate_limits import parse_bucket_policy

    names = dict(env)
    for old, new in RATE_LIMIT_OLD_NAMES.items():
        old_value = (env.get(old) or "").strip()
        if old_value and (env.get(new) or "").strip():
            raise ConfigError(f"{old} is the old name of {new}: set only {new}")
        if old_value:
            names[new] = old_value
    overrides = {}
    for bucket, name in RATE_LIMIT_VARIABLES.items():
        raw = (names.get(name) or "").strip()
        if not raw:
            continue
        shown = next((old for old, new in RATE_LIMIT_OLD_NAMES.items() if new == name and env.get(old)), name)
        try:
            parse_bucket_policy(raw)
        except ValueError:
            raise ConfigError(f"{shown} must be <capacity>/<tokens per second>, a whole capacity of at least 1 and "
                              f"a positive rate, such as 120/5; got {raw!r}") from None
        overrides[bucket] = raw
    return overrides


def _trusted_proxy_header(raw: str | None) -> str | None:
    """Which proxy header names the client address; unset means the socket peer is the client."""
    if raw is None or raw.strip() == "":
        return None
    for header in TRUSTED_PROXY_HEADERS:
        if raw.strip().lower() == header.lower():
            return header
    raise ConfigError(f"TRUSTED_PROXY_HEADER must be one of {', '.join(TRUSTED_PROXY_HEADERS)}, got {raw!r}")


def _prepare_threshold(env: Mapping[str, str]) -> None:
    raw = (env.get("DB_PREPARE_THRESHOLD") or "0").strip().lower()
    if raw not in ("0", "none", "off", "disabled"):
        raise ConfigError(
            "DB_PREPARE_THRESHOLD must be 0 or none: psycopg2 never prepares statements server-side, "
            f"which is what keeps PgBouncer transaction pooling safe; got {raw!r}"
        )


def parse_database_url(raw: str | None) -> PostgresTarget | SqliteTarget:
    """Turn ``DATABASE_URL`` into a target: postgresql://…, sqlite:///path, or a plain file path."""
    if raw is None or raw.strip() == "":
        return SqliteTarget(DEFAULT_SQLITE_PATH)
    raw = raw.strip()
    if raw.startswith("sqlite:"):
        path = raw[len("sqlite:"):]
        if path.startswith("///"):
            path = path[2:]
        elif path.startswith("//"):
            raise ConfigError(f"DATABASE_URL sqlite URLs take a path (sqlite:///abs/path or sqlite:rel/path), got {raw!r}")
        if not path.strip("/"):
            raise ConfigError("DATABASE_URL names sqlite but no file path")
        return SqliteTarget(path)
    if "://" not in raw:
        if raw.startswith(("postgres:", "postgresql:")):
            raise ConfigError("DATABASE_URL is not a valid postgresql:// URL")
        return SqliteTarget(raw)
    parts = urlsplit(raw)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be postgresql://… or a SQLite path, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError("DATABASE_URL has an invalid port") from None
    host = parts.hostname or ""
    dbname = unquote(parts.path.lstrip("/"))
    options = {}
    for pair in filter(None, parts.query.split("&")):
        key, _, value = pair.partition("=")
        options[unquote(key)] = unquote(value)
    host = host or options.pop("host", "")
    if not host:
        raise ConfigError("DATABASE_URL has no host")
    if not dbname:
        raise ConfigError("DATABASE_URL has no database name")
    if "prepare_threshold" in options:
        raise ConfigError("DATABASE_URL must not set prepare_threshold (a psycopg3 option); use DB_PREPARE_THRESHOLD")
    # user/password may also arrive as query parameters; keep them out of ``options`` (which is in repr).
    query_user, query_password = options.pop("user", None), options.pop("password", None)
    return PostgresTarget(
        host=host,
        port=port,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else query_user,
        password=unquote(parts.password) if parts.password else query_password,
        options=options,
    )


def parse_redis_url(raw: str | None) -> RedisTarget | None:
    """Turn ``REDIS_URL`` into a target; unset means in-process fallbacks."""
    if raw is None or raw.strip() == "":
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"REDIS_URL must start with redis:// or rediss://, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("REDIS_URL has an invalid port") from None
    if not parts.hostname:
        raise ConfigError("REDIS_URL has no host")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit() or int(db_text) > 15:
        raise ConfigError(f"REDIS_URL database must be a number from 0 to 15, got {db_text!r}")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(db_text),
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
    )


def _listen(env: Mapping[str, str], listen_option: str | None) -> str:
    if listen_option:
        return listen_option
    port = _int(env, "PORT", 8080, 1, 65535)
    return f"tcp:{port}"


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


DEMO_SPORTS = ("soccer", "basketball")  # the sports the bundled sample feed has


def _odds_sports(raw: str | None, demo: bool) -> tuple[str, ...]:
    """``ODDS_SPORTS``: a comma-separated subset of the feed's sports (default: all of them, in feed order;
    in demo mode the sports of the bundled sample feed)."""
    from tenantsvc.core.odds import SPORTS

    if raw is None or raw.strip() == "":
        return DEMO_SPORTS if demo else SPORTS
    chosen = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SPORTS]
    if unknown or not chosen:
        raise ConfigError(f"ODDS_SPORTS must be a comma-separated list of {', '.join(SPORTS)}; "
                          f"unknown: {', '.join(unknown) or '(empty)'}")
    return tuple(dict.fromkeys(chosen))


def _feed_key_required(role: str, environment: str, demo: bool, api_key: str | None) -> None:
    """Refuse to start a process that would poll a feed it has no key for (demo mode reads bundled files)."""
    if demo or api_key is not None:
        return
    if role in WORKER_ROLES:
        raise ConfigError(f"GOALSERVE_API_KEY must be set for --role {role} (or run with --demo for the bundled sample feed)")
    if role == "all" and environment != "development":
        raise ConfigError("GOALSERVE_API_KEY must be set for --role all outside development "
                          "(or use --role web for a process without feed workers)")


def load_settings(
    env: Mapping[str, str],
    *,
    role: str | None = None,
    listen: str | None = None,
    demo: bool = False,
    ops_listen: str | None = None,
) -> Settings:
    """Build validated ``Settings`` from environment variables, with twistd options taking precedence.

    Raises ``ConfigError`` naming the first bad variable.
    """
    _prepare_threshold(env)
    chosen_role = role or env.get("PROCESS_TYPE") or "all"
    _choice("--role/PROCESS_TYPE", chosen_role, ROLES)
    environment = _choice("ENVIRONMENT", (env.get("ENVIRONMENT") or "development").strip(), ENVIRONMENTS)
    admin_token = env.get("ADMIN_TOKEN") or None
    if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ConfigError(f"ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters (or unset to disable the admin API)")
    if environment == "production" and not (env.get("DATABASE_URL") or "").strip():
        raise ConfigError("DATABASE_URL must be set when ENVIRONMENT=production (the SQLite default is for laptops)")
    goalserve_api_key = env.get("GOALSERVE_API_KEY") or None
    _feed_key_required(chosen_role, environment, demo, goalserve_api_key)
    trusted_proxy_header = _trusted_proxy_header(env.get("TRUSTED_PROXY_HEADER"))
    log_file = env.get("LOG_FILE") or None
    if log_file is None and environment == "production":
        log_file = os.path.join("var", "log", "tenantsvc.json")
    return Settings(
        database=parse_database_url(env.get("DATABASE_URL")),
        redis=parse_redis_url(env.get("REDIS_URL")),
        role=chosen_role,
        listen=_listen(env, listen),
        demo=demo,
        environment=environment,
        app_version=(env.get("APP_VERSION") or __version__).strip()[:64],
        admin_token=admin_token,
        db_web_pool_max=_int(env, "DB_WEB_POOL_MAX", 20, 1, 500),
        db_worker_pool_max=_int(env, "DB_WORKER_POOL_MAX", 5, 1, 500),
        db_pool_min=_int(env, "DB_POOL_MIN", 2, 0, 500),
        db_conn_timeout_s=_seconds(env, "DB_CONN_TIMEOUT", 5.0, 0.1, 300.0),
        db_statement_timeout_ms=_duration_ms(env, "DB_STATEMENT_TIMEOUT", 3000),
        db_idle_in_transaction_timeout_ms=_duration_ms(env, "DB_IDLE_IN_TRANSACTION_TIMEOUT", 5000),
        db_slow_call_threshold_ms=_duration_ms(env, "DB_SLOW_CALL_THRESHOLD", 1000),
        goalserve_base_url=_http_url("GOALSERVE_BASE_URL", env.get("GOALSERVE_BASE_URL") or "https://www.goalserve.com/getfeed"),
        goalserve_api_key=goalserve_api_key,
        log_file=log_file,
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
        redis_timeout_s=_duration_ms(env, "REDIS_TIMEOUT", 500) / 1000.0 or _too_small("REDIS_TIMEOUT"),
        theme_cache_ttl_s=_seconds(env, "THEME_CACHE_TTL", 300.0, 1.0, 86400.0),
        theme_cache_swr_s=_seconds(env, "THEME_CACHE_SWR", 60.0, 0.0, 86400.0),
        theme_cache_max_entries=_int(env, "THEME_CACHE_MAX_ENTRIES", 10_000, 10, 10_000_000),
        theme_l2_timeout_s=_duration_ms(env, "THEME_L2_TIMEOUT", 50) / 1000.0 or _too_small("THEME_L2_TIMEOUT"),
        theme_warm_interval_s=_seconds(env, "THEME_WARM_INTERVAL", 300.0, 5.0, 86400.0),
        access_log_sample_rate=_fraction(env, "ACCESS_LOG_SAMPLE_RATE", 0.001),
        access_log_slow_threshold_ms=_duration_ms(env, "ACCESS_LOG_SLOW_THRESHOLD", 100)
        or int(_too_small("ACCESS_LOG_SLOW_THRESHOLD")),
        pgbouncer_admin_url=_pgbouncer_admin_url(env.get("PGBOUNCER_ADMIN_URL")),
        rate_limits=_rate_limits(env),
        session_absolute_lifetime_s=_seconds(env, "SESSION_ABSOLUTE_LIFETIME", 7 * 86400.0, 60.0, 90 * 86400.0),
        trusted_proxy_header=trusted_proxy_header,
        goalserve_timeout_s=_seconds(env, "GOALSERVE_TIMEOUT", 15.0, 0.5, 300.0),
        odds_sports=_odds_sports(env.get("ODDS_SPORTS"), demo),
        odds_poll_interval_s=_seconds(env, "ODDS_POLL_INTERVAL", 300.0, 10.0, 86400.0),
        odds_max_age_s=_seconds(env, "ODDS_MAX_AGE", 900.0, 10.0, 86400.0),
        odds_cache_ttl_s=_seconds(env, "ODDS_CACHE_TTL", 5.0, 0.0, 300.0),
        settlement_interval_s=_seconds(env, "SETTLEMENT_INTERVAL", 300.0, 5.0, 86400.0),
        settlement_postponed_void_after_s=_seconds(env, "SETTLEMENT_POSTPONED_VOID_AFTER", 48 * 3600.0, 0.0,
                                                   90 * 86400.0),
        settlement_review_after_s=_seconds(env, "SETTLEMENT_REVIEW_AFTER", 72 * 3600.0, 3600.0, 90 * 86400.0),
        **_redis_breaker(env),
        **_reactor_lag(env),
        health_probe_cache_s=_seconds(env, "HEALTH_PROBE_CACHE_SECONDS", 5.0, 0.0, 300.0),
        **_operations(env, ops_listen),
        **_http_edge(env, trusted_proxy_header),
    )
