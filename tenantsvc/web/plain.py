"""Helpers for plain ``twisted.web`` handlers (the fast paths that bypass Klein)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from eliot import write_failure
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from tenantsvc.web.errors import internal_error, render_api_error

# A fast-path handler: called with the request and its path segments; returns bytes or NOT_DONE_YET.
Handler = Callable[[Any, list[bytes]], Any]


def finish_later(request: Any, deferred: Any, render: Callable[[Any], bytes]) -> Any:
    """Serve an asynchronous plain-twisted.web answer: write ``render(result)`` when ``deferred`` fires."""

    def write(result: Any) -> None:
        body = render(result)
        if not request.finished and not request._disconnected:
            request.write(body)
            request.finish()

    deferred.addCallback(write).addErrback(lambda failure: fail_later(request, failure))
    return NOT_DONE_YET


def fail_later(request: Any, failure: Any) -> None:
    """An asynchronous answer failed: log it and send the JSON 500 (unless the client has gone)."""
    write_failure(failure)
    if not request.finished and not request._disconnected:
        request.write(render_api_error(request, internal_error(request.correlation_id)))
        request.finish()


def stream(request: Any, chunks: Iterator[bytes]) -> Any:
    """Send ``chunks`` as the body, each made only when the connection has taken the ones before (a push
    producer on the request: paused while the transport's buffer is full), then finish. Without a
    ``Content-Length`` the answer is chunked (HTTP/1.1)."""
    StreamedBody(request, chunks).start()
    return NOT_DONE_YET


@implementer(IPushProducer)
class StreamedBody:
    """Writes an iterator of chunks to a request at the pace the connection takes them."""

    def __init__(self, request: Any, chunks: Iterator[bytes]):
        self._request = request
        self._chunks = chunks
        self._paused = False
        self._writing = False
        self._done = False

    def start(self) -> None:
        """Register with the request and write until paused or done."""
        self._request.registerProducer(self, True)
        self._write()

    def _write(self) -> None:
        if self._writing:  # resumed from within a write: the loop below carries on
            return
        self._writing = True
        try:
            while not self._paused and not self._done:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._end()
                    return
                self._request.write(chunk)  # may pause us (the transport's buffer is full)
        finally:
            self._writing = False

    def _end(self) -> None:
        self._done = True
        self._request.unregisterProducer()
        if not self._request.finished and not self._request._disconnected:
            self._request.finish()

    def pauseProducing(self) -> None:
        """The connection's buffer is full: stop making chunks."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The connection took what was written: go on."""
        self._paused = False
        if not self._done:
            self._write()

    def stopProducing(self) -> None:
        """The client went away: make nothing more."""
        self._done = True
