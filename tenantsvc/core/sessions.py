"""Session rules, pure: id format and hashing, the stored JSON record, and how long a session lives.

A session id is 32 random bytes in URL-safe base64 without padding (``secrets.token_urlsafe(32)``): exactly
43 characters, the last of which carries only 4 bits. Anything else is malformed and is rejected before
any store is asked, so a client-chosen value never becomes a lookup, let alone a key. Stores see only
``sha256(id)``: a leaked store dump does not yield usable cookies.

The record is JSON (never pickle) with exactly ``tenant, user_id, username, created_at, remember``. A session
lives ``idle_ttl_s`` (3600 s; ``remember_ttl_s``, 86 400 s, with "remember me") after its last use, and
never beyond ``absolute_lifetime_s`` (7 days) after it was created: every renewal sets the store's TTL to
whichever of the two ends first.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

SESSION_ID_BYTES = 32
SESSION_ID_LENGTH = 43  # ceil(32 * 8 / 6) base64 characters, no padding
# 42 characters carry 252 bits; the 43rd carries the last 4, so its 2 low bits are zero.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_RECORD_FIELDS = frozenset({"tenant", "user_id", "username", "created_at", "remember"})
MAX_RECORD_CHARS = 1024  # a record is ~150 characters; anything far larger is not ours


def is_well_formed_session_id(value: object) -> bool:
    """True only for a string that ``secrets.token_urlsafe(32)`` could have produced."""
    return isinstance(value, str) and len(value) == SESSION_ID_LENGTH and _SESSION_ID.fullmatch(value) is not None


def session_hash(session_id: str) -> str:
    """The hex SHA-256 of a session id: the only form in which an id reaches a store."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    """What a store keeps for one session."""

    tenant: str
    user_id: int
    username: str
    created_at: float
    remember: bool

    def to_json(self) -> str:
        """The stored form: compact JSON."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: object) -> "SessionRecord | None":
        """Parse a stored record; None for anything that is not exactly a record we wrote."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
            return None
        try:
            data: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or set(data) != _RECORD_FIELDS:
            return None
        tenant, user_id, username = data["tenant"], data["user_id"], data["username"]
        created_at, remember = data["created_at"], data["remember"]
        if not (isinstance(tenant, str) and isinstance(username, str) and isinstance(remember, bool)
                and isinstance(user_id, int) and not isinstance(user_id, bool)
                and isinstance(created_at, (int, float)) and not isinstance(created_at, bool)
                and math.isfinite(created_at)):
            return None
        return cls(tenant, user_id, username, float(created_at), remember)


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live, in seconds."""

    idle_ttl_s: float = 3600.0
    remember_ttl_s: float = 86400.0
    absolute_lifetime_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        for name in ("idle_ttl_s", "remember_ttl_s", "absolute_lifetime_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    def idle_ttl(self, remember: bool) -> float:
        """Seconds a session lives after its last use."""
        return self.remember_ttl_s if remember else self.idle_ttl_s

    def expires_absolutely_at(self, record: SessionRecord) -> float:
        """The time after which ``record`` is dead however recently it was used."""
        return record.created_at + self.absolute_lifetime_s

    def ttl_ms(self, record: SessionRecord, now: float) -> int:
        """The store TTL to set when ``record`` is created or used at ``now``, in whole milliseconds.

        0 or less means the session has reached its absolute lifetime and must not be renewed.
        """
        remaining = min(self.idle_ttl(record.remember), self.expires_absolutely_at(record) - now)
        return math.floor(remaining * 1000)
