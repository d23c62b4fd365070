"""Token-bucket arithmetic, pure: time comes in as ``now`` (seconds), nothing here keeps a clock or does I/O.

A bucket holds at most ``capacity`` tokens (the burst) and gains ``refill_per_s`` tokens per second.
A request for ``n`` tokens is admitted when the bucket holds at least ``n``; it then spends them.
Consequences the tests check: over any interval of length ``t`` a bucket admits at most
``capacity + refill_per_s * t`` tokens' worth of requests, it never holds more than ``capacity``, and
time going backwards (a clock step) never mints tokens: the bucket only ever moves forward in time.

Buckets can be stacked (``take_levels``): a request is admitted only when every bucket of the stack holds
``n`` tokens, and then spends from each; a request any one bucket refuses spends from none. That is how a
client's bucket sits under its tenant's ceiling: what one client is refused never costs the others.

The Redis limiter runs the same refill rule in Lua and builds its answer with ``decision_for`` /
``levels_decision``, so both limiters report identical ``Decision`` fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence


@dataclass(frozen=True)
class BucketPolicy:
    """Size and speed of a bucket: ``capacity`` tokens (the burst), refilled at ``refill_per_s`` per second."""

    capacity: int
    refill_per_s: float

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"capacity must be a whole number of at least 1, got {self.capacity!r}")
        if not (isinstance(self.refill_per_s, (int, float)) and math.isfinite(self.refill_per_s)
                and self.refill_per_s > 0):
            raise ValueError(f"refill_per_s must be a positive number, got {self.refill_per_s!r}")

    @property
    def full_refill_s(self) -> float:
        """Seconds an empty bucket takes to fill: a bucket idle this long is indistinguishable from a new one."""
        return self.capacity / self.refill_per_s


class BucketState(NamedTuple):
    """Tokens held at ``updated_at`` (the latest time the bucket has seen).

    ``BucketState`` and ``Decision`` are immutable named tuples rather than frozen dataclasses: one of
    each is made per rate-limited request, and a named tuple is several times cheaper to build.
    """

    tokens: float
    updated_at: float


class Decision(NamedTuple):
    """The answer to one request.

    ``remaining`` is the whole tokens left (floor); ``reset_s`` the seconds until the bucket is full again;
    ``retry_after_s`` the seconds until it holds the ``n`` tokens asked for (0 when it already does).
    ``fail_open`` marks a decision the fleet-wide limiter could not make (Redis down), taken locally instead.
    ``level`` is the index, in a stack of buckets (``take_levels``), of the bucket the other fields describe:
    the first that refused, or, when admitted, the one with the fewest whole tokens left (0 for one bucket).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float
    fail_open: bool = False
    level: int = 0

    @property
    def reset_whole_s(self) -> int:
        """``reset_s`` rounded up to whole seconds (for headers)."""
        return math.ceil(self.reset_s)

    @property
    def retry_after_whole_s(self) -> int:
        """``retry_after_s`` rounded up to whole seconds, at least 1 (for ``Retry-After`` on a refusal)."""
        return max(1, math.ceil(self.retry_after_s))


def full_bucket(policy: BucketPolicy, now: float) -> BucketState:
    """A bucket that has never been used (or has been idle for at least ``full_refill_s``)."""
    return BucketState(float(policy.capacity), now)


def refill(policy: BucketPolicy, state: BucketState, now: float) -> BucketState:
    """The bucket as of ``now``: refilled for the time elapsed, capped at capacity.

    A ``now`` earlier than ``state.updated_at`` adds nothing and leaves the bucket's time where it was.
    """
    if now <= state.updated_at:
        return state
    _, tokens, updated_at = spend(policy, state.tokens, state.updated_at, now, 0)
    return BucketState(tokens, updated_at)


def spend(policy: BucketPolicy, tokens: float, updated_at: float, now: float, n: int = 1) -> tuple[bool, float, float]:
    """``take`` on plain numbers, for callers that keep a bucket as mutable fields: refill to ``now``, then
    spend ``n`` tokens if the bucket holds them. Returns (admitted, tokens left, the bucket's time).

    ``n`` is not checked here (see ``check_request_size``); ``n`` 0 only refills.
    """
    if now > updated_at:
        tokens = min(float(policy.capacity), tokens + (now - updated_at) * policy.refill_per_s)
        updated_at = now
    if tokens >= n:
        return True, tokens - n, updated_at
    return False, tokens, updated_at


def decision_for(policy: BucketPolicy, tokens: float, allowed: bool, n: int = 1) -> Decision:
    """The ``Decision`` for a bucket left holding ``tokens`` after a request for ``n`` was (or was not) admitted."""
    capacity, refill_per_s = policy.capacity, policy.refill_per_s
    if tokens < 0.0:
        tokens = 0.0
    elif tokens > capacity:
        tokens = float(capacity)
    retry_after_s = (n - tokens) / refill_per_s
    # positional: this runs for every rate-limited request
    return Decision(allowed, capacity, math.floor(tokens), (capacity - tokens) / refill_per_s,
                    retry_after_s if retry_after_s > 0.0 else 0.0)


def levels_decision(policies: Sequence[BucketPolicy], tokens: Sequence[float], refused: int | None,
                    n: int = 1) -> Decision:
    """The ``Decision`` for a stack of buckets left holding ``tokens`` (one per bucket, narrowest first).

    ``refused`` is the index of the first bucket that lacked ``n`` tokens (nothing was spent), or None
    (every bucket spent ``n``). A refusal describes that first bucket, with ``retry_after_s`` the longest
    wait of all the buckets that lack tokens (the request cannot pass before every one holds ``n``). An
    admission describes the bucket with the fewest whole tokens left (the narrowest on a tie): the one a
    client will run into first.
    """
    if refused is not None:
        decision = decision_for(policies[refused], tokens[refused], False, n)
        wait = max(decision_for(policy, left, False, n).retry_after_s for policy, left in zip(policies, tokens))
        return decision._replace(retry_after_s=wait, level=refused)
    decisions = [decision_for(policy, left, True, n) for policy, left in zip(policies, tokens)]
    level = min(range(len(decisions)), key=lambda index: decisions[index].remaining)
    return decisions[level]._replace(level=level)


def take_levels(policies: Sequence[BucketPolicy], states: Sequence[BucketState | None], now: float,
                n: int = 1) -> tuple[Decision, list[BucketState]]:
    """Spend ``n`` tokens from every bucket of a stack at ``now`` if every one holds them, else from none.

    ``policies`` and ``states`` are narrowest first (a client's bucket, then its tenant's ceiling); a
    state None is a new (full) bucket. Returns the decision (see ``levels_decision``) and every bucket's
    new state, refilled to ``now`` whatever the answer.
    """
    if len(policies) != len(states) or not policies:
        raise ValueError("one state per bucket policy, at least one bucket")
    for policy in policies:
        check_request_size(policy, n)
    refilled = [refill(policy, full_bucket(policy, now) if state is None else state, now)
                for policy, state in zip(policies, states)]
    refused = next((index for index, state in enumerate(refilled) if state.tokens < n), None)
    if refused is None:
        refilled = [BucketState(state.tokens - n, state.updated_at) for state in refilled]
    return levels_decision(policies, [state.tokens for state in refilled], refused, n), refilled


def check_request_size(policy: BucketPolicy, n: int) -> None:
    """Refuse a request size that could never be admitted (``ValueError``): 1 to ``capacity`` tokens."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= policy.capacity:
        raise ValueError(f"a request must take 1 to {policy.capacity} tokens, got {n!r}")


def take(policy: BucketPolicy, state: BucketState | None, now: float, n: int = 1) -> tuple[Decision, BucketState]:
    """Try to spend ``n`` tokens at ``now``; returns the decision and the bucket's new state.

    ``state`` None means a new (full) bucket. A refused request spends nothing.
    """
    check_request_size(policy, n)
    current = full_bucket(policy, now) if state is None else state
    allowed, tokens, updated_at = spend(policy, current.tokens, current.updated_at, now, n)
    return decision_for(policy, tokens, allowed, n), BucketState(tokens, updated_at)


class TokenBucket:
    """One bucket with its state, for callers that keep a bucket object rather than a ``BucketState``."""

    def __init__(self, policy: BucketPolicy, state: BucketState | None = None):
        self.policy = policy
        self.state = state

    def take(self, n: int, now: float) -> Decision:
        """Try to spend ``n`` tokens at ``now`` (see ``take``)."""
        decision, self.state = take(self.policy, self.state, now, n)
        return decision

    def tokens(self, now: float) -> float:
        """Tokens held as of ``now`` (without spending any)."""
        return refill(self.policy, self.state or full_bucket(self.policy, now), now).tokens
