"""Helpers for plain ``twisted.web`` handlers (the fast paths that bypass Klein)."""

from __future__ import annotations

from typing import Any, Callable

from eliot import write_failure
from twisted.web.server import NOT_DONE_YET

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
