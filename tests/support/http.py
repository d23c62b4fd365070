"""HTTP for tests on the real reactor: one request over loopback with treq, its whole answer and its duration.

Nothing here imports the reactor or treq at module scope.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULT_TIMEOUT_S = 10.0  # a hung answer fails the test instead of hanging it


@dataclass(frozen=True)
class HttpAnswer:
    """One complete HTTP response and how long it took from sending the request to the last body byte."""

    status: int
    headers: Mapping[str, str]  # lower-case names, first value of each
    body: bytes
    elapsed_s: float

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def fetch(method: str, url: str, *, pool: Any = None, headers: Mapping[str, str] | None = None,
                json_body: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> HttpAnswer:
    """Send one request and read the whole response (any status; transport errors are raised)."""
    import treq

    all_headers = {name: [value] for name, value in (headers or {}).items()}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        all_headers["Content-Type"] = ["application/json"]
    started = time.monotonic()
    response = await treq.request(method, url, headers=all_headers, data=data, pool=pool, timeout=timeout_s)
    body = await treq.content(response)
    flat = {name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()}
    return HttpAnswer(response.code, flat, body, time.monotonic() - started)
