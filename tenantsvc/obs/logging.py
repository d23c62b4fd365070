"""eliot logging: JSON lines to stdout or a file, written by a thread so the reactor never blocks on I/O.

``twisted_observer`` is a ``twistd --logger`` factory that routes Twisted's own log events into eliot,
so stdout carries one JSON stream that ``eliot-tree`` can read.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from eliot import FileDestination, MessageType, fields, write_failure
from eliot.logwriter import ThreadedWriter
from twisted.application.service import Service
from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import provider

TWISTED_LOG = MessageType(
    "tenantsvc:twisted:log", fields(log_level=str, text=str, log_namespace=str), "A log event from Twisted itself."
)


class LoggingService(Service):
    """Adds the eliot destination on start and removes it (flushing) on stop."""

    name = "logging"  # type: ignore[assignment]  # Twisted declares Service.name = None

    def __init__(self, reactor: Any, log_file: str | None, stream: TextIO | None = None):
        self._reactor = reactor
        self._log_file = log_file
        self._stream = stream
        self._writer: ThreadedWriter | None = None
        self._opened: TextIO | None = None

    def startService(self) -> None:
        """Open the destination and start the writer thread."""
        if self._log_file:
            directory = os.path.dirname(os.path.abspath(self._log_file))
            os.makedirs(directory, exist_ok=True)
            self._opened = open(self._log_file, "a", encoding="utf-8")
            target: TextIO = self._opened
        else:
            target = self._stream or sys.__stdout__  # type: ignore[assignment]  # twistd replaces sys.stdout with a log shim
        self._writer = ThreadedWriter(FileDestination(file=target), self._reactor)
        self._writer.startService()
        super().startService()

    def stopService(self) -> Any:
        """Flush queued messages, stop the writer thread and close the file."""
        super().stopService()
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        done = writer.stopService()

        def close(result: object) -> object:
            if self._opened is not None:
                self._opened.close()
                self._opened = None
            return result

        return done.addBoth(close) if done is not None else close(None)


@provider(ILogObserver)
def _forward_to_eliot(event: dict[str, Any]) -> None:
    failure = event.get("log_failure")
    if failure is not None:
        write_failure(failure)
        return
    level = event.get("log_level")
    TWISTED_LOG.log(
        log_level=level.name if isinstance(level, type(LogLevel.info)) else "info",
        text=(formatEvent(event) or "")[:4000],
        log_namespace=str(event.get("log_namespace", "")),
    )


def twisted_observer() -> ILogObserver:
    """``twistd --logger=tenantsvc.obs.logging.twisted_observer``: Twisted's log events become eliot messages."""
    return _forward_to_eliot

