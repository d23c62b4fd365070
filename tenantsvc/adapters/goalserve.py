"""The Goalserve feed over HTTP (treq): odds and results documents as raw bytes, failures as ``FeedError``.

``FeedSource`` is what the odds and settlement workers depend on; ``GoalserveClient`` implements it over
the network and ``tenantsvc.adapters.demo_feed.DemoFeed`` from packaged files. A fetch is bounded as a
whole (connect, headers and body) by ``timeout_s`` on the injected clock and by ``max_body_bytes`` on the
decoded body, never follows redirects, and turns every failure into one of the ``core.feed_errors``
types. The API key is a secret (notes §6.2 item 11): it appears only in the request URL, never in an
exception message, a repr or an eliot field — those name the feed path alone (``getodds/soccer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlencode

from eliot import ActionType, Field, current_action, fields, register_exception_extractor
from eliot.twisted import DeferredContext
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet import protocol
from twisted.python.failure import Failure
from twisted.web.client import RequestNotSent, RequestTransmissionFailed, ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse
from treq.client import HTTPClient

from tenantsvc import __version__
from tenantsvc.core.clock import utc_datetime
from tenantsvc.core.feed_errors import FeedError, FeedHttpError, FeedMalformed, FeedTimeout, FeedUnreachable
from tenantsvc.core.odds import SPORT_CATEGORIES, results_feed_path
from tenantsvc.runtime.bounded import on_timeout
from tenantsvc.runtime.deferreds import relay

DEFAULT_TIMEOUT_S = 15.0  # the original client's read timeout (notes §4)
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024  # the soccer odds document is about 34 MB
RESULT_PAGES: tuple[str, ...] = ("home",) + tuple(f"d-{days}" for days in range(1, 8))
ODDS_BOOKMAKER = "16"  # bet365 only
CRICKET_ODDS_PATH, CRICKET_ODDS_CATEGORY = "getodds/soccer", "cricket_10"  # cricket lives under soccer
FEED_DATE_FORMAT = "%d.%m.%Y"
USER_AGENT = f"tenantsvc/{__version__}"
REQUEST_HEADERS: dict[bytes | str, bytes | str] = {"Accept": "application/json", "User-Agent": USER_AGENT}

FEED_FETCH = ActionType(
    "tenantsvc:feed:fetch",
    fields(path=str),
    [Field.for_types("status", [int], "HTTP status of the response"),
     Field.for_types("bytes", [int], "decoded body size"),
     Field.for_types("duration_ms", [float], "request and body, on the injected clock")],
    "One request to the Goalserve feed; ``path`` never carries the API key or the query.",
)


def _feed_error_fields(error: FeedError) -> dict[str, Any]:
    """Fields a failed fetch action gets from its error: the kind, and the HTTP status when there was one."""
    status = getattr(error, "status", None)
    return {"kind": error.kind} if status is None else {"kind": error.kind, "status": status}


register_exception_extractor(FeedError, _feed_error_fields)

# What a broken network looks like from twisted.web's Agent: connect failures (refused, no route, DNS —
# an OSError), a connection dropped mid-request or mid-body, a request that could not be sent.
_NETWORK_ERRORS = (ConnectError, OSError, ConnectionClosed, ResponseFailed, RequestTransmissionFailed,
                   RequestNotSent)
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


@runtime_checkable
class FeedSource(Protocol):
    """Where the workers get feed documents from: raw bytes, parsed elsewhere (``core.goalserve_*``)."""

    def fetch_odds(self, sport: str) -> "Deferred[bytes]":
        """The pre-match odds document of ``sport`` (one of ``SPORTS``); fails with a ``FeedError``."""

    def fetch_results(self, sport: str, page: str) -> "Deferred[bytes]":
        """The results document of ``sport`` for ``page`` (``"home"`` or ``"d-1"``..``"d-7"``)."""


def require_sport(sport: str) -> None:
    """Raise ValueError unless ``sport`` is one of the feed's sports."""
    if sport not in SPORT_CATEGORIES:
        raise ValueError(f"unknown sport {sport!r}")


def require_result_page(page: str) -> None:
    """Raise ValueError unless ``page`` is one of ``RESULT_PAGES``."""
    if page not in RESULT_PAGES:
        raise ValueError(f"unknown results page {page!r}")


def odds_window(now: float) -> tuple[str, str]:
    """The odds date window, yesterday..tomorrow in UTC, as ``DD.MM.YYYY`` strings."""
    today = utc_datetime(now).date()
    return ((today - timedelta(days=1)).strftime(FEED_DATE_FORMAT),
            (today + timedelta(days=1)).strftime(FEED_DATE_FORMAT))


def odds_request(sport: str, now: float) -> tuple[str, str]:
    """The feed path and query string of ``sport``'s odds at ``now`` (notes §4.1)."""
    require_sport(sport)
    if sport == "cricket":
        return CRICKET_ODDS_PATH, urlencode([("cat", CRICKET_ODDS_CATEGORY), ("json", "1")])
    date_start, date_end = odds_window(now)
    query = [("cat", SPORT_CATEGORIES[sport]), ("json", "1"), ("bm", ODDS_BOOKMAKER),
             ("date_start", date_start), ("date_end", date_end)]
    return f"getodds/{sport}", urlencode(query)


def results_request(sport: str, page: str) -> tuple[str, str]:
    """The feed path and query string of ``sport``'s results ``page`` (notes §4.2, §6.2 item 28)."""
    require_sport(sport)
    require_result_page(page)
    return f"{results_feed_path(sport)}/{page}", urlencode([("json", "1")])


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date relative to ``now``.

    A date in the past gives 0; a missing or unreadable value gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may come without a zone
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


class _LimitedBody(protocol.Protocol):
    """Receives a response body into ``finished``, refusing it past ``limit`` bytes (declared or received).

    Cancelling ``finished`` (the timeout) drops the connection, so a feed that stalls mid-body is let go.
    """

    def __init__(self, path: str, limit: int, declared_length: object):
        self.finished: "Deferred[bytes]" = Deferred(self._drop_connection)
        self._path = path
        self._limit = limit
        self._declared_too_large = isinstance(declared_length, int) and declared_length > limit
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        """Keep a chunk of the body, or give up once the body is larger than the limit."""
        if self.finished.called:
            return
        self._size += len(data)
        if self._declared_too_large or self._size > self._limit:
            self._drop_connection(self.finished)
            self.finished.errback(FeedMalformed(f"{self._path}: body larger than {self._limit} bytes"))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """The body is complete (or the connection broke): deliver the bytes or the failure."""
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):  # PotentialDataLoss: a body ended by closing
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)

    def _drop_connection(self, _: object) -> None:
        transport: Any = self.transport  # zope-declared ITransport: its methods type-check as unbound
        if transport is not None:
            transport.loseConnection()


class _Deadline:
    """Why an in-flight fetch was stopped (timeout or the caller cancelling), so its failure reads right."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def stop(self, reason: str, work: Deferred) -> None:
        """Record ``reason`` (the first one wins) and cancel ``work``."""
        if self.reason is None:
            self.reason = reason
        work.cancel()


def _describe(failure: Failure) -> str:
    """A network failure's type names (``ResponseNeverReceived(ConnectionLost)``), never its text."""
    name = failure.type.__name__
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        return f"{name}({', '.join(reason.type.__name__ for reason in reasons)})"
    return name


def _as_feed_error(failure: Failure, path: str, deadline: _Deadline, timeout_s: float) -> Failure:
    """Translate a failed fetch: timeout → FeedTimeout, network → FeedUnreachable, cancelled stays cancelled."""
    if deadline.reason == "cancelled":
        return Failure(CancelledError(f"{path}: fetch cancelled"))
    if deadline.reason == "timeout":
        return Failure(FeedTimeout(f"{path}: no complete response within {timeout_s:g} s"))
    if failure.check(FeedError):
        return failure
    if failure.check(*_NETWORK_ERRORS):
        return Failure(FeedUnreachable(f"{path}: connection failed: {_describe(failure)}"))
    return failure


class GoalserveClient:
    """``FeedSource`` over HTTP: ``<base_url>/<api_key>/<path>?<query>`` with treq on ``agent``.

    Sends ``Accept: application/json``, a User-Agent and ``Accept-Encoding: gzip`` (treq's own
    ``ContentDecoderAgent`` wraps ``agent`` on every request and decodes gzip bodies).
    """

    def __init__(self, base_url: str, api_key: str, clock: Any, agent: Any, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self._base_url = base_url.rstrip("/")
        self._url_prefix = f"{self._base_url}/{quote(api_key, safe='')}/"
        self._clock = clock
        self._http = HTTPClient(agent)
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"GoalserveClient(base_url={self._base_url!r}, timeout_s={self.timeout_s!r})"

    def fetch_odds(self, sport: str) -> "Deferred[bytes]":
        """The odds document of ``sport`` for yesterday..tomorrow (UTC, from the clock); ValueError if unknown."""
        return self._fetch(*odds_request(sport, self._clock.seconds()))

    def fetch_results(self, sport: str, page: str) -> "Deferred[bytes]":
        """The results document of ``sport`` for ``page`` on its results path; ValueError if unknown."""
        return self._fetch(*results_request(sport, page))

    def _fetch(self, path: str, query: str) -> "Deferred[bytes]":
        """GET ``path`` within ``timeout_s`` as one ``tenantsvc:feed:fetch`` action; errors become FeedErrors."""
        deadline = _Deadline()
        action = FEED_FETCH(path=path)
        with action.context():
            work = ensureDeferred(self._get(path, f"{self._url_prefix}{path}?{query}"))
            on_timeout(self._clock, work, self.timeout_s, lambda: deadline.stop("timeout", work))
            work.addErrback(_as_feed_error, path, deadline, self.timeout_s)
            finished = DeferredContext(work).addActionFinish()
        return _cancellable(finished, lambda: deadline.stop("cancelled", work))

    async def _get(self, path: str, url: str) -> bytes:
        """One request and its whole body; non-200 raises FeedHttpError after reading the body."""
        started = self._clock.seconds()
        response = await self._http.get(url, headers=REQUEST_HEADERS,
                                        allow_redirects=False, unbuffered=True, reactor=self._clock)
        body = await self._read_body(path, response)
        if response.code != 200:
            raise FeedHttpError(response.code, f"{path}: feed answered HTTP {response.code}",
                                retry_after_s=self._retry_after(response))
        _add_success_fields(status=response.code, bytes=len(body),
                            duration_ms=(self._clock.seconds() - started) * 1000.0)
        return body

    async def _read_body(self, path: str, response: Any) -> bytes:
        """The decoded body, refused with FeedMalformed past ``max_body_bytes``."""
        reader = _LimitedBody(path, self.max_body_bytes, response.length)
        response.deliverBody(reader)
        return await reader.finished

    def _retry_after(self, response: IResponse) -> float | None:
        """The response's ``Retry-After`` in seconds from now, or None."""
        values = response.headers.getRawHeaders("Retry-After")
        return parse_retry_after(values[0] if values else None, self._clock.seconds())


def _add_success_fields(**success_fields: Any) -> None:
    """Add ``success_fields`` to the eliot action the caller runs in."""
    action = current_action()
    if action is not None:
        action.addSuccessFields(**success_fields)


def _cancellable(inner: "Deferred[bytes]", on_cancel: Callable[[], None]) -> "Deferred[bytes]":
    """A Deferred for ``inner``'s result whose cancellation runs ``on_cancel`` (which stops ``inner``)."""
    outer: "Deferred[bytes]" = Deferred(lambda _: on_cancel())
    inner.addBoth(relay, outer)  # after a cancel, ``outer`` already failed with CancelledError: dropped
    return outer
