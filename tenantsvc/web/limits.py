"""Rate-limit answers over HTTP: the headers every limited route carries, and the 429 when over the limit.

Headers: ``X-Rate-Limit-Remaining`` / ``X-Rate-Limit-Reset`` (the original system's), and the IETF
draft fields ``RateLimit-Policy: "<class>";q=<capacity>;w=<seconds to refill>`` and
``RateLimit: "<class>";r=<remaining>;t=<seconds to reset>``.
"""

from __future__ import annotations

import math
from typing import Any

from tenantsvc.core.rate_limits import RateLimitPolicy
from tenantsvc.core.token_bucket import Decision
from tenantsvc.web.errors import ApiError


def policy_header(policy: RateLimitPolicy) -> bytes:
    """The ``RateLimit-Policy`` value for ``policy`` (constant per class: computed once by callers)."""
    window = math.ceil(policy.bucket.full_refill_s)
    return f'"{policy.endpoint_class}";q={policy.bucket.capacity};w={window}'.encode("ascii")


def apply_headers(request: Any, policy: RateLimitPolicy, decision: Decision, policy_value: bytes | None = None) -> None:
    """Set the rate-limit headers of ``decision`` (hot paths pass ``policy_header(policy)`` precomputed)."""
    remaining, reset = str(decision.remaining).encode("ascii"), str(decision.reset_whole_s).encode("ascii")
    request.setHeader(b"X-Rate-Limit-Remaining", remaining)
    request.setHeader(b"X-Rate-Limit-Reset", reset)
    request.setHeader(b"RateLimit-Policy", policy_value or policy_header(policy))
    request.setHeader(b"RateLimit", b'"' + policy.endpoint_class.encode("ascii") + b'";r=' + remaining + b";t=" + reset)


def too_many_requests(decision: Decision) -> ApiError:
    """The 429 answer: JSON ``{"error", "message", "retry_after"}`` and ``Retry-After``."""
    retry_after = decision.retry_after_whole_s
    return ApiError(429, "rate_limited", f"too many requests; retry in {retry_after}s",
                    headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after})
