"""Account input rules: which usernames and passwords are acceptable.

Usernames are 3–32 characters of ``A-Z a-z 0-9 _ . -`` and are compared exactly (case-sensitive), as the
``UNIQUE (tenant_id, username)`` constraint does. Passwords are 8–1024 characters of anything: the upper
bound keeps hashing cost bounded, there is no composition rule.
"""

from __future__ import annotations

import re

from tenantsvc.core.validation import ValidationFailed

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{3,32}")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024


def username_problem(username: object) -> str | None:
    """Why ``username`` is unacceptable, or None when it is fine."""
    if not isinstance(username, str):
        return "must be a string"
    if USERNAME_PATTERN.fullmatch(username) is None:
        return "must be 3 to 32 characters: letters, digits, '_', '.' or '-'"
    return None


def password_problem(password: object) -> str | None:
    """Why ``password`` is unacceptable, or None when it is fine."""
    if not isinstance(password, str):
        return "must be a string"
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        return f"must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
    return None


def check_credentials(username: object, password: object) -> tuple[str, str]:
    """Validate a registration; ``ValidationFailed`` lists every bad field (``username``, ``password``)."""
    errors = {field: problem for field, problem in
              (("username", username_problem(username)), ("password", password_problem(password))) if problem}
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(username, str) and isinstance(password, str)
    return username, password


def could_be_credentials(username: object, password: object) -> bool:
    """True when a login attempt could match an account (a malformed one never can, so needs no hashing)."""
    return username_problem(username) is None and password_problem(password) is None
