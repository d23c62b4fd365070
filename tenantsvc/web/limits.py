"""Rate-limit answers over HTTP: the headers every limited route carries, and the 429 when over the limit.

Headers: ``X-Rate-Limit-Remaining`` / ``X-Rate-Limit-Reset`` (the original system's), and the IETF
draft fields ``RateLimit-Policy`` (every bucket of the route's stack: ``"<bucket>";q=<capacity>;w=<seconds
to refill>``, comma-separated, narrowest first) and ``RateLimit: "<bucket>";r=<remaining>;t=<seconds to
reset>`` for the bucket the decision describes (the one that refused, or the one with the fewest tokens
left). A 429's JSON says which level refused: ``"scope": "client"`` (this client's own bucket: other
clients are not affected) or ``"tenant"`` (the tenant-wide ceiling), and the bucket's name.
"""

from __future__ import annotations

import math
from typing import Any

from tenantsvc.core.rate_limits import RateLimitPolicy
from tenantsvc.core.token_bucket import Decision
from tenantsvc.web.errors import ApiError


def policy_header(policy: RateLimitPolicy) -> bytes:
    """The ``RateLimit-Policy`` value for ``policy`` (constant per policy: computed once by callers)."""
    return ", ".join(f'"{level.name}";q={level.bucket.capacity};w={math.ceil(level.bucket.full_refill_s)}'
                     for level in policy.levels).encode("ascii")


def rate_limit_headers(policy: RateLimitPolicy, decision: Decision,
                       policy_value: bytes | None = None) -> tuple[tuple[bytes, bytes], ...]:
    """The rate-limit headers of ``decision`` as ``(name, value)`` pairs (hot paths pass ``policy_header(policy)``
    precomputed)."""
    remaining, reset = str(decision.remaining).encode("ascii"), str(decision.reset_whole_s).encode("ascii")
    name = policy.levels[decision.level].name.encode("ascii")
    return ((b"X-Rate-Limit-Remaining", remaining), (b"X-Rate-Limit-Reset", reset),
            (b"RateLimit-Policy", policy_value or policy_header(policy)),
            (b"RateLimit", b'"' + name + b'";r=' + remaining + b";t=" + reset))


def apply_headers(request: Any, policy: RateLimitPolicy, decision: Decision, policy_value: bytes | None = None) -> None:
    """Set the rate-limit headers of ``decision`` on ``request``."""
    for name, value in rate_limit_headers(policy, decision, policy_value):
        request.setHeader(name, value)


def too_many_requests(decision: Decision, policy: RateLimitPolicy) -> ApiError:
    """The 429 answer: JSON ``{"error", "message", "retry_after", "scope", "bucket"}`` and ``Retry-After``."""
    retry_after = decision.retry_after_whole_s
    level = policy.levels[decision.level]
    whose = "this client's" if level.scope == "client" else "the tenant-wide"
    return ApiError(429, "rate_limited", f"too many requests ({whose} {level.name} limit); retry in {retry_after}s",
                    headers={"Retry-After": str(retry_after)},
                    extra={"retry_after": retry_after, "scope": level.scope, "bucket": level.name})
