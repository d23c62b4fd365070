"""Fixtures for the HTTP-level tests: an in-memory application (``tests.support.web_harness``) and captured eliot logs.

Every test here runs with eliot's ``MemoryLogger`` as the global logger; at teardown the captured
messages are validated against their declared types and any traceback the test did not expect (and
flush) fails it. Errors Twisted logs itself (an "Unhandled error in Deferred" from a callback that
raised) fail the test too, so an error swallowed into a log cannot go unnoticed.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterator

import pytest
from eliot import MemoryLogger
from tests.support.logs import memory_logger
from twisted.logger import globalLogPublisher

from tests.support.web_harness import WebHarness, build_harness


@pytest.fixture(autouse=True)
def eliot_logger() -> Iterator[MemoryLogger]:
    """Capture every eliot message of the test; fail on invalid messages or unflushed tracebacks."""
    with memory_logger() as logger:
        yield logger


@pytest.fixture(autouse=True)
def twisted_logged_errors() -> Iterator[list[dict[str, Any]]]:
    """Fail the test if Twisted logged a failure (e.g. an unhandled error in a Deferred) while it ran."""
    errors: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        """Keep every logged event that carries a failure."""
        if event.get("log_failure") is not None:
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield errors
        # An unhandled error in a Deferred is logged when the Deferred is collected; the young
        # generations hold it (a full collection would cost ~60 ms per test for nothing more).
        gc.collect(1)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert not errors, [event["log_failure"].getTraceback() for event in errors]


@pytest.fixture
def make_harness(tmp_path: Any) -> Iterator[Callable[..., WebHarness]]:
    """A factory for harnesses over fresh SQLite files (options as ``build_harness``); all closed at teardown."""
    built: list[WebHarness] = []

    def make(**options: Any) -> WebHarness:
        """Build one more harness on its own database file."""
        harness = build_harness(str(tmp_path / f"web-{len(built)}.sqlite3"), **options)
        built.append(harness)
        return harness

    yield make
    for harness in built:
        harness.close()


@pytest.fixture
def harness(make_harness: Callable[..., WebHarness]) -> WebHarness:
    """The application with the admin API enabled, migrated and warmed (no tenants yet)."""
    return make_harness()
