"""Optional baselines (issue 14): uvicorn + Starlette and Flask on gunicorn replaying tenantsvc's captured answers.

Each is one worker pinned like the others (``taskset`` on the server CPU); they replay the same status, headers and
body as ``baseline_server.py`` (``Replay``), and write their own Server/Date/framing. Install: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_server import Replay  # noqa: E402

MODULE = "bench.alt_baselines"
# name → (modules it needs, command after the interpreter; the runner appends --port PORT)
SERVERS = {
    "uvicorn": (("uvicorn", "starlette"), ["-m", "bench.alt_baselines", "uvicorn"]),
    "gunicorn": (("flask", "gunicorn"), ["-m", "bench.alt_baselines", "gunicorn"]),
}


def available() -> dict[str, list[str]]:
    """The alternative baselines whose packages are importable (a one-line note for each one that is not)."""
    found = {}
    for name, (modules, argv) in SERVERS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"note: {name} baseline skipped ({', '.join(missing)} not installed: pip install -e '.[bench]')")
        else:
            found[name] = argv
    return found


def starlette_app() -> Any:
    """A Starlette app answering every path with the replayed response."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    replay = Replay.from_env()

    async def endpoint(request: Any) -> Response:
        found = replay.answer(request.url.path, request.headers.get("if-none-match"))
        if found is None:
            return Response(status_code=404)
        return Response(found.body, found.status, headers=dict(found.headers))

    return Starlette(routes=[Route("/{path:path}", endpoint)])


def flask_app() -> Any:
    """A Flask app answering every path with the replayed response."""
    from flask import Flask, request

    replay, app = Replay.from_env(), Flask("replay")

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def endpoint(path: str) -> Any:
        found = replay.answer(request.path, request.headers.get("If-None-Match"))
        return ("", 404) if found is None else (found.body, found.status, list(found.headers))

    return app


def main(argv: list[str]) -> None:
    """``uvicorn|gunicorn --port PORT``: one worker on 127.0.0.1, no access log."""
    name, port = argv[0], argv[argv.index("--port") + 1]
    if name == "uvicorn":
        import uvicorn

        uvicorn.run(f"{MODULE}:starlette_app", factory=True, host="127.0.0.1", port=int(port), workers=1,
                    access_log=False, log_level="warning", server_header=False, date_header=True)
    else:
        os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
                                  "--threads", "4", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                                  f"{MODULE}:flask_app()"])


if __name__ == "__main__":
    main(sys.argv[1:])
