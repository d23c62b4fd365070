"""The load generator of ``bench/load_check.py``: a separate process driving a bounded mixed load over loopback.

``load_check.py`` starts it as ``taskset -c 1 python bench/load_client.py --spec SPEC.json --out OUT.json``
so that it runs on its own CPU, never in the server's process. It reads everything it needs from the spec
(written by ``load_check.py`` after seeding):

- ``port``: tenantsvc's port on 127.0.0.1 (the only address this client ever connects to);
- ``duration_s`` and ``connections``: how long, and how many keep-alive connections at once (each
  connection has at most one request in flight, so concurrency is bounded by ``connections``);
- ``rate``: total requests per second to aim for, spread evenly over the connections, or 0 for a closed
  loop (each connection sends its next request as soon as the previous answer is in);
- ``mix``: weights of the four kinds of request, each drawn at random per request:
  - ``theme``: ``GET /<tenant>/api/public/load-theme`` (public, cached);
  - ``read``: ``GET /<tenant>/api/me`` with a logged-in player's ``tsid`` cookie (a DB read);
  - ``credit``: ``POST /admin/api/tenants/<slug>/users/<username>/credit`` with a unique
    ``Idempotency-Key`` (a DB write: wallet update and ledger row);
  - ``theme_put``: ``PUT /admin/api/tenants/<slug>/theme`` with random colours (a DB write, then the
    cache write-through);
- ``tenants`` (theme hits spread over all of them), ``put_tenants`` (the ones whose themes are saved;
  the others' cache entries go stale and are refreshed from the DB), ``users``
  (``{"tenant", "username", "cookie"}``) and ``admin_token``.

It writes ``--out``: per kind the request count, the answers by status, the transport errors (refused,
reset, timeout) and latency percentiles; the total throughput; and the requests finished in each second,
which shows whether the load was sustained. It stops by itself after ``duration_s`` (plus at most one
request timeout for the requests in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
KINDS = ("theme", "read", "credit", "theme_put")


class ResponseError(Exception):
    """The server's answer could not be parsed, or the connection ended in the middle of it."""


class Recorder:
    """Counts and latencies of every finished request, by kind."""

    def __init__(self, started: float):
        self.started = started
        self.statuses: dict[str, Counter[int]] = {kind: Counter() for kind in KINDS}
        self.errors: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.latencies_ms: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.per_second: Counter[int] = Counter()

    def answered(self, kind: str, status: int, began: float, ended: float) -> None:
        """Record one answer (any status)."""
        self.statuses[kind][status] += 1
        self.latencies_ms[kind].append((ended - began) * 1000.0)
        self.per_second[int(ended - self.started)] += 1

    def failed(self, kind: str, reason: str) -> None:
        """Record one request that got no answer (connection refused or reset, timeout, garbled answer)."""
        self.errors[kind][reason] += 1


def percentile(values: list[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values`` (nearest rank), or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


class RequestFactory:
    """Builds the raw bytes of each kind of request from the spec."""

    def __init__(self, spec: dict[str, Any], worker: int):
        self._port = spec["port"]
        self._tenants = spec["tenants"]
        self._put_tenants = spec.get("put_tenants") or spec["tenants"]
        self._users = spec["users"]
        self._token = spec["admin_token"]
        self._worker = worker
        self._counter = 0
        self._rng = random.Random(f"{spec.get('seed', 0)}-{worker}")
        self._key_prefix = f"lc-{os.getpid()}-{worker}"

    def _request(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def pick_kind(self, kinds: list[str], cumulative: list[float]) -> str:
        """A kind drawn at random by the mix's weights."""
        return self._rng.choices(kinds, cum_weights=cumulative)[0]

    def build(self, kind: str) -> bytes:
        """The next request of ``kind``."""
        if kind == "theme":
            tenant = self._rng.choice(self._tenants)
            return self._request("GET", f"/{tenant}/api/public/load-theme", [])
        if kind == "read":
            user = self._rng.choice(self._users)
            return self._request("GET", f"/{user['tenant']}/api/me", [("Cookie", f"tsid={user['cookie']}")])
        auth = ("Authorization", f"Bearer {self._token}")
        if kind == "credit":
            user = self._rng.choice(self._users)
            self._counter += 1
            body = json.dumps({"amount_cents": self._rng.randint(1, 500), "reason": "load check"}).encode()
            return self._request("POST", f"/admin/api/tenants/{user['tenant']}/users/{user['username']}/credit",
                                 [auth, ("Idempotency-Key", f"{self._key_prefix}-{self._counter}")], body)
        if kind == "theme_put":
            tenant = self._rng.choice(self._put_tenants)
            colour = lambda: "#%06x" % self._rng.randrange(0x1000000)  # noqa: E731
            body = json.dumps({"primaryColor": colour(), "secondaryColor": colour(), "accentColor": colour(),
                               "fontFamily": "Inter"}).encode()
            return self._request("PUT", f"/admin/api/tenants/{tenant}/theme", [auth], body)
        raise ValueError(f"unknown kind {kind!r}")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return its status and whether the server will close the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        raise ResponseError("connection closed before the response") from error
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError) as error:
        raise ResponseError(f"bad status line {lines[0]!r}") from error
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    closing = headers.get("connection", "").lower() == "close"
    if status in (204, 304) or 100 <= status < 200:
        return status, closing
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)  # the chunk and its CRLF (the last: just the CRLF)
                if size == 0:
                    break
        elif "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        else:
            await reader.read()  # delimited by close
            closing = True
    except (asyncio.IncompleteReadError, ValueError) as error:
        raise ResponseError("truncated body") from error
    return status, closing


async def worker(index: int, spec: dict[str, Any], deadline: float, recorder: Recorder,
                 kinds: list[str], cumulative: list[float]) -> None:
    """One keep-alive connection sending requests one at a time until ``deadline`` (paced if ``rate`` > 0)."""
    factory = RequestFactory(spec, index)
    interval = spec["connections"] / spec["rate"] if spec.get("rate") else 0.0
    next_send = time.monotonic() + (interval * index / spec["connections"] if interval else 0.0)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    loop = asyncio.get_running_loop()
    while True:
        now = time.monotonic()
        if interval:
            if next_send > now:
                await asyncio.sleep(next_send - now)
            next_send = max(next_send + interval, time.monotonic() - interval)  # no catch-up bursts
        if time.monotonic() >= deadline:
            break
        kind = factory.pick_kind(kinds, cumulative)
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", spec["port"]), CONNECT_TIMEOUT_S)
            assert reader is not None
            began = loop.time()
            writer.write(factory.build(kind))
            status, closing = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT_S)
            recorder.answered(kind, status, began, loop.time())
        except asyncio.TimeoutError:
            recorder.failed(kind, "timeout")
            closing = True
        except (ConnectionError, OSError) as error:
            recorder.failed(kind, type(error).__name__)
            closing = True
            await asyncio.sleep(0.05)  # do not spin on a refused connection
        except ResponseError:
            recorder.failed(kind, "bad_response")
            closing = True
        if closing and writer is not None:
            writer.close()
            writer = reader = None
    if writer is not None:
        writer.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive the load described by ``spec`` and return the result document."""
    mix = {kind: float(spec["mix"].get(kind, 0)) for kind in KINDS}
    kinds = [kind for kind in KINDS if mix[kind] > 0]
    cumulative, total = [], 0.0
    for kind in kinds:
        total += mix[kind]
        cumulative.append(total)
    started_wall = time.time()
    loop = asyncio.get_running_loop()
    recorder = Recorder(loop.time())
    deadline = time.monotonic() + spec["duration_s"]
    await asyncio.gather(*(worker(i, spec, deadline, recorder, kinds, cumulative)
                           for i in range(spec["connections"])))
    elapsed = loop.time() - recorder.started
    per_kind = {}
    for kind in KINDS:
        latencies = recorder.latencies_ms[kind]
        per_kind[kind] = {
            "requests": len(latencies) + sum(recorder.errors[kind].values()),
            "statuses": {str(code): n for code, n in sorted(recorder.statuses[kind].items())},
            "transport_errors": dict(recorder.errors[kind]),
            "latency_ms": {name: (round(value, 3) if value is not None else None)
                           for name, value in (("p50", percentile(latencies, 0.50)),
                                               ("p90", percentile(latencies, 0.90)),
                                               ("p99", percentile(latencies, 0.99)),
                                               ("max", max(latencies) if latencies else None))},
        }
    answered = sum(len(v) for v in recorder.latencies_ms.values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds = [recorder.per_second.get(s, 0) for s in range(int(spec["duration_s"]))]
    return {
        "started_at_unix": round(started_wall, 3),
        "elapsed_s": round(elapsed, 3),
        "answered": answered,
        "requests_per_s": round(answered / elapsed, 1) if elapsed > 0 else None,
        "per_kind": per_kind,
        "answered_per_second": seconds,
        "cpu_percent": round((usage.ru_utime + usage.ru_stime) / elapsed * 100.0, 1) if elapsed > 0 else None,
        "pid": os.getpid(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> int:
    """Read the spec, run the load, write the result JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="JSON written by load_check.py")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as handle:
        spec = json.load(handle)
    if spec.get("host", "127.0.0.1") != "127.0.0.1":
        sys.stderr.write("load_client: only 127.0.0.1 is ever loaded\n")
        return 2
    result = asyncio.run(run(spec))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
