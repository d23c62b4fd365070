"""Rate-limit policies: which stack of token buckets each endpoint class is counted in, and their keys.

Each route belongs to one endpoint class (``public``, ``auth``, ``write``, ``read``). Every class but
``public`` is limited at two levels, checked together (``core.token_bucket.take_levels``): a bucket per
client within the tenant (``<class>_client``) under a tenant-wide ceiling (``<class>``), so one client
exhausting its own bucket never spends what the tenant's other clients share. The public theme routes
keep one tenant-wide bucket: they never refuse (over the limit they still serve the cached theme) and
they are the hot path, where a second bucket per request would cost.

Login adds a bucket per (username, client) in front of the client's own: a guessing attack on one account
from some addresses is slowed on those addresses only, and never locks the real player out from theirs
(Django-axes' lockout by username and IP, GitHub's and Okta's per-client throttling). There is
deliberately no bucket per username alone: that is exactly the lock-out an attacker anywhere could
trigger. The tenant-wide ``auth`` ceiling is the global safeguard, sized well above real login traffic.

A bucket's key is ``ratelimit:<tenant>:<bucket>[:<extra>]``; ``extra`` (the client address, or username and
client) comes from the client, so anything but a short, plain value is replaced by a digest: keys stay
bounded in length and free of separators a client could use to collide with another bucket.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

from tenantsvc.core.request_classes import PUBLIC, READ, WRITE
from tenantsvc.core.token_bucket import BucketPolicy

AUTH = "auth"  # register and login: a write, limited apart from other writes (the request classes are core's)
ENDPOINT_CLASSES = (PUBLIC, AUTH, WRITE, READ)
# The level of a bucket: ``client`` (one client within a tenant, or one username from one client) or
# ``tenant`` (the ceiling every client of the tenant shares).
CLIENT, TENANT = "client", "tenant"
SCOPES = (CLIENT, TENANT)
AUTH_CLIENT, WRITE_CLIENT, READ_CLIENT = "auth_client", "write_client", "read_client"
LOGIN_USER = "login_user"  # login per (username, client)
BUCKET_NAMES = (PUBLIC, AUTH, WRITE, READ, AUTH_CLIENT, WRITE_CLIENT, READ_CLIENT, LOGIN_USER)
CLIENT_BUCKETS = {AUTH: AUTH_CLIENT, WRITE: WRITE_CLIENT, READ: READ_CLIENT}
# Sized from the 20-player workload of tests/support/player_traffic.py (about 0.6 reads/s per player, page loads
# in bursts of a few requests) with room for tenants a hundred times larger: the client buckets are what
# stops one client, the tenant ceilings only a whole tenant's flood.
DEFAULT_BUCKETS = {
    PUBLIC: BucketPolicy(capacity=1000, refill_per_s=100.0),
    AUTH: BucketPolicy(capacity=600, refill_per_s=20.0),
    WRITE: BucketPolicy(capacity=1000, refill_per_s=100.0),
    READ: BucketPolicy(capacity=3000, refill_per_s=300.0),
    AUTH_CLIENT: BucketPolicy(capacity=30, refill_per_s=0.5),
    WRITE_CLIENT: BucketPolicy(capacity=60, refill_per_s=2.0),
    READ_CLIENT: BucketPolicy(capacity=120, refill_per_s=5.0),
    # 10 tries at one account from one client, then one every 20 s
    LOGIN_USER: BucketPolicy(capacity=10, refill_per_s=0.05),
}
KEY_PREFIX = "ratelimit"

_PLAIN_EXTRA = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_POLICY_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_EXTRA_DIGEST_CHARS = 32


@dataclass(frozen=True)
class Level:
    """One bucket of a stack: its name (``BUCKET_NAMES``), its scope (``client``/``tenant``) and its size."""

    name: str
    scope: str
    bucket: BucketPolicy


@dataclass(frozen=True)
class RateLimitPolicy:
    """The buckets a request of ``endpoint_class`` spends from, narrowest first; the last is the tenant's.

    ``endpoint_class`` labels the decision's metrics.
    """

    endpoint_class: str
    levels: tuple[Level, ...]

    def __post_init__(self) -> None:
        if not self.levels or self.levels[-1].scope != TENANT:
            raise ValueError("a policy's last level is its tenant-wide ceiling")

    @property
    def buckets(self) -> tuple[BucketPolicy, ...]:
        """Every level's bucket policy, narrowest first."""
        return tuple(level.bucket for level in self.levels)

    @property
    def ceiling(self) -> BucketPolicy:
        """The tenant-wide bucket."""
        return self.levels[-1].bucket


def tenant_policy(endpoint_class: str, bucket: BucketPolicy) -> RateLimitPolicy:
    """A policy with the tenant-wide bucket only (the public routes, and tests)."""
    return RateLimitPolicy(endpoint_class, (Level(endpoint_class, TENANT, bucket),))


def parse_bucket_policy(text: str) -> BucketPolicy:
    """Parse ``"<capacity>/<refill per second>"`` (e.g. ``"100/2"`` or ``"20/0.5"``); ``ValueError`` if malformed."""
    match = _POLICY_TEXT.match(text)
    if not match:
        raise ValueError(f"expected <capacity>/<tokens per second> such as 100/2, got {text!r}")
    return BucketPolicy(capacity=int(match.group(1)), refill_per_s=float(match.group(2)))


class RateLimitPolicies:
    """The policy of every endpoint class, and of login, from the default buckets unless overridden."""

    def __init__(self, overrides: Mapping[str, BucketPolicy] | None = None):
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(BUCKET_NAMES))
        if unknown:
            raise ValueError(f"unknown rate-limit buckets {unknown}; expected some of {list(BUCKET_NAMES)}")
        self.buckets = {name: overrides.get(name, DEFAULT_BUCKETS[name]) for name in BUCKET_NAMES}
        self._policies = {name: self._stack(name, *([CLIENT_BUCKETS[name]] if name in CLIENT_BUCKETS else []))
                          for name in ENDPOINT_CLASSES}
        self.login = self._stack(AUTH, LOGIN_USER, AUTH_CLIENT)

    def _stack(self, endpoint_class: str, *client_buckets: str) -> RateLimitPolicy:
        levels = tuple(Level(name, CLIENT, self.buckets[name]) for name in client_buckets)
        return RateLimitPolicy(endpoint_class, levels + (Level(endpoint_class, TENANT, self.buckets[endpoint_class]),))

    @classmethod
    def from_text(cls, overrides: Mapping[str, str]) -> "RateLimitPolicies":
        """Policies from ``{"auth": "10/0.2", "read_client": "60/1", …}`` (see ``parse_bucket_policy``);
        ``ValueError`` names the bucket."""
        parsed = {}
        for name, text in overrides.items():
            try:
                parsed[name] = parse_bucket_policy(text)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return cls(parsed)

    def __getitem__(self, endpoint_class: str) -> RateLimitPolicy:
        """The policy of ``endpoint_class`` (``KeyError`` for an unknown class)."""
        return self._policies[endpoint_class]

    def __iter__(self) -> Iterator[RateLimitPolicy]:
        """Every class's policy, in ``ENDPOINT_CLASSES`` order, then login's."""
        return iter((*self._policies.values(), self.login))


def bucket_key(tenant: str, bucket: str, extra: str | None = None) -> str:
    """``ratelimit:<tenant>:<bucket>[:<extra>]``, with an unusual or long ``extra`` replaced by its digest.

    ``tenant`` must already be a validated slug and ``bucket`` one of ``BUCKET_NAMES``.
    """
    if bucket not in BUCKET_NAMES:
        raise ValueError(f"unknown rate-limit bucket {bucket!r}")
    key = f"{KEY_PREFIX}:{tenant}:{bucket}"
    if extra is None:
        return key
    if not _PLAIN_EXTRA.fullmatch(extra):
        extra = "h-" + hashlib.sha256(extra.encode("utf-8", "surrogatepass")).hexdigest()[:_EXTRA_DIGEST_CHARS]
    return f"{key}:{extra}"


def bucket_keys(tenant: str, policy: RateLimitPolicy, client: str, username: str | None = None) -> tuple[str, ...]:
    """The key of every level of ``policy`` for one request, narrowest first.

    A client bucket is keyed by the client address; the login bucket by username (case-folded) and client
    address together; the tenant bucket by the tenant alone.
    """
    keys = []
    for level in policy.levels:
        if level.scope == TENANT:
            keys.append(bucket_key(tenant, level.name))
        elif level.name == LOGIN_USER:
            keys.append(bucket_key(tenant, level.name, f"{(username or '').lower()}@{client}"))
        else:
            keys.append(bucket_key(tenant, level.name, client))
    return tuple(keys)
