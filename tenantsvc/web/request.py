"""The Request class used by our Site: caps request bodies and carries per-request context."""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.server import Request

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class TenantRequest(Request):
    """A ``twisted.web`` request that stops buffering a body past ``max_body_bytes``.

    The bytes beyond the cap are read off the socket and dropped, so a huge upload costs neither
    memory nor disk; the root resource then answers 413.
    """

    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    # Context filled in by the root resource and the route wrappers; read by metrics and logging.
    correlation_id = ""
    request_id = ""
    endpoint_label = "unmatched"
    request_class = "public"
    tenant_label = ""
    user_id: int | None = None
    body_too_large = False
    started_at = 0.0
    log_task: Any = None
    # Called once with (request, completed) when the response is finished or the client goes away:
    # cheaper than a notifyFinish() Deferred on every request.
    on_finished: Callable[[Any, bool], None] | None = None
    _body_bytes = 0

    def finish(self) -> None:
        """Finish the response, then tell the root resource (metrics, log task, in-flight count)."""
        super().finish()
        self._report_finished(True)

    def connectionLost(self, reason: Any) -> None:
        """The connection closed; if the response was not finished, report the request as abandoned."""
        super().connectionLost(reason)
        self._report_finished(False)

    def _report_finished(self, completed: bool) -> None:
        hook, self.on_finished = self.on_finished, None
        if hook is not None:
            hook(self, completed)

    def gotLength(self, length: int | None) -> None:
        """Refuse up front when the declared Content-Length is over the cap."""
        if length is not None and length > self.max_body_bytes:
            self.body_too_large = True
        super().gotLength(length if not self.body_too_large else 0)

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer body bytes only while under the cap."""
        if self.body_too_large:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.max_body_bytes:
            self.body_too_large = True
            return
        super().handleContentChunk(data)
