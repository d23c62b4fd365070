"""The benchmark's baseline: a bare ``twisted.web`` server that replays captured responses.

``theme_bench.py`` fetches the benchmarked answers from a running tenantsvc (the demo tenant's
load-theme and theme.css, the 304 answer to a matching ``If-None-Match``, ``/healthz``, and for the
10,000-tenant scenarios one tenant's answer), writes what it saw (status, headers in order, body) to a
JSON spec, and starts this server with it. Each request is answered with the same status, the same
headers and the same body bytes, so the only difference left between the two servers is the work
tenantsvc does per request (ids, eliot task, metrics, dispatch, cache lookup). The baseline keeps
nothing else: no access log, no logging observer, no per-request allocation beyond what
``twisted.web`` itself needs.

Run: ``python bench/baseline_server.py --spec SPEC.json --port PORT`` (listens on 127.0.0.1 only).
Spec format::

    {"routes": {"/path": {"status": 200, "headers": [["Name", "value"], ...], "body_b64": "...",
                          "if_none_match": {"etag": "\\"…\\"", "status": 304, "headers": [...],
                                            "body_b64": ""}}},
     "fallback": {"status": 200, "headers": [...], "body_b64": "..."}}

``"chunked": true`` (optional) writes the body with ``request.write`` and no ``Content-Length``, as
tenantsvc does for an answer that waited (an L1 miss), so ``twisted.web`` frames it with chunked
transfer coding exactly as it did for tenantsvc; and as tenantsvc does for a 304, which carries no
body and, unlike a ``b""`` returned from ``render``, no ``Content-Length: 0`` (RFC 9110 §8.6). ``if_none_match`` (optional) is answered instead of the route's response when the request's
``If-None-Match`` header equals ``etag`` byte for byte (a real server would compare too; this is the
cheapest comparison). ``fallback`` (optional) answers every path not in ``routes`` (the 10,000-tenant
scenarios), otherwise such paths get an empty 404. ``Server``, ``Date``, ``Content-Length``,
``Connection`` and ``Transfer-Encoding`` are left to ``twisted.web``, which writes them exactly as it
does for tenantsvc.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass(frozen=True)
class ReplayedResponse:
    """One captured response, ready to be written as-is, with an optional 304 alternative."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    not_modified_etag: bytes | None = None
    not_modified: "ReplayedResponse | None" = None
    chunked: bool = False


def _response(entry: dict[str, Any]) -> ReplayedResponse:
    conditional = entry.get("if_none_match")
    return ReplayedResponse(
        status=int(entry["status"]),
        headers=tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in entry["headers"]),
        body=base64.b64decode(entry["body_b64"]),
        not_modified_etag=conditional["etag"].encode("latin-1") if conditional else None,
        not_modified=_response(conditional) if conditional else None,
        chunked=bool(entry.get("chunked")),
    )


def load_routes(spec: dict[str, Any]) -> tuple[dict[bytes, ReplayedResponse], ReplayedResponse | None]:
    """Turn a spec mapping (see the module docstring) into path → response, plus the fallback."""
    routes = {path.encode("ascii"): _response(entry) for path, entry in spec["routes"].items()}
    fallback = _response(spec["fallback"]) if spec.get("fallback") else None
    return routes, fallback


class ReplayResource(Resource):
    """A leaf resource answering each known path with its replayed response, anything else the fallback or 404."""

    isLeaf = True

    def __init__(self, routes: dict[bytes, ReplayedResponse], fallback: ReplayedResponse | None = None):
        super().__init__()
        self._routes = routes
        self._fallback = fallback

    def render(self, request: Any) -> bytes:
        """Write the captured status and headers and return the captured body."""
        response = self._routes.get(request.path) or self._fallback
        if response is None:
            request.setResponseCode(404)
            return b""
        if response.not_modified is not None and request.getHeader(b"if-none-match") == response.not_modified_etag:
            response = response.not_modified
        request.setResponseCode(response.status)
        for name, value in response.headers:
            request.setHeader(name, value)
        if response.chunked:  # written without Content-Length, as an asynchronous answer is
            request.write(response.body)
            request.finish()
            return NOT_DONE_YET
        return response.body


class QuietSite(Site):
    """A ``Site`` without the access log (the baseline measures serving, not logging)."""

    def log(self, request: Any) -> None:
        """Write nothing."""


def main(argv: list[str] | None = None) -> int:
    """Parse ``--spec``/``--port``, listen on 127.0.0.1 and run the reactor until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file of captured responses")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as handle:
        routes, fallback = load_routes(json.load(handle))

    from twisted.internet import reactor

    reactor.listenTCP(args.port, QuietSite(ReplayResource(routes, fallback)), interface="127.0.0.1")
    sys.stdout.write(f"baseline listening on 127.0.0.1:{args.port} ({len(routes)} routes"
                     f"{', with a fallback' if fallback else ''})\n")
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
