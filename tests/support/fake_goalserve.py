"""A fake Goalserve feed on a real loopback port, programmable per path, recording every request.

``FakeGoalserve`` is a twisted.web resource serving ``/<api_key>/<path>``: a wrong key gets 403; each
path answers with what the test programmed (``serve_bytes``, ``serve_fixture``, ``serve_empty``,
``serve_status`` — e.g. 429 with ``Retry-After`` — or the defaults below), gzip-encoded when the client
accepts gzip; ``hold(path)`` keeps requests open (before the answer, or ``mid_body``) until the returned
``Gate`` is released, or forever.
Every request is recorded (``requests``, ``requests_for(path)``, ``arrived(path)``) with its query args
and headers, and with the status and encoding it was answered with.

Default routes: ``DEFAULT_FIXTURES`` (files under ``tests/fixtures/goalserve/``, read at request time: a
file that does not exist yet is served as 404), any other results page (``<prefix>/home``,
``<prefix>/d-N``) → ``{"scores": {}}``, anything else → 404.

``start_fake_goalserve(reactor)`` listens on 127.0.0.1 port 0 and gives back a ``RunningFakeGoalserve``
(``base_url``, ``api_key``, ``fake``, ``client(reactor, …)``, ``stop()``); the ``fake_goalserve`` fixture
(import it into a test module) does both around a test. Nothing here imports the reactor at module scope.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "goalserve"
DEFAULT_API_KEY = "fake-goalserve-secret-key-0d1e2f"
EMPTY_RESULTS = b'{"scores": {}}'
DEFAULT_FIXTURES: dict[str, str] = {
    "getodds/soccer": "odds_soccer_list.json",
    "getodds/basketball": "odds_basketball_single.json",
    "soccernew/home": "results_soccer_home.json",
    "soccernew/d-1": "results_soccer_d-1.json",
    "bsktbl/home": "results_basketball_home.json",
}
RESULTS_PAGE = re.compile(r"(?!getodds/)[^/]+/(?:home|d-[1-7])")


@dataclass(frozen=True)
class Reply:
    """A programmed answer: a status, headers and either ``body`` or a fixture file (404 while missing)."""

    status: int = 200
    body: bytes = b""
    fixture: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def resolved(self, fixtures_dir: Path) -> "Reply":
        """This reply with the fixture file read now, or a 404 if the file does not exist (yet)."""
        if self.fixture is None:
            return self
        path = fixtures_dir / self.fixture
        if not path.is_file():
            return Reply(404, f"no fixture {self.fixture}".encode())
        return Reply(self.status, path.read_bytes(), None, self.headers)


@dataclass
class RecordedRequest:
    """One request as the fake saw it, and (once answered) the status and encoding it was answered with."""

    key: str
    path: str
    args: dict[str, list[str]]
    headers: dict[str, list[str]]
    status: int | None = None
    content_encoding: str | None = None
    disconnected: Deferred = field(default_factory=Deferred, repr=False, compare=False)
    """Fires when the client went away before the request was answered."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def accepts_gzip(self) -> bool:
        """Whether the client listed gzip in ``Accept-Encoding``."""
        offered = ",".join(self.headers.get("accept-encoding", []))
        return any(token.split(";")[0].strip().lower() == "gzip" for token in offered.split(","))


class Gate:
    """Holds requests open until ``release()``; never released means held until the server stops.

    ``mid_body`` gates send the status, headers and half the body first, then stall.
    """

    def __init__(self, mid_body: bool = False) -> None:
        self.mid_body = mid_body
        self.released = False
        self._waiting: list[Deferred] = []

    @property
    def held(self) -> int:
        """How many requests are waiting at the gate now."""
        return sum(1 for waiter in self._waiting if not waiter.called)

    def wait(self) -> Deferred:
        """A Deferred that fires when the gate is released (at once if it already was)."""
        if self.released:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._waiting.append(waiter)
        return waiter

    def release(self) -> None:
        """Let every held and future request through to its programmed reply."""
        self.released = True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.called:
                waiter.callback(None)


class FakeGoalserve(Resource):
    """The fake feed resource: programmable replies per path, holds, gzip, and a request log."""

    isLeaf = True

    def __init__(self, api_key: str = DEFAULT_API_KEY, fixtures_dir: Path = FIXTURES_DIR):
        super().__init__()
        self.api_key = api_key
        self.fixtures_dir = fixtures_dir
        self.requests: list[RecordedRequest] = []
        self._replies: dict[str, Reply] = {path: Reply(fixture=name) for path, name in DEFAULT_FIXTURES.items()}
        self._holds: dict[str, Gate] = {}
        self._arrival_waiters: dict[str, list[Deferred]] = {}

    # -- programming ---------------------------------------------------------------------------------

    def serve(self, path: str, reply: Reply) -> None:
        """Answer requests for ``path`` (e.g. ``getodds/soccer``, without key or query) with ``reply``."""
        self._replies[path] = reply

    def serve_bytes(self, path: str, body: bytes, status: int = 200) -> None:
        """Answer ``path`` with ``body`` as a JSON document."""
        self.serve(path, Reply(status, body))

    def serve_fixture(self, path: str, name: str) -> None:
        """Answer ``path`` with ``tests/fixtures/goalserve/<name>`` (404 while the file is missing)."""
        self.serve(path, Reply(fixture=name))

    def serve_empty(self, path: str) -> None:
        """Answer ``path`` with 200 and an empty body."""
        self.serve(path, Reply(200, b""))

    def serve_status(self, path: str, status: int, *, retry_after: str | None = None, body: bytes = b"") -> None:
        """Answer ``path`` with ``status`` (429, 500 …), optionally with a ``Retry-After`` header."""
        headers = () if retry_after is None else (("Retry-After", retry_after),)
        self.serve(path, Reply(status, body, None, headers))

    def hold(self, path: str, *, mid_body: bool = False) -> Gate:
        """Keep requests for ``path`` open until the returned gate is released; they then get their reply.

        With ``mid_body`` the status, headers and first half of the body go out at once, the rest on release.
        """
        gate = self._holds[path] = Gate(mid_body)
        return gate

    # -- inspection ----------------------------------------------------------------------------------

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests made for ``path`` (any key), oldest first."""
        return [recorded for recorded in self.requests if recorded.path == path]

    def arrived(self, path: str) -> Deferred:
        """A Deferred firing with the first request for ``path`` (at once if it already came)."""
        seen = self.requests_for(path)
        if seen:
            return succeed(seen[0])
        waiter: Deferred = Deferred()
        self._arrival_waiters.setdefault(path, []).append(waiter)
        return waiter

    def reply_for(self, path: str) -> Reply:
        """What ``path`` answers now: the programmed reply, a default, an empty results page, or 404."""
        if path in self._replies:
            return self._replies[path].resolved(self.fixtures_dir)
        if RESULTS_PAGE.fullmatch(path):
            return Reply(200, EMPTY_RESULTS)
        return Reply(404, b"not found")

    # -- serving -------------------------------------------------------------------------------------

    def render_GET(self, request: Request) -> Any:
        """Record the request, then answer it now, or hold it (before or mid body) until its gate opens."""
        recorded = _record(request)
        self.requests.append(recorded)
        request.notifyFinish().addErrback(lambda _: recorded.disconnected.callback(None))
        gate = self._holds.get(recorded.path) if recorded.key == self.api_key else None
        if gate is not None and gate.mid_body and not gate.released:
            rest = _start_answer(request, recorded, self._reply_to(recorded), mid_body=True)
            gate.wait().addCallback(self._finish_unless_gone, request, recorded, rest)
        else:
            waiting = gate.wait() if gate is not None else succeed(None)
            waiting.addCallback(self._answer_unless_gone, request, recorded)
        self._announce(recorded)
        return NOT_DONE_YET

    def _reply_to(self, recorded: RecordedRequest) -> Reply:
        """403 for a wrong key, else what the path answers."""
        return self.reply_for(recorded.path) if recorded.key == self.api_key else Reply(403, b"invalid key")

    def _answer_unless_gone(self, _: object, request: Request, recorded: RecordedRequest) -> None:
        if not recorded.disconnected.called:
            rest = _start_answer(request, recorded, self._reply_to(recorded))
            self._finish_unless_gone(None, request, recorded, rest)

    def _finish_unless_gone(self, _: object, request: Request, recorded: RecordedRequest, rest: bytes) -> None:
        if not recorded.disconnected.called:
            request.write(rest)
            request.finish()
            recorded.status = request.code

    def _announce(self, recorded: RecordedRequest) -> None:
        """Fire the ``arrived`` waiters of the request's path (after it is held or answered)."""
        for waiter in self._arrival_waiters.pop(recorded.path, []):
            waiter.callback(recorded)


def _record(request: Request) -> RecordedRequest:
    """The request's key, feed path, query args and headers as text."""
    segments = request.path.decode("utf-8", "replace").lstrip("/").split("/", 1)
    key, path = (segments[0], segments[1]) if len(segments) == 2 else (segments[0], "")
    args = {name.decode(): [value.decode() for value in values] for name, values in request.args.items()}
    headers = {name.decode().lower(): [value.decode() for value in values]
               for name, values in request.requestHeaders.getAllRawHeaders()}
    return RecordedRequest(key, path, args, headers)


def _start_answer(request: Request, recorded: RecordedRequest, reply: Reply, mid_body: bool = False) -> bytes:
    """Send ``reply``'s status and headers (gzip when accepted and non-empty); write the first half of
    the body if the request is held mid-body, else nothing. Returns what is left to write."""
    body = reply.body
    request.setResponseCode(reply.status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in reply.headers:
        request.setHeader(name.encode(), value.encode())
    if body and recorded.accepts_gzip:
        body = gzip.compress(body)
        request.setHeader(b"Content-Encoding", b"gzip")
        recorded.content_encoding = "gzip"
    request.setHeader(b"Content-Length", str(len(body)).encode())
    sent = len(body) // 2 if mid_body else 0
    if sent:
        request.write(body[:sent])
    return body[sent:]


@dataclass
class RunningFakeGoalserve:
    """A listening fake: ``base_url`` is ``http://127.0.0.1:<port>`` (the key goes after it)."""

    fake: FakeGoalserve
    base_url: str
    _port: Any
    _connections: WrappingFactory

    @property
    def api_key(self) -> str:
        """The key the fake accepts."""
        return self.fake.api_key

    def client(self, reactor: Any, *, api_key: str | None = None, clock: Any = None, **options: Any) -> Any:
        """A ``GoalserveClient`` on this fake (a plain non-persistent ``Agent``), timed by ``clock`` or the reactor."""
        from twisted.web.client import Agent

        from tenantsvc.adapters.goalserve import GoalserveClient

        return GoalserveClient(self.base_url, self.api_key if api_key is None else api_key,
                               reactor if clock is None else clock, Agent(reactor), **options)

    def stop(self) -> Deferred:
        """Drop the connections still open (held requests, idle keep-alives) and stop listening."""
        for connection in list(self._connections.protocols):
            connection.transport.abortConnection()
        return self._port.stopListening()


async def start_fake_goalserve(reactor: Any, fake: FakeGoalserve | None = None) -> RunningFakeGoalserve:
    """Listen with ``fake`` (a new default one if None) on 127.0.0.1, port 0."""
    from twisted.internet import endpoints

    fake = fake if fake is not None else FakeGoalserve()
    site = Site(fake)
    site.noisy = False
    connections = WrappingFactory(site)  # tracks open connections so ``stop()`` can drop them
    connections.noisy = False
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(connections)
    return RunningFakeGoalserve(fake, f"http://127.0.0.1:{port.getHost().port}", port, connections)


@pytest.fixture
def fake_goalserve() -> Iterator[RunningFakeGoalserve]:
    """A running default fake for one test, stopped afterwards."""
    from twisted.internet import reactor

    server = pytest_twisted.blockon(Deferred.fromCoroutine(start_fake_goalserve(reactor)))
    try:
        yield server
    finally:
        pytest_twisted.blockon(server.stop())
