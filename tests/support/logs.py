"""The ``eliot_messages`` fixture: every eliot message logged during a test, as dicts (import it into a test module)."""

from __future__ import annotations

from typing import Any, Iterator

import eliot
import pytest


@pytest.fixture
def eliot_messages() -> Iterator[list[dict[str, Any]]]:
    """Collect the messages logged while the test runs (not those buffered before it)."""
    messages: list[dict[str, Any]] = []
    eliot.add_destinations(messages.append)
    messages.clear()  # eliot hands a first destination everything buffered before it: not this test's
    try:
        yield messages
    finally:
        eliot.remove_destination(messages.append)
