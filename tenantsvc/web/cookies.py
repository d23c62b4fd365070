"""The session cookie: a random id, HttpOnly, SameSite=Lax, scoped to the tenant's path, Secure outside development."""

from __future__ import annotations

from typing import Any

SESSION_COOKIE = b"tsid"
MAX_COOKIE_BYTES = 128  # a real id is 43 characters; anything longer is never looked up


def session_cookie_value(request: Any) -> str | None:
    """The session id the client presented, or None (absent, oversized or not ASCII)."""
    raw = request.getCookie(SESSION_COOKIE)
    if raw is None or len(raw) > MAX_COOKIE_BYTES:
        return None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def set_session_cookie(request: Any, tenant: str, session_id: str, *, secure: bool, max_age_s: int | None) -> None:
    """Send the session cookie for ``tenant`` (``max_age_s`` None: a browser-session cookie)."""
    request.addCookie(SESSION_COOKIE, session_id.encode("ascii"), path=f"/{tenant}/".encode("ascii"),
                      max_age=None if max_age_s is None else str(int(max_age_s)).encode("ascii"),
                      secure=secure, httpOnly=True, sameSite="lax")


def clear_session_cookie(request: Any, tenant: str, *, secure: bool) -> None:
    """Tell the browser to drop the session cookie for ``tenant``."""
    request.addCookie(SESSION_COOKIE, b"", path=f"/{tenant}/".encode("ascii"), max_age=b"0",
                      secure=secure, httpOnly=True, sameSite="lax")
