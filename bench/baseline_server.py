"""The baselines replaying tenantsvc's captured answers: bare twisted.web (default), uvicorn + Starlette, Flask/gunicorn.

Spec (a JSON file, ``--spec`` or ``$BENCH_REPLAY_SPEC``): ``{"routes": {"/path": ENTRY}, "fallback": ENTRY}``, an
ENTRY being ``{"status", "headers": [[name, value], …], "body_b64", "chunked", "if_none_match": {"etag", …ENTRY}}``.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

MODULE = "bench.baseline_server"
ALTERNATIVES = {"uvicorn": ("uvicorn", "starlette"), "gunicorn": ("flask", "gunicorn")}  # name → modules it needs


@dataclass(frozen=True)
class Answer:
    """One captured answer (its headers also latin-1 encoded); ``chunked``: written without Content-Length."""

    status: int
    headers: tuple[tuple[str, str], ...]
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    chunked: bool = False
    etag: str | None = None  # answer ``not_modified`` when If-None-Match equals it byte for byte
    not_modified: "Answer | None" = None
    raw_etag: bytes | None = None

    @classmethod
    def of(cls, entry: dict[str, Any] | None) -> "Answer | None":
        """A spec ENTRY as an answer (None for none)."""
        if not entry:
            return None
        conditional, headers = entry.get("if_none_match"), tuple((k, v) for k, v in entry["headers"])
        return cls(int(entry["status"]), headers, tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
                   base64.b64decode(entry["body_b64"]), bool(entry.get("chunked")),
                   conditional and conditional["etag"], cls.of(conditional),
                   conditional and conditional["etag"].encode("latin-1"))


class Replay:
    """The spec's answers: ``answer(path, if_none_match)`` is the captured one, the fallback, or None (404)."""

    def __init__(self, spec: dict[str, Any] | None = None):
        if spec is None:
            with open(os.environ["BENCH_REPLAY_SPEC"], encoding="utf-8") as handle:
                spec = json.load(handle)
        self.routes = {path: Answer.of(entry) for path, entry in spec.get("routes", {}).items()}
        self.fallback = Answer.of(spec.get("fallback"))

    def answer(self, path: str, if_none_match: str | None) -> Answer | None:
        """The answer to replay for ``path``."""
        found = self.routes.get(path) or self.fallback
        return found.not_modified if found and found.not_modified and if_none_match == found.etag else found


class ReplayResource(Resource):
    """Writes the captured status, headers and body (pre-encoded); twisted.web adds Server, Date and the framing."""

    isLeaf = True

    def __init__(self, replay: Replay):
        super().__init__()
        self._routes = {path.encode("ascii"): answer for path, answer in replay.routes.items()}
        self._fallback = replay.fallback

    def render(self, request: Any) -> bytes:
        """The replayed answer (404 for an unknown path without a fallback)."""
        found = self._routes.get(request.path) or self._fallback
        if found is None:
            request.setResponseCode(404)
            return b""
        if found.not_modified is not None and request.getHeader(b"if-none-match") == found.raw_etag:
            found = found.not_modified
        request.setResponseCode(found.status)
        for name, value in found.raw_headers:
            request.setHeader(name, value)
        if found.chunked:  # no Content-Length, as an asynchronous answer (and a 304) has none
            request.write(found.body)
            request.finish()
            return NOT_DONE_YET
        return found.body


class QuietSite(Site):
    """A ``Site`` without the access log."""

    def log(self, request: Any) -> None:
        """Write nothing."""


def alternatives() -> dict[str, list[str]]:
    """The argv (after the interpreter) of each importable alternative; a one-line note for each one that is not."""
    found = {}
    for name, modules in ALTERNATIVES.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"note: {name} baseline skipped ({', '.join(missing)} not installed: pip install -e '.[bench]')")
        else:
            found[name] = ["-m", MODULE, "--server", name]
    return found


def starlette_app() -> Any:
    """A Starlette app answering every path with the replayed answer."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    replay = Replay()

    async def endpoint(request: Any) -> Response:
        found = replay.answer(request.url.path, request.headers.get("if-none-match"))
        return Response(status_code=404) if found is None else Response(found.body, found.status, dict(found.headers))

    return Starlette(routes=[Route("/{path:path}", endpoint)])


def flask_app() -> Any:
    """A Flask app answering every path with the replayed answer."""
    from flask import Flask, request

    replay, app = Replay(), Flask("replay")

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def endpoint(path: str) -> Any:
        found = replay.answer(request.path, request.headers.get("If-None-Match"))
        return ("", 404) if found is None else (found.body, found.status, list(found.headers))

    return app


def main(argv: list[str] | None = None) -> int:
    """Listen on 127.0.0.1:``--port`` (one worker, no access log) and replay until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("twisted", *ALTERNATIVES), default="twisted")
    args = parser.parse_args(argv)
    if args.spec:
        os.environ["BENCH_REPLAY_SPEC"] = args.spec
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(f"{MODULE}:starlette_app", factory=True, host="127.0.0.1", port=args.port, workers=1,
                    access_log=False, log_level="warning", server_header=False, date_header=True)
    elif args.server == "gunicorn":
        os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
                                  "--threads", "4", "--bind", f"127.0.0.1:{args.port}", "--log-level", "warning",
                                  f"{MODULE}:flask_app()"])
    else:
        from twisted.internet import reactor

        reactor.listenTCP(args.port, QuietSite(ReplayResource(Replay())), interface="127.0.0.1")
        reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
