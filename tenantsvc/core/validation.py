"""Field-level validation errors shared by every input checker in ``core``."""

from __future__ import annotations

import unicodedata
from typing import Mapping


class ValidationFailed(ValueError):
    """Input was well-formed JSON but some fields are invalid; ``errors`` maps field → message."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def has_control_characters(text: str) -> bool:
    """True if ``text`` holds a control, format or line-separator character (never wanted in a name)."""
    return any(unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029" for ch in text)


def check_text(errors: dict[str, str], field: str, value: object, *, min_len: int, max_len: int) -> str | None:
    """Validate a single-line text field; record a message in ``errors`` and return None when invalid."""
    if not isinstance(value, str):
        errors[field] = "must be a string"
        return None
    text = value.strip()
    if not min_len <= len(text) <= max_len:
        errors[field] = f"must be {min_len} to {max_len} characters"
        return None
    if has_control_characters(text):
        errors[field] = "must not contain control characters"
        return None
    return text


def check_unknown_fields(errors: dict[str, str], payload: Mapping[str, object], allowed: set[str] | frozenset[str]) -> None:
    """Record an error for every key of ``payload`` that is not in ``allowed``."""
    for key in payload:
        if key not in allowed:
            errors[str(key)[:64]] = "unknown field"
