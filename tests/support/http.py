"""HTTP answers for tests and bench: one response record (``HttpAnswer``) and four ways to get one.

- ``fetch``: treq on the real reactor (async; tests running under pytest-twisted);
- ``http``: urllib, blocking (e2e tests driving a ``twistd`` subprocess, bench set-up);
- ``LoopbackConnection``: a keep-alive client from a chosen loopback address (bench players and loops);
- ``raw_get``: one GET over a raw socket, keeping the headers in wire order and the size on the wire
  (bench/theme_bench.py captures exactly what went over the wire to replay it).

Nothing here imports the reactor or treq at module scope.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

DEFAULT_TIMEOUT_S = 10.0  # a hung answer fails the test instead of hanging it


class Headers(dict):
    """Response headers: lower-case names, the first value of each; lookups are case-insensitive."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for name, value in pairs:
            super().setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name`` (any case), or ``default``."""
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class HttpAnswer:
    """One complete HTTP response and how long it took from sending the request to the last body byte.

    ``wire_headers`` (every header in wire order) and ``wire_bytes`` (the response's size on the wire) are
    only known to ``raw_get``.
    """

    status: int
    headers: Mapping[str, str]  # case-insensitive (``Headers``), first value of each
    body: bytes
    elapsed_s: float = 0.0
    wire_headers: tuple[tuple[str, str], ...] = ()
    wire_bytes: int = 0

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def fetch(method: str, url: str, *, pool: Any = None, headers: Mapping[str, str] | None = None,
                json_body: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> HttpAnswer:
    """Send one request with treq and read the whole response (any status; transport errors are raised)."""
    import treq

    all_headers = {name: [value] for name, value in (headers or {}).items()}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        all_headers["Content-Type"] = ["application/json"]
    started = time.monotonic()
    response = await treq.request(method, url, headers=all_headers, data=data, pool=pool, timeout=timeout_s)
    body = await treq.content(response)
    flat = Headers((name.decode("latin-1"), values[0].decode("latin-1"))
                   for name, values in response.headers.getAllRawHeaders())
    return HttpAnswer(response.code, flat, body, time.monotonic() - started)


def http(method: str, url: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None,
         timeout_s: float = 5.0) -> HttpAnswer:
    """Send one request with urllib (blocking) and return the answer (4xx/5xx included, never raised)."""
    data = None if json_body is None else json.dumps(json_body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, message, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, message, body = error.code, error.headers, error.read()
    return HttpAnswer(status, Headers(message.items()), body, time.monotonic() - started)


def raw_get(port: int, path: str, headers: Iterable[tuple[str, str]] = (), timeout_s: float = 5.0) -> HttpAnswer:
    """GET ``path`` from 127.0.0.1:``port`` with ``Connection: close`` over a raw socket, headers in wire order."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")
    chunks = []
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            chunks.append(data)
    return parse_response(b"".join(chunks), time.monotonic() - started)


def parse_response(raw: bytes, elapsed_s: float = 0.0) -> HttpAnswer:
    """One complete raw HTTP/1.1 response as an ``HttpAnswer`` (headers in wire order, size on the wire)."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("incomplete HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    wire = tuple((name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    parsed = Headers(wire)
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return HttpAnswer(int(lines[0].split(" ", 2)[1]), parsed, body, elapsed_s, wire, len(raw))


def _dechunk(data: bytes) -> bytes:
    out, position = [], 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2: line_end + 2 + size])
        position = line_end + 2 + size + 2


class LoopbackConnection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:``port`` from the local address ``source`` (every 127.x.y.z
    is a distinct client on Linux), reopened once after a transport error."""

    def __init__(self, port: int, source: str | None = None, timeout_s: float = 30.0):
        self._port, self._source, self._timeout_s = port, (source, 0) if source else None, timeout_s
        self._conn: Any = None

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> HttpAnswer:
        """Send one request (``body`` as JSON); the answer, whatever its status. A second transport error is raised."""
        import http.client

        all_headers = dict(headers or {}) | ({"Content-Type": "application/json"} if body is not None else {})
        data = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout_s,
                                                        source_address=self._source)
            started = time.monotonic()
            try:
                self._conn.request(method, path, body=data, headers=all_headers)
                response = self._conn.getresponse()
                payload = response.read()
                return HttpAnswer(response.status, Headers(response.getheaders()), payload, time.monotonic() - started)
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
