"""``Authorization: Bearer <token>`` checked in constant time, refused with a JSON 401 and ``WWW-Authenticate``.

Both sides are hashed (SHA-256) before ``hmac.compare_digest``, so neither the token's length nor its
content leaks through timing. Used by the admin API (``ADMIN_TOKEN``) and by ``/metrics`` and
``/health/detailed`` (``OPS_TOKEN``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tenantsvc.web.errors import ApiError


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerToken:
    """One secret bearer token; ``check(request)`` raises the 401 unless the request presents it."""

    def __init__(self, token: str, *, realm: str, needed_for: str):
        self._digest = _digest(token.encode("utf-8"))
        self._message = f"a valid {needed_for} bearer token is required"
        self._challenge = f'Bearer realm="{realm}"'


    def check(self, request: Any) -> None:
        """Return if ``request`` carries ``Authorization: Bearer <the token>``; raise ``ApiError`` 401 otherwise."""
        header = (request.getHeader(b"authorization") or b"").strip()
        scheme, _, token = header.partition(b" ")
        presented = _digest(token.strip()) if scheme.lower() == b"bearer" else b""
        if not hmac.compare_digest(presented, self._digest):
            raise ApiError(401, "unauthorized", self._message, headers={"WWW-Authenticate": self._challenge})
