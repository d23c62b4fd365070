"""Rate-limit policies per endpoint class, and the bucket keys they are counted under.

Each route belongs to one endpoint class (``public``, ``auth``, ``write``, ``read``); every class has a
token bucket per tenant, 100 tokens refilling at 2/s unless configured otherwise. A bucket's key is
``ratelimit:<tenant>:<class>[:<extra>]``; ``extra`` narrows it further (login per client address or per
username). ``extra`` comes from the client, so anything but a short, plain value is replaced by a digest:
keys stay bounded in length and free of separators a client could use to collide with another bucket.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

from tenantsvc.core.token_bucket import BucketPolicy

PUBLIC, AUTH, WRITE, READ = "public", "auth", "write", "read"
# Login is also limited per client address and per username, with tighter buckets: a guessing attack
# against one account gets 10 tries, then one every 20 s, whatever the tenant-wide bucket allows.
LOGIN_CLIENT, LOGIN_USER = "login_client", "login_user"
ENDPOINT_CLASSES = (PUBLIC, AUTH, WRITE, READ, LOGIN_CLIENT, LOGIN_USER)
DEFAULT_BUCKET = BucketPolicy(capacity=100, refill_per_s=2.0)
CLASS_DEFAULTS = {
    LOGIN_CLIENT: BucketPolicy(capacity=30, refill_per_s=0.5),
    LOGIN_USER: BucketPolicy(capacity=10, refill_per_s=0.05),
}
KEY_PREFIX = "ratelimit"

_PLAIN_EXTRA = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_POLICY_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_EXTRA_DIGEST_CHARS = 32


@dataclass(frozen=True)
class RateLimitPolicy:
    """The bucket an endpoint class is limited by; ``endpoint_class`` labels its metrics."""

    endpoint_class: str
    bucket: BucketPolicy


def parse_bucket_policy(text: str) -> BucketPolicy:
    """Parse ``"<capacity>/<refill per second>"`` (e.g. ``"100/2"`` or ``"20/0.5"``); ``ValueError`` if malformed."""
    match = _POLICY_TEXT.match(text)
    if not match:
        raise ValueError(f"expected <capacity>/<tokens per second> such as 100/2, got {text!r}")
    return BucketPolicy(capacity=int(match.group(1)), refill_per_s=float(match.group(2)))


class RateLimitPolicies:
    """The policy of every endpoint class: the default bucket unless overridden."""

    def __init__(self, overrides: Mapping[str, BucketPolicy] | None = None, default: BucketPolicy = DEFAULT_BUCKET):
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(ENDPOINT_CLASSES))
        if unknown:
            raise ValueError(f"unknown endpoint classes {unknown}; expected some of {list(ENDPOINT_CLASSES)}")
        self._policies = {name: RateLimitPolicy(name, overrides.get(name, CLASS_DEFAULTS.get(name, default)))
                          for name in ENDPOINT_CLASSES}

    @classmethod
    def from_text(cls, overrides: Mapping[str, str]) -> "RateLimitPolicies":
        """Policies from ``{"auth": "10/0.2", …}`` (see ``parse_bucket_policy``); ``ValueError`` names the class."""
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
        """Every class's policy, in ``ENDPOINT_CLASSES`` order."""
        return iter(self._policies.values())


def bucket_key(tenant: str, endpoint_class: str, extra: str | None = None) -> str:
    """``ratelimit:<tenant>:<class>[:<extra>]``, with an unusual or long ``extra`` replaced by its digest.

    ``tenant`` must already be a validated slug and ``endpoint_class`` one of ``ENDPOINT_CLASSES``.
    """
    if endpoint_class not in ENDPOINT_CLASSES:
        raise ValueError(f"unknown endpoint class {endpoint_class!r}")
    key = f"{KEY_PREFIX}:{tenant}:{endpoint_class}"
    if extra is None:
        return key
    if not _PLAIN_EXTRA.fullmatch(extra):
        extra = "h-" + hashlib.sha256(extra.encode("utf-8", "surrogatepass")).hexdigest()[:_EXTRA_DIGEST_CHARS]
    return f"{key}:{extra}"
