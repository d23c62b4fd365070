"""The load check's parts (``tests/e2e/test_load_check.py``): seeding, a mixed keep-alive load driver run as its own
process, the direct SQL probe and the exact holds from tenantsvc's eliot log.

The driver: ``python -m tests.support.load_mix SPEC.json OUT.json`` (loopback only, bounded by ``duration_s``) sends,
on ``connections`` keep-alive connections with one request in flight each, a random ``mix`` of theme hits, ``/me``
reads, admin credits (unique Idempotency-Key) and admin theme saves, and writes per kind the statuses, the
transport errors and the latency p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.support.figures import quantile
from tests.support.http import http

KINDS = ("theme", "read", "credit", "theme_put")
PASSWORD = "load-check-password"


def seed(base_url: str, token: str, tenants: int, users: int) -> tuple[list[str], list[dict[str, str]]]:
    """Create ``tenants`` tenants with their own themes and ``users`` logged-in players; (slugs, players with cookie)."""
    auth, slugs, players = {"Authorization": f"Bearer {token}"}, [f"load-{i:02d}" for i in range(tenants)], []
    for i, slug in enumerate(slugs):
        assert http("POST", f"{base_url}/admin/api/tenants", json_body={"slug": slug, "name": f"Load {i}"},
                    headers=auth).status == 201
        assert http("PUT", f"{base_url}/admin/api/tenants/{slug}/theme", headers=auth,
                    json_body={"primaryColor": f"#{i * 40 % 256:02x}3366"}).status == 200
    for i in range(users):
        player = {"tenant": slugs[i % tenants], "username": f"player{i:03d}"}
        credentials = {"username": player["username"], "password": PASSWORD}
        assert http("POST", f"{base_url}/{player['tenant']}/api/auth/register", json_body=credentials,
                    timeout_s=30).status == 201
        answer = http("POST", f"{base_url}/{player['tenant']}/api/auth/login", json_body=credentials, timeout_s=30)
        players.append(dict(player, cookie=answer.headers["set-cookie"].split(";", 1)[0]))
    return slugs, players


def build_request(kind: str, spec: dict[str, Any], rng: random.Random, key: str) -> bytes:
    """The raw bytes of one request of ``kind``."""
    user, body, headers = rng.choice(spec["users"]), None, [f"Host: 127.0.0.1:{spec['port']}"]
    auth = f"Authorization: Bearer {spec['admin_token']}"
    if kind == "theme":
        line = f"GET /{rng.choice(spec['tenants'])}/api/public/load-theme"
    elif kind == "read":
        line, headers = f"GET /{user['tenant']}/api/me", headers + [f"Cookie: {user['cookie']}"]
    elif kind == "credit":
        line = f"POST /admin/api/tenants/{user['tenant']}/users/{user['username']}/credit"
        headers += [auth, f"Idempotency-Key: {key}"]
        body = {"amount_cents": rng.randint(1, 500), "reason": "load check"}
    else:
        line, headers = f"PUT /admin/api/tenants/{rng.choice(spec['put_tenants'])}/theme", headers + [auth]
        body = {"primaryColor": "#%06x" % rng.randrange(0x1000000)}
    data = json.dumps(body).encode() if body is not None else b""
    if body is not None:
        headers += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return (f"{line} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode("latin-1") + data


async def read_status(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked; tenantsvc keeps alive) and return its status."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.startswith("content-length:")), None)
    if length is not None:
        await reader.readexactly(length)
    elif "transfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readexactly(2)
    return status


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load described by ``spec`` until ``duration_s`` has passed; the per-kind figures."""
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    latencies: dict[str, list[float]] = defaultdict(list)
    kinds, weights = list(spec["mix"]), list(spec["mix"].values())
    deadline, started = time.monotonic() + spec["duration_s"], time.monotonic()

    async def connection(index: int) -> None:
        rng, serial, reader, writer = random.Random(index), 0, None, None
        while time.monotonic() < deadline:
            kind, serial = rng.choices(kinds, weights)[0], serial + 1
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", spec["port"]), 5)
                began = time.monotonic()
                writer.write(build_request(kind, spec, rng, f"lc-{os.getpid()}-{index}-{serial}"))
                statuses[kind][await asyncio.wait_for(read_status(reader), 10)] += 1  # type: ignore[arg-type]
                latencies[kind].append((time.monotonic() - began) * 1000)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
                errors[kind][type(error).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(spec["connections"])))
    return {"elapsed_s": round(time.monotonic() - started, 2),
            "per_kind": {k: {"statuses": {str(s): n for s, n in sorted(statuses[k].items())},
                             "transport_errors": dict(errors[k]), "p50_ms": quantile(latencies[k], 0.5),
                             "p99_ms": quantile(latencies[k], 0.99)} for k in kinds}}


class CountingCursor:
    """A psycopg2 cursor that counts its ``execute`` calls (each one a round trip to Postgres)."""

    def __init__(self, cursor: Any):
        self._cursor, self.executed = cursor, 0

    def execute(self, *args: Any) -> Any:
        """Count, then run the statement."""
        self.executed += 1
        return self._cursor.execute(*args)

    def __getattr__(self, name: str) -> Any:
        """Everything else is the real cursor's."""
        return getattr(self._cursor, name)


class SqlProbe:
    """Runs each interaction's own ``*_txn`` with the service's ``SET LOCAL`` guardrails on a psycopg2 connection of
    its own, timed from before ``BEGIN`` to the end of its last statement (the span ``hold_ms`` measures)."""

    def __init__(self, connection: Any, database_url: str, players: list[dict[str, Any]], put_tenants: list[str]):
        from tenantsvc.config import load_settings
        from tenantsvc.adapters.db.dialects import dialect_for

        self.connection, self.players, self.put_tenants = connection, players, put_tenants
        self.dialect = dialect_for(load_settings({"DATABASE_URL": database_url}, role="web"))
        self.holds_s: dict[str, list[float]] = defaultdict(list)
        self.round_trips: dict[str, int] = {}
        self.rng, self.serial = random.Random(7), 0

    def call(self, name: str) -> tuple[Any, tuple]:
        """The service's function for interaction ``name`` and arguments like the load's."""
        from tenantsvc.adapters.db import tenant_store, user_store
        from tenantsvc.core.theme import DEFAULT_THEME, parse_theme

        player, self.serial = self.rng.choice(self.players), self.serial + 1
        return {"get_balance": (user_store.get_balance_txn, (player["tenant"], player["user_id"])),
                "credit_wallet": (tenant_store.credit_wallet_txn, (player["tenant"], player["username"], 1, "probe",
                                                                  f"probe-{os.getpid()}-{self.serial}")),
                "save_theme": (tenant_store.save_theme_txn, (self.rng.choice(self.put_tenants), parse_theme(
                    {"primaryColor": "#%06x" % self.rng.randrange(0x1000000)}, DEFAULT_THEME))),
                "refresh_theme": (tenant_store.load_theme_txn, (player["tenant"],))}[name]

    def run_once(self, name: str) -> None:
        """Run and time interaction ``name`` once, counting its round trips (BEGIN + one per execute)."""
        from tenantsvc.adapters.db.pool import Txn

        fn, args = self.call(name)
        with self.connection.cursor() as raw:
            cursor = CountingCursor(raw)
            began = time.perf_counter()
            self.dialect.begin(cursor)
            fn(Txn(cursor, self.dialect), *args)
            self.holds_s[name].append(time.perf_counter() - began)
            self.connection.commit()
        self.round_trips[name] = 1 + cursor.executed


def logged_holds(log_file: Path, since: float, until: float) -> dict[str, list[float]]:
    """Exact ``hold_ms`` (in s) of every ``tenantsvc:db:interaction`` that succeeded within [since, until], by name."""
    names: dict[tuple, str] = {}
    holds: dict[str, list[float]] = defaultdict(list)
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"tenantsvc:db:interaction"' not in line:
            continue
        entry = json.loads(line)
        key = (entry.get("task_uuid"), tuple(entry.get("task_level") or ())[:-1])
        if entry.get("action_status") == "started":
            names[key] = entry.get("name", "?")
        elif (name := names.pop(key, None)) and "hold_ms" in entry and since <= entry["timestamp"] <= until:
            holds[name].append(entry["hold_ms"] / 1000.0)
    return holds


def summary(values: list[float]) -> dict[str, float | None]:
    """Count, mean and p99 of ``values``."""
    return {"count": len(values), "mean": statistics.fmean(values) if values else None, "p99": quantile(values, 0.99)}


if __name__ == "__main__":
    spec_path, out_path = sys.argv[1:3]
    spec = json.loads(Path(spec_path).read_text())
    Path(out_path).write_text(json.dumps(asyncio.run(drive(spec)), indent=2))
