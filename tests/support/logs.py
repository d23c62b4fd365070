"""The ``eliot_messages`` fixture: every eliot message logged during a test, as dicts (import it into a test module)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import eliot
import pytest
from eliot import MemoryLogger
from eliot.testing import check_for_errors, swap_logger


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


@contextmanager
def memory_logger() -> Iterator[MemoryLogger]:
    """Make eliot's global logger a ``MemoryLogger`` for the block; then fail on invalid messages or
    tracebacks the block did not expect (and flush)."""
    logger = MemoryLogger()
    previous = swap_logger(logger)
    try:
        yield logger
    finally:
        swap_logger(previous)
    check_for_errors(logger)
