"""The baseline: a bare ``twisted.web`` leaf resource replaying tenantsvc's captured answers, without an access log.

Spec (a JSON file, ``--spec`` or ``BENCH_REPLAY_SPEC``): ``{"routes": {"/path": ENTRY}, "fallback": ENTRY}``, an
ENTRY being ``{"status", "headers": [[name, value], …], "body_b64", "chunked", "if_none_match": {"etag", …ENTRY}}``.
``Replay`` is shared with ``alt_baselines.py``; bench/README.md says what is replayed and why.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass(frozen=True)
class ReplayedResponse:
    """One captured answer; ``chunked``: written without ``Content-Length`` (an L1 miss, a 304), as tenantsvc did."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunked: bool = False
    etag: str | None = None  # answer ``not_modified`` when If-None-Match equals it byte for byte
    not_modified: "ReplayedResponse | None" = None


def _response(entry: dict[str, Any]) -> ReplayedResponse:
    conditional = entry.get("if_none_match")
    return ReplayedResponse(int(entry["status"]), tuple((k, v) for k, v in entry["headers"]),
                            base64.b64decode(entry["body_b64"]), bool(entry.get("chunked")),
                            conditional["etag"] if conditional else None, _response(conditional) if conditional else None)


class Replay:
    """The spec's answers: ``answer(path, if_none_match)`` is the captured one, the fallback, or None (404)."""

    def __init__(self, spec: dict[str, Any]):
        self.routes = {path: _response(entry) for path, entry in spec.get("routes", {}).items()}
        self.fallback = _response(spec["fallback"]) if spec.get("fallback") else None

    @classmethod
    def from_env(cls, path: str | None = None) -> "Replay":
        """The spec in the file ``path`` (default ``$BENCH_REPLAY_SPEC``)."""
        with open(path or os.environ["BENCH_REPLAY_SPEC"], encoding="utf-8") as handle:
            return cls(json.load(handle))

    def answer(self, path: str, if_none_match: str | None) -> ReplayedResponse | None:
        """The response to replay for ``path``."""
        response = self.routes.get(path) or self.fallback
        if response and response.not_modified and if_none_match == response.etag:
            return response.not_modified
        return response


class ReplayResource(Resource):
    """Writes the captured status, headers and body (pre-encoded); twisted.web adds Server, Date and the framing."""

    isLeaf = True

    def __init__(self, replay: Replay):
        super().__init__()
        encode = lambda r: r and (r.status, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers],  # noqa
                                  r.body, r.chunked, r.etag and r.etag.encode("latin-1"), encode(r.not_modified))
        self._routes = {path.encode("ascii"): encode(r) for path, r in replay.routes.items()}
        self._fallback = encode(replay.fallback)

    def render(self, request: Any) -> bytes:
        """The replayed answer (404 for an unknown path without a fallback)."""
        response = self._routes.get(request.path) or self._fallback
        if response is None:
            request.setResponseCode(404)
            return b""
        if response[5] is not None and request.getHeader(b"if-none-match") == response[4]:
            response = response[5]
        status, headers, body, chunked = response[:4]
        request.setResponseCode(status)
        for name, value in headers:
            request.setHeader(name, value)
        if chunked:  # no Content-Length, as an asynchronous answer (and a 304) has none
            request.write(body)
            request.finish()
            return NOT_DONE_YET
        return body


class QuietSite(Site):
    """A ``Site`` without the access log."""

    def log(self, request: Any) -> None:
        """Write nothing."""


def main(argv: list[str] | None = None) -> int:
    """Listen on 127.0.0.1:``--port`` and replay until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    reactor.listenTCP(args.port, QuietSite(ReplayResource(Replay.from_env(args.spec))), interface="127.0.0.1")
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
