"""The benchmark's baseline: a bare ``twisted.web`` server that replays captured responses.

``theme_bench.py`` fetches ``/healthz`` and the demo tenant's load-theme from a running tenantsvc,
writes what it saw (status, headers in order, body) to a JSON spec, and starts this server with it.
Each request is answered with the same status, the same headers and the same body bytes, so the
only difference left between the two servers is the work tenantsvc does per request (ids, eliot
task, metrics, access log, dispatch). The baseline keeps nothing else: no access log, no logging
observer, no per-request allocation beyond what ``twisted.web`` itself needs.

Run: ``python bench/baseline_server.py --spec SPEC.json --port PORT`` (listens on 127.0.0.1 only).
Spec format: ``{"routes": {"/path": {"status": 200, "headers": [["Name", "value"], ...],
"body_b64": "..."}}}``; ``Server``, ``Date``, ``Content-Length``, ``Connection`` and
``Transfer-Encoding`` are left to ``twisted.web``, which writes them exactly as it does for tenantsvc.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site


@dataclass(frozen=True)
class ReplayedResponse:
    """One captured response, ready to be written as-is."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def load_routes(spec: dict[str, Any]) -> dict[bytes, ReplayedResponse]:
    """Turn a spec mapping (see the module docstring) into path → response."""
    routes = {}
    for path, entry in spec["routes"].items():
        routes[path.encode("ascii")] = ReplayedResponse(
            status=int(entry["status"]),
            headers=tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in entry["headers"]),
            body=base64.b64decode(entry["body_b64"]),
        )
    return routes


class ReplayResource(Resource):
    """A leaf resource answering each known path with its replayed response, anything else 404."""

    isLeaf = True

    def __init__(self, routes: dict[bytes, ReplayedResponse]):
        super().__init__()
        self._routes = routes

    def render(self, request: Any) -> bytes:
        """Write the captured status and headers and return the captured body."""
        response = self._routes.get(request.path)
        if response is None:
            request.setResponseCode(404)
            return b""
        request.setResponseCode(response.status)
        for name, value in response.headers:
            request.setHeader(name, value)
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
        routes = load_routes(json.load(handle))

    from twisted.internet import reactor

    reactor.listenTCP(args.port, QuietSite(ReplayResource(routes)), interface="127.0.0.1")
    sys.stdout.write(f"baseline listening on 127.0.0.1:{args.port} ({len(routes)} routes)\n")
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
