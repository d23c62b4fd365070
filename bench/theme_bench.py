"""Benchmark tenantsvc's public theme path against a bare twisted.web baseline measured in the same run.

Scenarios (``--scenarios``, default ``warm,304,css,cold,memory``; see bench/README.md for how to read them):

- ``warm``: ``GET /demo/api/public/load-theme``, an L1 hit;
- ``304``: the same request with ``If-None-Match: <its ETag>``, answered 304;
- ``css``: ``GET /demo/api/public/theme.css``, an L1 hit;
- ``healthz``: ``GET /healthz`` (optional);
- ``cold``: ``--tenants`` (10,000) tenants, created through the admin API (or written into the SQLite
  file with ``--seed sqlite``): the start-up warm of all of them, a herd of requests cycling through
  every tenant while all are cached ("spread hit"), then the same herd against an instance whose L1 holds
  only ``--herd-cache-entries`` (100) entries, so nearly every request misses L1, without Redis and, when
  ``redis-server`` is installed, with a throwaway Redis as L2; DB reads and cache results are scraped
  from ``/metrics`` before and after;
- ``memory``: the resident memory (VmRSS) of a fresh demo-only instance at idle, and of an instance with
  every tenant cached, at idle and after the spread-hit herd (shares the seeded database with ``cold``).

How, in order:

1. Makes sure ``wrk`` is installed (``apt-get install -y wrk``, non-interactively, if it is missing).
2. For each of ``--runs`` rounds:
   - starts ``twistd -n --pidfile= --logger=tenantsvc.obs.logging.twisted_observer tenantsvc --demo
     --listen tcp:PORT:interface=127.0.0.1`` in a temporary directory (embedded SQLite, ``LOG_FILE`` set
     to a file there so logging is on as in production, the public rate limit out of reach so the
     limiter runs but every answer stays the warm hit), pinned to CPU 0 with ``taskset``; waits until
     the demo theme is served from the cache; on the first round captures the exact responses of the
     benchmarked paths (status, headers, body), including the 304;
   - starts ``bench/baseline_server.py`` (a bare ``twisted.web`` Resource replaying the captured
     responses byte for byte, the 304 when ``If-None-Match`` matches), also pinned to CPU 0, and checks
     that its responses match;
   - loads each endpoint on tenantsvc and on the baseline back to back (the order alternates between
     rounds; only one server is ever under load) with ``wrk`` pinned to CPU 1 (keep-alive,
     ``--connections`` connections, bounded ``--duration``), after a short warm-up; stops both.
3. Runs the tenant-scale scenarios once (``cold``, ``memory``), each tenantsvc figure next to the
   baseline replaying one tenant's answer for every path of the same herd.
4. Takes the median requests/s and p99 of the rounds, prints tables with the ratio to the baseline, the
   checks (304 at least as fast as the warm hit, the warm hit at least 0.75 of the baseline, at most
   100 MiB with 10,000 tenants cached), and writes everything (raw runs, medians, machine, versions) as
   JSON to ``bench/results/``.

Everything listens on 127.0.0.1 only. Every child runs in its own process group and is killed on exit,
on an error and on Ctrl-C/SIGTERM/SIGHUP; every wait has a deadline.

Run it with the repository venv's python: ``.venv/bin/python bench/theme_bench.py [--scenarios …]
[--duration 10] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402 - the bench runner over tests/support
    LOAD_THEME, MIB, REPO, RESULTS_DIR, BenchError, Children, Load, RawResponse, Series, Server, WrkResult,
    WrkSettings, ensure_wrk, gauge, http_get, machine_info, metric_delta, mib, peak_rss_kib, pinning,
    proc_status_kib, reset_peak_rss, run_bench, run_wrk, scrape_metrics, start_baseline, start_redis,
    start_tenantsvc, stop_tenantsvc, text_table,
)

SERVERS = ("tenantsvc", "baseline")
SCENARIOS = ("warm", "304", "css", "healthz", "cold", "memory")
DEFAULT_SCENARIOS = "warm,304,css,cold,memory"
# Written by twisted.web itself for both servers (Connection only appears because the capture closes).
AUTOMATIC_HEADERS = frozenset({"server", "date", "content-length", "transfer-encoding", "connection"})
SETTLE_S = 1.0  # idle time before an "at idle" memory reading
RSS_GOAL_MIB = 100
WARM_RATIO_GOAL = 0.75
TENANT_PATH = "/bench-{:05d}/api/public/load-theme"
NEVER_REWARM_S = "86400"  # THEME_WARM_INTERVAL for the herd instances: only the start-up warm runs

# Cycle through the benchmark tenants' load-theme paths, each connection taking the next one.
HERD_LUA = """\
-- theme_bench.py: every request asks for the next tenant, /bench-00000 … /bench-<N-1>, then again.
local requests, n, i = {}, 0, 0
function init(args)
  n = tonumber(args[1])
  for k = 0, n - 1 do
    requests[k + 1] = wrk.format("GET", string.format("/bench-%05d/api/public/load-theme", k))
  end
end
function request()
  i = i % n + 1
  return requests[i]
end
"""


@dataclass(frozen=True)
class Endpoint:
    """One per-round scenario: a path loaded on both servers, optionally with ``If-None-Match``."""

    name: str
    scenario: str
    path: str
    conditional: bool = False  # send If-None-Match with the load-theme ETag (expects 304)


ENDPOINTS = (
    Endpoint("warm hit", "warm", LOAD_THEME),
    Endpoint("304", "304", LOAD_THEME, conditional=True),
    Endpoint("theme.css", "css", "/demo/api/public/theme.css"),
    Endpoint("healthz", "healthz", "/healthz"),
)


# --------------------------------------------------------------------------------------------------
# Capturing tenantsvc's answers and checking the baseline's


def request_headers(endpoint: Endpoint, etag: str | None) -> list[tuple[str, str]]:
    """The extra request headers of ``endpoint`` (``If-None-Match`` for the 304 scenario)."""
    if not endpoint.conditional:
        return []
    if not etag:
        raise BenchError("load-theme has no ETag, so the 304 scenario cannot run")
    return [("If-None-Match", etag)]


def capture(port: int, endpoints: list[Endpoint]) -> tuple[dict[str, RawResponse], str]:
    """Fetch load-theme and every benchmarked endpoint once from tenantsvc; also return load-theme's ETag."""
    load_theme = http_get(port, LOAD_THEME)
    if load_theme.status != 200:
        raise BenchError(f"tenantsvc answered {load_theme.status} for {LOAD_THEME}; expected 200")
    etag = load_theme.header("etag") or ""
    captured = {"_load_theme": load_theme}
    for endpoint in endpoints:
        response = http_get(port, endpoint.path, request_headers(endpoint, etag))
        expected = 304 if endpoint.conditional else 200
        if response.status != expected:
            raise BenchError(f"tenantsvc answered {response.status} for {endpoint.name} ({endpoint.path}); "
                             f"expected {expected}")
        captured[endpoint.name] = response
    return captured, etag


def written_without_length(response: RawResponse) -> bool:
    """True when tenantsvc sent no ``Content-Length``: a chunked answer that waited (an L1 miss), or a 304."""
    return response.header("content-length") is None


def replay_entry(response: RawResponse) -> dict[str, Any]:
    """A captured response as a ``baseline_server.py`` spec entry."""
    return {
        "status": response.status,
        "headers": [[k, v] for k, v in response.wire_headers if k.lower() not in AUTOMATIC_HEADERS],
        "body_b64": base64.b64encode(response.body).decode("ascii"),
        "chunked": written_without_length(response),
    }


def baseline_spec(captured: dict[str, RawResponse], endpoints: list[Endpoint], etag: str) -> dict[str, Any]:
    """The replay spec: the same status, headers (in order) and body per path, and the 304 for the ETag."""
    routes: dict[str, Any] = {LOAD_THEME: replay_entry(captured["_load_theme"])}
    for endpoint in endpoints:
        if endpoint.conditional:
            routes[LOAD_THEME]["if_none_match"] = dict(replay_entry(captured[endpoint.name]), etag=etag)
        elif endpoint.path not in routes:
            routes[endpoint.path] = replay_entry(captured[endpoint.name])
    return {"routes": routes}


def compare(ours: RawResponse, theirs: RawResponse) -> dict[str, Any]:
    """Status, body bytes, header names in order and wire size of tenantsvc's answer against the baseline's."""
    check = {
        "status_equal": ours.status == theirs.status,
        "body_identical": ours.body == theirs.body,
        "body_bytes": len(ours.body),
        "header_names_equal": [k for k, _ in ours.wire_headers] == [k for k, _ in theirs.wire_headers],
        "wire_bytes_tenantsvc": ours.wire_bytes,
        "wire_bytes_baseline": theirs.wire_bytes,
    }
    check["ok"] = all(check[k] for k in ("status_equal", "body_identical", "header_names_equal")) \
        and ours.wire_bytes == theirs.wire_bytes
    return check


def verify_baseline(port: int, captured: dict[str, RawResponse], endpoints: list[Endpoint],
                    etag: str) -> dict[str, dict[str, Any]]:
    """Compare the baseline's responses with tenantsvc's for every endpoint."""
    return {e.name: compare(captured[e.name], http_get(port, e.path, request_headers(e, etag))) for e in endpoints}


def print_check(name: str, check: dict[str, Any]) -> None:
    """One line per baseline check."""
    state = "identical" if check["ok"] else "MISMATCH"
    print(f"theme_bench: baseline {name}: {state} (status {'same' if check['status_equal'] else 'DIFFERENT'}, "
          f"body {check['body_bytes']} B, response {check['wire_bytes_tenantsvc']} vs "
          f"{check['wire_bytes_baseline']} B on the wire)", flush=True)


# --------------------------------------------------------------------------------------------------
# wrk


def measure(children: Children, settings: WrkSettings, server: Server, load: Load, *, duration_s: int,
            warmup_s: int, label: str, expected: RawResponse | None = None) -> WrkResult:
    """An unmeasured warm-up (if any), then the measured run; prints one line.

    With ``expected`` (the captured answer), warns when the answers under load were not the same size on
    average, i.e. when the server answered something else than what was captured and replayed.
    """
    if warmup_s:
        run_wrk(children, settings, server, load, warmup_s)
    result = run_wrk(children, settings, server, load, duration_s)
    problems = ""
    if result.socket_errors or result.non_2xx_3xx:
        problems += f"  [!] {result.socket_errors} socket errors, {result.non_2xx_3xx} non-2xx/3xx"
    if expected is not None and result.bytes_per_response:
        size = keep_alive_size(expected)
        if abs(result.bytes_per_response - size) > 0.01 * size:
            problems += f"  [!] answers averaged {result.bytes_per_response:.0f} B, captured {size} B"
    print(f"  {label:<42} {server.name:<9} {result.requests_per_s:>8.0f} req/s  p99 {result.p99_ms:7.2f} ms  "
          f"cpu {result.server_cpu_us_per_request or 0:6.1f} µs/req  other {result.other_cpu_pct or 0:4.0f}%"
          f"{problems}", flush=True)
    return result


def keep_alive_size(response: RawResponse) -> int:
    """The captured response's size on the wire without its ``Connection: close`` header (wrk keeps alive)."""
    return response.wire_bytes - sum(len(f"{k}: {v}\r\n") for k, v in response.wire_headers if k.lower() == "connection")


# --------------------------------------------------------------------------------------------------
# Per-round scenarios: warm hit, 304, theme.css, healthz


def endpoint_rounds(args: argparse.Namespace, children: Children, settings: WrkSettings, workdir: Path,
                    pin: list[str], endpoints: list[Endpoint]) -> dict[str, Any]:
    """``--runs`` rounds; in each, every endpoint is loaded on tenantsvc and on the baseline back to back.

    Both servers are started for the round but only one is ever under load; the order alternates from
    round to round, so a change in background load between the two halves of a pair cancels out.
    """
    runs: dict[str, dict[str, list[WrkResult]]] = {s: {e.name: [] for e in endpoints} for s in SERVERS}
    extras: dict[str, Any] = {"log_bytes_per_request": [], "peak_rss_kib": {s: [] for s in SERVERS}}
    captured: dict[str, RawResponse] | None = None
    etag = ""
    checks: dict[str, Any] = {}
    spec_path = workdir / "baseline-spec.json"
    demo_dir = workdir / "demo"

    for round_no in range(1, args.runs + 1):
        server = start_tenantsvc(children, args.python, demo_dir, pin)
        served = 0
        try:
            if captured is None:
                captured, etag = capture(server.port, endpoints)
                spec_path.write_text(json.dumps(baseline_spec(captured, endpoints, etag), indent=2), encoding="utf-8")
            baseline = start_baseline(children, args.python, workdir, pin, spec_path)
            try:
                if not checks:
                    checks = verify_baseline(baseline.port, captured, endpoints, etag)
                    for name, check in checks.items():
                        print_check(name, check)
                order = (server, baseline) if round_no % 2 else (baseline, server)
                for endpoint in endpoints:
                    target = Load(endpoint.path, tuple(request_headers(endpoint, etag)))
                    for current in order:
                        if args.warmup:
                            warm = run_wrk(children, settings, current, target, args.warmup)
                            served += warm.requests if current is server else 0
                        result = measure(children, settings, current, target, duration_s=args.duration,
                                         warmup_s=0, label=f"run {round_no}: {endpoint.name}",
                                         expected=captured[endpoint.name])
                        served += result.requests if current is server else 0
                        runs[current.name][endpoint.name].append(result)
                extras["peak_rss_kib"]["baseline"].append(peak_rss_kib(baseline.proc.pid))
            finally:
                children.stop(baseline.proc)
            extras["peak_rss_kib"]["tenantsvc"].append(peak_rss_kib(server.proc.pid))
        finally:
            stop_tenantsvc(children, server)
            if server.log_file and server.log_file.exists():
                if served:  # measured after the stop, so the writer thread has flushed everything
                    extras["log_bytes_per_request"].append(round(server.log_file.stat().st_size / served, 1))
                server.log_file.unlink()  # keep the disk clean between rounds
    return {"runs": runs, "extras": extras, "checks": checks, "etag": etag}


def summarise(runs: dict[str, dict[str, list[WrkResult]]], names: list[str]) -> list[dict[str, Any]]:
    """Median req/s, p99 and CPU per request per (scenario, server), with ratios to the baseline.

    The ratios are the medians of the per-round ratios (each tenantsvc run against the baseline run
    measured right next to it), which is steadier than a ratio of medians on a shared machine.
    """
    rows = []
    for name in names:
        pairs = list(zip(runs["tenantsvc"][name], runs["baseline"][name]))
        for server in SERVERS:
            row = _row(name, server, runs[server][name], None, None)
            if server == "tenantsvc":
                row["rps_ratio_to_baseline"] = round(statistics.median(t.requests_per_s / b.requests_per_s
                                                                       for t, b in pairs), 3)
                row["p99_ratio_to_baseline"] = round(statistics.median(t.p99_ms / b.p99_ms for t, b in pairs), 2)
                row["rps_ratio_per_round"] = [round(t.requests_per_s / b.requests_per_s, 3) for t, b in pairs]
            else:
                row["rps_ratio_to_baseline"], row["p99_ratio_to_baseline"] = 1.0, 1.0
            rows.append(row)
    return rows


def _row(scenario: str, server: str, results: list[WrkResult], base_rps: float | None,
         base_p99: float | None) -> dict[str, Any]:
    rps = statistics.median(r.requests_per_s for r in results)
    p99 = statistics.median(r.p99_ms for r in results)
    cpu = [r.server_cpu_us_per_request for r in results if r.server_cpu_us_per_request is not None]
    return {
        "scenario": scenario, "server": server, "runs": len(results),
        "requests_per_s": round(rps, 1), "p99_ms": round(p99, 2),
        "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
        "server_cpu_us_per_request": round(statistics.median(cpu), 1) if cpu else None,
        "rps_ratio_to_baseline": round(rps / base_rps, 3) if base_rps else None,
        "p99_ratio_to_baseline": round(p99 / base_p99, 2) if base_p99 else None,
        "errors": sum(r.socket_errors + r.non_2xx_3xx for r in results),
        "other_cpu_pct": max((r.other_cpu_pct for r in results if r.other_cpu_pct is not None), default=None),
    }


# --------------------------------------------------------------------------------------------------
# Tenant-scale scenarios: seeding, start-up warm, spread hits, cold herds, memory


def tenant_slug(index: int) -> str:
    """The slug of benchmark tenant ``index`` (fixed width, so every answer has the same length)."""
    return f"bench-{index:05d}"


def tenant_theme(index: int) -> dict[str, str]:
    """A distinct theme per tenant with fixed-length values (colours, a numbered name)."""
    mix = (index * 2654435761) & 0xFFFFFF
    return {"primaryColor": f"#{mix:06X}", "accentColor": f"#{(mix ^ 0x5A5A5A):06X}",
            "sportsbookName": f"Bench Sportsbook {index:05d}"}


def seed_via_api(port: int, token: str, count: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    """Create ``count`` tenants (POST) and save a theme for each (PUT) through the admin API.

    ``concurrency`` keep-alive connections work in parallel. A 5xx or a dropped connection is retried
    (up to 8 times, with back-off and ``Retry-After`` honoured up to 2 s); a 409 on a retried create
    means the first attempt went through. Any other answer stops the benchmark.
    """
    local = threading.local()
    deadline = time.monotonic() + timeout_s
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    stopping = threading.Event()  # set when the main thread gives up: workers stop retrying at once
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, payload: dict[str, Any], accept: tuple[int, ...]) -> int:
        body = json.dumps(payload).encode("utf-8")
        for attempt in range(9):
            if stopping.is_set():
                raise BenchError("seeding abandoned")
            if time.monotonic() > deadline:
                raise BenchError(f"seeding through the admin API took longer than {timeout_s:.0f}s")
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request(method, path, body, auth)
                response = connection.getresponse()
                response.read()
                status, retry_after = response.status, response.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                connection.close()
                local.connection = None
                status, retry_after = 0, None
            with lock:
                statuses[f"{method} {status}"] += 1
            if status in accept or (status == 409 and attempt > 0 and method == "POST"):
                return status
            if status and status < 500:
                raise BenchError(f"admin API answered {status} to {method} {path}")
            with lock:
                retries[f"{method} {status or 'connection error'}"] += 1
            pause = min(0.05 * 2 ** attempt, 1.0)
            if retry_after and retry_after.isdigit():
                pause = min(max(pause, float(retry_after)), 2.0)
            time.sleep(pause)
        raise BenchError(f"{method} {path} still failing after 9 attempts")

    def seed_one(index: int) -> None:
        slug = tenant_slug(index)
        call("POST", "/admin/api/tenants", {"slug": slug, "name": f"Bench Tenant {index:05d}"}, (201,))
        call("PUT", f"/admin/api/tenants/{slug}/theme", tenant_theme(index), (200,))

    started = time.monotonic()
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="seed")
    try:
        for future in [executor.submit(seed_one, i) for i in range(count)]:
            future.result()
    finally:
        stopping.set()
        executor.shutdown(wait=False, cancel_futures=True)
    elapsed = time.monotonic() - started
    return {"method": "admin API", "tenants": count, "concurrency": concurrency, "seconds": round(elapsed, 1),
            "tenants_per_s": round(count / elapsed, 1), "statuses": dict(sorted(statuses.items())),
            "retries": dict(sorted(retries.items()))}


def seed_via_sqlite(db_path: Path, count: int) -> dict[str, Any]:
    """Insert ``count`` tenants and their themes straight into the SQLite file (tenantsvc stopped).

    Each theme row copies the demo tenant's row (whatever columns the schema has) with its own colours
    and name, so nothing here hard-codes the schema beyond ``tenants(slug, name)`` and those columns.
    """
    started = time.monotonic()
    overrides = {"primary_color": "primaryColor", "accent_color": "accentColor", "sportsbook_name": "sportsbookName"}
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        demo = db.execute("SELECT th.* FROM themes th JOIN tenants t ON t.id = th.tenant_id WHERE t.slug = 'demo'"
                          ).fetchone()
        if demo is None:
            raise BenchError(f"{db_path} has no demo theme row to copy")
        columns = [c for c in demo.keys() if c not in ("tenant_id", "updated_at")]
        if not set(overrides) <= set(columns):
            raise BenchError(f"themes has columns {columns}; the SQLite seeder expects {sorted(overrides)} "
                             "(use --seed api)")
        insert_theme = (f"INSERT INTO themes (tenant_id, {', '.join(columns)}) "
                        f"VALUES (?, {', '.join('?' * len(columns))})")
        for index in range(count):
            tenant_id = db.execute("INSERT INTO tenants (slug, name) VALUES (?, ?)",
                                   (tenant_slug(index), f"Bench Tenant {index:05d}")).lastrowid
            theme = tenant_theme(index)
            db.execute(insert_theme, (tenant_id, *(theme[overrides[c]] if c in overrides else demo[c]
                                                    for c in columns)))
    elapsed = time.monotonic() - started
    return {"method": "sqlite", "tenants": count, "seconds": round(elapsed, 2),
            "tenants_per_s": round(count / elapsed, 1)}


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, WAL contents included (the online backup API)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def warm_action(log_file: Path, timeout_s: float = 15.0) -> dict[str, Any] | None:
    """The first ``tenantsvc:themes:warm`` eliot action in ``log_file``: duration, tenants, outcome."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # the log is written by a thread: wait for the end message
        started: dict[str, float] = {}
        try:
            with open(log_file, encoding="utf-8") as handle:
                for line in handle:
                    if "tenantsvc:themes:warm" not in line:
                        continue
                    message = json.loads(line)
                    uuid, status = message.get("task_uuid"), message.get("action_status")
                    if status == "started":
                        started.setdefault(uuid, message["timestamp"])
                    elif status in ("succeeded", "failed") and uuid in started:
                        return {"seconds": round(message["timestamp"] - started[uuid], 3), "outcome": status,
                                "tenants": message.get("tenants")}
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    return None


def herd_outcome(before: dict[Series, float], after: dict[Series, float]) -> dict[str, Any]:
    """What the cache and the DB did during a herd, from two ``/metrics`` scrapes."""
    db_reads = metric_delta(before, after, "db_interactions_total", "outcome", name="refresh_theme")
    return {
        "db_reads_refresh_theme": sum(db_reads.values()),
        "db_reads_by_outcome": db_reads,
        "responses": metric_delta(before, after, "cache_responses_total", "result", cache="branding"),
        "l1_hits": sum(metric_delta(before, after, "cache_hits_total", "cache", cache="branding").values()),
        "l1_misses": sum(metric_delta(before, after, "cache_misses_total", "cache", cache="branding").values()),
        "l2_gets": metric_delta(before, after, "cache_l2_operations_total", "outcome", cache="branding", op="get"),
        "l2_sets": metric_delta(before, after, "cache_l2_operations_total", "outcome", cache="branding", op="set"),
        "refreshes": metric_delta(before, after, "cache_refresh_total", "outcome", cache="branding"),
        "singleflight_shared": metric_delta(before, after, "singleflight_shared_total", "name"),
        "breaker_rejections": metric_delta(before, after, "circuit_breaker_rejections_total", "request_class"),
        "breaker_transitions": metric_delta(before, after, "circuit_breaker_transitions_total", "to_state"),
        "http_status": metric_delta(before, after, "http_requests_total", "status",
                                    endpoint="/<tenant>/api/public/load-theme"),
        "cache_entries": gauge(after, "cache_entries", cache="branding"),
    }


def tenant_scale(args: argparse.Namespace, children: Children, settings: WrkSettings, workdir: Path,
                 pin: list[str], wrk_pin: list[str]) -> dict[str, Any]:
    """Seed the tenants once, then run the memory and cold-herd measurements on copies of that database."""
    want_cold, want_memory = "cold" in args.scenarios, "memory" in args.scenarios
    result: dict[str, Any] = {"tenants": args.tenants, "runs": {}, "memory": {}}
    count = args.tenants
    herd_script = workdir / "herd.lua"
    herd_script.write_text(HERD_LUA, encoding="utf-8")
    herd = Load("/", (), herd_script, (str(count),))
    first_path = TENANT_PATH.format(0)

    if want_memory:  # a fresh instance with the demo tenant only
        server = start_tenantsvc(children, args.python, workdir / "idle", pin)
        try:
            time.sleep(SETTLE_S)
            result["memory"]["idle_demo_only_kib"] = proc_status_kib(server.proc.pid, "VmRSS")
            result["memory"]["startup_peak_demo_only_kib"] = peak_rss_kib(server.proc.pid)
        finally:
            stop_tenantsvc(children, server)
        print(f"theme_bench: idle RSS with the demo tenant only: {mib(result['memory']['idle_demo_only_kib'])} MiB",
              flush=True)

    # 1. Seed a database with `count` tenants (plus demo) in its own directory.
    seeded = workdir / "seeded"
    print(f"theme_bench: creating {count:,} tenants ({args.seed})…", flush=True)
    if args.seed == "api":
        token = secrets.token_urlsafe(24)
        server = start_tenantsvc(children, args.python, seeded, pin, env_extra={"ADMIN_TOKEN": token},
                                 wait_for="readyz")
        try:
            result["seed"] = seed_via_api(server.port, token, count, args.seed_concurrency, timeout_s=600.0)
            result["memory"]["after_api_seed_kib"] = proc_status_kib(server.proc.pid, "VmRSS")
            result["memory"]["after_api_seed_peak_kib"] = peak_rss_kib(server.proc.pid)
        finally:
            stop_tenantsvc(children, server)
    else:
        server = start_tenantsvc(children, args.python, seeded, pin, wait_for="readyz")  # migrations + demo
        stop_tenantsvc(children, server)
        result["seed"] = seed_via_sqlite(seeded / "var" / "tenantsvc.sqlite3", count)
    seed = result["seed"]
    print(f"theme_bench: created {count:,} tenants in {seed['seconds']} s ({seed['tenants_per_s']:.0f}/s)"
          + (f"; retries {seed['retries']}" if seed.get("retries") else ""), flush=True)
    db_file = seeded / "var" / "tenantsvc.sqlite3"

    def instance(name: str, env_extra: dict[str, str]) -> Server:
        """tenantsvc on a private copy of the seeded database, ready once /readyz says so (after the warm)."""
        directory = workdir / name
        if directory.exists():
            raise BenchError(f"{directory} already exists")
        (directory / "var").mkdir(parents=True)
        copy_sqlite(db_file, directory / "var" / "tenantsvc.sqlite3")
        return start_tenantsvc(children, args.python, directory, pin, env_extra=env_extra, wait_for="readyz")

    captures: dict[str, RawResponse] = {}

    # 2. Every tenant cached: start-up warm time, memory at idle and under a herd spread over all tenants.
    all_cached = str(max(10_000, count + 1))  # + the demo tenant, so a cyclic sweep never evicts
    server = instance("all-cached", {"THEME_CACHE_MAX_ENTRIES": all_cached, "THEME_WARM_INTERVAL": NEVER_REWARM_S})
    try:
        assert server.log_file is not None
        warm = warm_action(server.log_file)
        time.sleep(SETTLE_S)
        result["memory"]["idle_all_cached_kib"] = proc_status_kib(server.proc.pid, "VmRSS")  # before any request
        result["memory"]["startup_peak_all_cached_kib"] = peak_rss_kib(server.proc.pid)
        # From here VmHWM is the peak while serving (if the kernel lets us reset it), not the start-up peak.
        result["memory"]["peak_reset"] = reset_peak_rss(server.proc.pid)
        entries = gauge(scrape_metrics(server.port), "cache_entries", cache="branding")
        result["startup_warm"] = {"ready_after_s": server.ready_after_s, "warm_action": warm,
                                  "cache_entries": entries, "theme_cache_max_entries": int(all_cached)}
        print(f"theme_bench: start-up warm of {count:,} tenants: "
              f"{warm['seconds'] if warm else '?'} s (ready after {server.ready_after_s} s); "
              f"idle RSS {mib(result['memory']['idle_all_cached_kib'])} MiB", flush=True)
        captures["fresh"] = http_get(server.port, first_path)
        if captures["fresh"].status != 200 or "hit" not in (captures["fresh"].header("cache-status") or ""):
            raise BenchError(f"{first_path} is not a cache hit on the all-cached instance: "
                             f"{captures['fresh'].status} {captures['fresh'].header('cache-status')}")
        if args.warmup:
            run_wrk(children, settings, server, herd, args.warmup)
        before = scrape_metrics(server.port)
        spread = measure(children, settings, server, herd, duration_s=args.duration, warmup_s=0,
                         label=f"spread hit ({count:,} tenants, all cached)", expected=captures["fresh"])
        result["memory"]["all_cached_after_load_kib"] = proc_status_kib(server.proc.pid, "VmRSS")
        after = scrape_metrics(server.port)  # as Prometheus would: the peak below includes rendering it
        result["memory"]["all_cached_serving_peak_kib"] = peak_rss_kib(server.proc.pid)
        result["memory"]["metrics_scrape_bytes"] = len(http_get(server.port, "/metrics", timeout_s=10.0).body)
        result["runs"]["spread hit"] = {"tenantsvc": spread, "outcome": herd_outcome(before, after)}
    finally:
        stop_tenantsvc(children, server)

    # 3. Cold herds: L1 holds `herd_cache_entries`, so nearly every request misses it.
    # Each variant: (label, with Redis?, wrk connections, which captured answer its baseline replays).
    variants: list[tuple[str, bool, int, str]] = []
    redis_server: str | None = None
    if want_cold:
        variants.append(("cold herd, no Redis", False, args.connections, "default"))
        redis_server = shutil.which("redis-server") if args.redis == "auto" else None
        if redis_server:
            variants.append(("cold herd, Redis L2", True, args.connections, "default"))
            if args.herd_low_connections:
                variants.append((f"cold herd, Redis L2, {args.herd_low_connections} conns", True,
                                 args.herd_low_connections, "l2"))
        elif args.redis == "auto":
            print("theme_bench: redis-server not found: the Redis L2 herds are skipped", flush=True)
    for number, (label, with_redis, connections, answer) in enumerate(variants, 1):
        redis_proc = None
        env = {"THEME_CACHE_MAX_ENTRIES": str(args.herd_cache_entries), "THEME_WARM_INTERVAL": NEVER_REWARM_S}
        if with_redis:
            assert redis_server is not None
            redis_proc, redis_port = start_redis(children, redis_server, workdir, wrk_pin)
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        try:
            server = instance(f"herd-{number}", env)  # a directory of its own: fresh database and log
            try:
                assert server.log_file is not None
                warm = warm_action(server.log_file)
                if answer not in captures:  # bench-00000 is not in L1: the defaults, or (Redis) L2's answer
                    captures[answer] = http_get(server.port, first_path)
                before = scrape_metrics(server.port)
                run = measure(children, replace(settings, connections=connections), server, herd,
                              duration_s=args.duration, warmup_s=0, label=f"{label} (L1 {args.herd_cache_entries})")
                after = scrape_metrics(server.port)
                result["runs"][label] = {
                    "tenantsvc": run, "outcome": herd_outcome(before, after), "warm_action": warm,
                    "connections": connections, "ready_after_s": server.ready_after_s,
                    "peak_rss_kib": peak_rss_kib(server.proc.pid), "baseline_answer": answer,
                    "env": {k: v for k, v in env.items() if k != "REDIS_URL"} | (
                        {"REDIS_URL": "redis://127.0.0.1:<port>/0"} if redis_proc else {}),
                }
            finally:
                stop_tenantsvc(children, server)
        finally:
            if redis_proc is not None:
                children.stop(redis_proc)

    # 4. The baselines: one tenant's answer replayed for every path of the same herd, same connections.
    result["runs"]["spread hit"].update(connections=args.connections, baseline_answer="fresh")
    jobs: dict[tuple[str, int], list[str]] = {}
    for label, run in result["runs"].items():
        jobs.setdefault((run["baseline_answer"], run["connections"]), []).append(label)
    for (answer, connections), labels in jobs.items():
        spec_path = workdir / f"baseline-{answer}.json"
        spec_path.write_text(json.dumps({"routes": {}, "fallback": replay_entry(captures[answer])}), encoding="utf-8")
        baseline = start_baseline(children, args.python, workdir, pin, spec_path)
        try:
            check = compare(captures[answer], http_get(baseline.port, first_path))
            print_check(f"{answer} answer of {tenant_slug(0)} for every tenant path", check)
            run = measure(children, replace(settings, connections=connections), baseline, herd,
                          duration_s=args.duration, warmup_s=args.warmup, expected=captures[answer],
                          label=f"herd of {count:,} paths, {answer} answer, {connections} conns")
        finally:
            children.stop(baseline.proc)
        for label in labels:
            result["runs"][label]["baseline"] = run
            result["runs"][label]["baseline_check"] = check
        result.setdefault("baseline_answers", {})[answer] = {
            "status": captures[answer].status, "cache_status": captures[answer].header("cache-status"),
            "chunked": (captures[answer].header("transfer-encoding") or "").lower() == "chunked",
            "body_bytes": len(captures[answer].body)}
    return result


# --------------------------------------------------------------------------------------------------
# The benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (all bounded, all with defaults matching DESIGN.md §8's method)."""
    parser = argparse.ArgumentParser(description="Benchmark tenantsvc's public theme path (warm hit, 304, "
                                                 "theme.css, 10,000-tenant herds, memory) against a bare "
                                                 "twisted.web baseline serving byte-identical responses.")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help=f"comma-separated subset of {','.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10, max 600)")
    parser.add_argument("--connections", type=int, default=50, help="wrk keep-alive connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds of the warm/304/css/healthz scenarios; medians are reported (default 3); "
                             "the tenant-scale scenarios run once")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds before each run (default 2)")
    parser.add_argument("--tenants", type=int, default=10_000, help="tenants for cold/memory (default 10000)")
    parser.add_argument("--seed", choices=("api", "sqlite"), default="api",
                        help="create the tenants through the admin API (default) or write them into the "
                             "SQLite file directly (seconds instead of ~half a minute)")
    parser.add_argument("--seed-concurrency", type=int, default=8,
                        help="parallel admin API connections while seeding (default 8)")
    parser.add_argument("--herd-cache-entries", type=int, default=100,
                        help="THEME_CACHE_MAX_ENTRIES of the cold-herd instances (default 100)")
    parser.add_argument("--redis", choices=("auto", "off"), default="auto",
                        help="auto: repeat the cold herd with a throwaway redis-server if installed (default)")
    parser.add_argument("--herd-low-connections", type=int, default=4,
                        help="also run the Redis cold herd with this many connections, below saturation "
                             "(default 4; 0 to skip)")
    parser.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS (max 900) for the 1-minute load average to fall below "
                             "0.5, then go on either way (default 0: do not wait)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with tenantsvc's deps (default: this one)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes (default bench/results)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs, SQLite files)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        parser.error(f"--scenarios takes a comma-separated subset of {','.join(SCENARIOS)}; unknown: {unknown}")
    args.scenarios = [s for s in SCENARIOS if s in chosen]
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 1 <= args.connections <= 10_000 or not 1 <= args.threads <= args.connections:
        parser.error("--connections must be 1..10000 and --threads 1..connections")
    if not 1 <= args.runs <= 20 or not 0 <= args.warmup <= 60:
        parser.error("--runs must be 1..20 and --warmup 0..60")
    if not 100 <= args.tenants <= 99_999:
        parser.error("--tenants must be 100..99999")
    if not 0 <= args.wait_quiet <= 900:
        parser.error("--wait-quiet must be 0..900 seconds")
    if not 1 <= args.seed_concurrency <= 64:
        parser.error("--seed-concurrency must be 1..64")
    if not 0 <= args.herd_low_connections <= 10_000:
        parser.error("--herd-low-connections must be 0..10000")
    if not 10 <= args.herd_cache_entries < args.tenants:
        parser.error("--herd-cache-entries must be at least 10 (tenantsvc's minimum) and below --tenants")
    return args


def estimated_seconds(args: argparse.Namespace, endpoints: list[Endpoint]) -> float:
    """A rough run-time estimate, printed up front."""
    per_run = args.warmup + args.duration
    total = args.runs * (2 * len(endpoints) * per_run + (8 if endpoints else 0))
    if {"cold", "memory"} & set(args.scenarios):
        total += (35 if args.seed == "api" else 6) * args.tenants / 10_000 + 8 + 2 * per_run + 4
        if "memory" in args.scenarios:
            total += 4
        if "cold" in args.scenarios:
            total += 2 * (args.duration + 6) + per_run + 3
            if args.redis == "auto" and args.herd_low_connections:
                total += args.duration + 6 + per_run + 2
    return total


def wait_for_quiet(limit_s: int, threshold: float = 0.5) -> None:
    """Wait (at most ``limit_s``) until the 1-minute load average is below ``threshold``."""
    deadline = time.monotonic() + limit_s
    if os.getloadavg()[0] < threshold:
        return
    print(f"theme_bench: waiting up to {limit_s}s for the load average ({os.getloadavg()[0]:.2f}) to fall "
          f"below {threshold}", flush=True)
    while time.monotonic() < deadline:
        if os.getloadavg()[0] < threshold:
            return
        time.sleep(5)
    print(f"theme_bench: load average still {os.getloadavg()[0]:.2f}; going on", flush=True)


def versions(wrk: str) -> dict[str, str | None]:
    """Twisted's, wrk's and redis-server's versions, for ``machine_info``."""
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    twisted_version = subprocess.run([sys.executable, "-c", "import twisted; print(twisted.__version__)"],
                                     capture_output=True, text=True).stdout.strip()
    redis = shutil.which("redis-server")
    redis_version = subprocess.run([redis, "--version"], capture_output=True, text=True).stdout.strip() if redis else None
    return {"twisted": twisted_version, "wrk": wrk_version.split(" Copyright")[0].strip(),
            "redis": redis_version.split(" sha=")[0] if redis_version else None}


def benchmark(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Run every selected scenario and return the full result document."""
    wrk = ensure_wrk()
    server_pin, wrk_pin, pin_note = pinning(args.server_cpu, args.wrk_cpu)
    settings = WrkSettings(wrk, wrk_pin, args.connections, args.threads, workdir)
    endpoints = [e for e in ENDPOINTS if e.scenario in args.scenarios]
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet)
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        print(f"theme_bench: warning: load average is {load_at_start[0]:.2f}; other processes on these CPUs "
              "will distort the figures", flush=True)
    print(f"theme_bench: scenarios {','.join(args.scenarios)}; {pin_note}; wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s, {args.runs} run(s), {args.warmup}s warm-up each; "
          f"about {estimated_seconds(args, endpoints) / 60:.1f} min", flush=True)
    started = time.monotonic()
    machine = machine_info(**versions(wrk))

    document: dict[str, Any] = {
        "benchmark": "theme_bench",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "settings": {"scenarios": args.scenarios, "duration_s": args.duration, "connections": args.connections,
                     "threads": args.threads, "runs": args.runs, "warmup_s": args.warmup, "pinning": pin_note,
                     "tenants": args.tenants, "seed": args.seed, "seed_concurrency": args.seed_concurrency,
                     "herd_cache_entries": args.herd_cache_entries, "redis": args.redis,
                     "herd_low_connections": args.herd_low_connections},
        "endpoints": {e.name: e.path + (" + If-None-Match" if e.conditional else "") for e in endpoints},
        "summary": [],
        "checks": {},
    }
    if endpoints:
        rounds = endpoint_rounds(args, children, settings, workdir, server_pin, endpoints)
        document["summary"] = summarise(rounds["runs"], [e.name for e in endpoints])
        document["baseline_checks"] = rounds["checks"]
        document["etag"] = rounds["etag"]
        document["extras"] = rounds["extras"]
        document["runs"] = {s: {n: [_public(r) for r in rs] for n, rs in per.items()}
                            for s, per in rounds["runs"].items()}
    if {"cold", "memory"} & set(args.scenarios):
        scale = tenant_scale(args, children, settings, workdir, server_pin, wrk_pin)
        rows = []
        for label, run in scale["runs"].items():
            base = run.get("baseline")
            rows.append(_row(label, "tenantsvc", [run["tenantsvc"]], base.requests_per_s if base else None,
                             base.p99_ms if base else None))
            if base:
                rows.append(_row(label, "baseline", [base], base.requests_per_s, base.p99_ms))
            run["tenantsvc"] = _public(run["tenantsvc"])
            if base:
                run["baseline"] = _public(base)
        document["tenant_scale_summary"] = rows
        document["tenant_scale"] = scale
    document["checks"] = goal_checks(document)
    document["elapsed_s"] = round(time.monotonic() - started, 1)
    document["machine"] = dict(machine, loadavg_at_start=[round(x, 2) for x in load_at_start],
                               loadavg_at_end=[round(x, 2) for x in os.getloadavg()])
    return document


def _public(result: WrkResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("raw")
    return data


def goal_checks(document: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals: 304 at least as fast as the warm hit, warm hit >= 0.75 of baseline, <= 100 MiB."""
    rows = {(r["scenario"], r["server"]): r for r in document["summary"]}
    checks: dict[str, Any] = {}
    warm = rows.get(("warm hit", "tenantsvc"))
    if warm:
        checks["warm_hit_ratio"] = {"value": warm["rps_ratio_to_baseline"], "goal": f">= {WARM_RATIO_GOAL}",
                                    "met": (warm["rps_ratio_to_baseline"] or 0) >= WARM_RATIO_GOAL}
    runs = document.get("runs", {}).get("tenantsvc", {})
    if runs.get("warm hit") and runs.get("304"):
        pairs = list(zip(runs["304"], runs["warm hit"]))  # same instance, measured one after the other
        ratio = statistics.median(n["requests_per_s"] / w["requests_per_s"] for n, w in pairs)
        cpu = [(n["server_cpu_us_per_request"], w["server_cpu_us_per_request"]) for n, w in pairs
               if n["server_cpu_us_per_request"] and w["server_cpu_us_per_request"]]
        checks["304_vs_warm_hit"] = {
            "requests_per_s": [rows[("304", "tenantsvc")]["requests_per_s"], warm["requests_per_s"]],
            "cpu_us_per_request": [rows[("304", "tenantsvc")]["server_cpu_us_per_request"],
                                   warm["server_cpu_us_per_request"]],
            "ratio": round(ratio, 3),
            "ratio_per_round": [round(n["requests_per_s"] / w["requests_per_s"], 3) for n, w in pairs],
            "cpu_ratio": round(statistics.median(n / w for n, w in cpu), 3) if cpu else None,
            "goal": "304 req/s >= warm hit req/s (median of per-round ratios)",
            "met": ratio >= 1.0,
        }
    memory = document.get("tenant_scale", {}).get("memory", {})
    serving_peak = "serving_peak" if memory.get("peak_reset") else "lifetime_peak"
    for key, what in (("idle_all_cached_kib", "idle"), ("all_cached_after_load_kib", "after_serving_every_tenant"),
                      ("all_cached_serving_peak_kib", serving_peak), ("startup_peak_all_cached_kib", "startup_peak")):
        if memory.get(key) is not None:
            checks[f"rss_all_cached_{what}"] = {"value_mib": mib(memory[key]), "goal": f"<= {RSS_GOAL_MIB} MiB",
                                                "met": memory[key] <= RSS_GOAL_MIB * MIB}
    return checks


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = ("scenario", "server", "req/s", "p99 ms", "ratio to baseline", "p99 vs baseline", "CPU µs/req", "errors",
              "other CPU")
    lines = [header]
    for row in rows:
        lines.append((row["scenario"], row["server"], f"{row['requests_per_s']:.0f}", f"{row['p99_ms']:.2f}",
                      f"{row['rps_ratio_to_baseline']:.2f}" if row["rps_ratio_to_baseline"] is not None else "-",
                      f"{row['p99_ratio_to_baseline']:.2f}×" if row["p99_ratio_to_baseline"] is not None else "-",
                      f"{row['server_cpu_us_per_request']:.0f}" if row["server_cpu_us_per_request"] else "-",
                      str(row["errors"]),
                      f"{row['other_cpu_pct']:.0f}%" if row.get("other_cpu_pct") is not None else "-"))
    return text_table(header, lines[1:], left=2)


def _counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in mapping.items()) or "none"


def print_report(document: dict[str, Any]) -> None:
    """Print the tables, the tenant-scale details, memory and the goal checks."""
    settings, machine = document["settings"], document["machine"]
    print()
    print(f"theme_bench {document['measured_at']} — {machine['cpus']} CPUs ({machine['cpu_model']}), "
          f"Python {machine['python']}, Twisted {machine['twisted']}, {machine['wrk']}, commit {machine['commit']}")
    print(f"wrk -t{settings['threads']} -c{settings['connections']} -d{settings['duration_s']}s --latency; "
          f"{settings['pinning']}; load average {machine['loadavg_at_start'][0]:.2f} → "
          f"{machine['loadavg_at_end'][0]:.2f}; {document['elapsed_s'] / 60:.1f} min")
    if document["summary"]:
        print()
        print(f"demo tenant, medians of {settings['runs']} run(s):")
        for line in _table(document["summary"]):
            print("  " + line)
        log_sizes = document["extras"]["log_bytes_per_request"]
        if log_sizes:
            print(f"  tenantsvc LOG_FILE grew ~{statistics.median(log_sizes):.0f} bytes per request")
    scale = document.get("tenant_scale")
    if scale:
        count = scale["tenants"]
        print()
        seed = scale["seed"]
        print(f"{count:,} tenants (created via {seed['method']} in {seed['seconds']} s); one run each; the baseline "
              "replays one tenant's answer for every path of the same herd:")
        for line in _table(document["tenant_scale_summary"]):
            print("  " + line)
        warm = scale["startup_warm"]
        action = warm["warm_action"] or {}
        print(f"  start-up warm of {count:,} tenants: {action.get('seconds', '?')} s "
              f"(eliot tenantsvc:themes:warm, {action.get('tenants', '?')} tenants); /readyz 200 "
              f"{warm['ready_after_s']} s after spawn; {warm['cache_entries']:.0f} L1 entries")
        for label, run in scale["runs"].items():
            outcome = run["outcome"]
            requests = run["tenantsvc"]["requests"]
            line = (f"  {label}: {outcome['db_reads_refresh_theme']:,} DB reads (refresh_theme) for "
                    f"{requests:,} requests; answers {_counts(outcome['responses'])}")
            if outcome["l2_gets"]:
                line += f"; L2 gets {_counts(outcome['l2_gets'])}"
            if outcome["refreshes"]:
                line += f"; refreshes {_counts(outcome['refreshes'])}"
            if outcome["breaker_rejections"]:
                line += f"; breaker rejections {_counts(outcome['breaker_rejections'])}"
            if run.get("warm_action"):
                line += f"; start-up warm {run['warm_action']['seconds']} s"
            print(line)
        memory = scale["memory"]
        parts = []
        serving_peak = ("peak while serving them and one /metrics scrape" if memory.get("peak_reset")
                        else "lifetime peak (VmHWM could not be reset)")
        for key, text in (("idle_demo_only_kib", "idle, demo only"),
                          ("startup_peak_demo_only_kib", "start-up peak, demo only"),
                          ("idle_all_cached_kib", f"idle, {count:,} cached"),
                          ("startup_peak_all_cached_kib", f"start-up peak, {count:,} tenants"),
                          ("all_cached_after_load_kib", "after serving every tenant (spread hit)"),
                          ("all_cached_serving_peak_kib", serving_peak),
                          ("after_api_seed_kib", "seeding instance after its API writes")):
            if memory.get(key) is not None:
                parts.append(f"{text} {mib(memory[key])} MiB")
        if parts:
            print(f"  tenantsvc RSS: {'; '.join(parts)}")
        if memory.get("metrics_scrape_bytes"):
            print(f"  /metrics after serving every tenant: {memory['metrics_scrape_bytes'] / 1e6:.1f} MB "
                  "(per-tenant series)")
    checks = document["checks"]
    if checks:
        print()
        print("checks:")
        if "304_vs_warm_hit" in checks:
            c = checks["304_vs_warm_hit"]
            cpu = c["cpu_us_per_request"]
            print(f"  304 vs warm hit (tenantsvc): {c['requests_per_s'][0]:.0f} vs {c['requests_per_s'][1]:.0f} req/s, "
                  f"per-round ratio {c['ratio']:.2f}× (rounds: {', '.join(f'{r:.2f}' for r in c['ratio_per_round'])}); "
                  f"CPU {cpu[0] or 0:.0f} vs {cpu[1] or 0:.0f} µs/req — "
                  f"{'OK: 304 at least as fast' if c['met'] else '[!] NOT MET: 304 slower than the warm hit'}")
        if "warm_hit_ratio" in checks:
            c = checks["warm_hit_ratio"]
            print(f"  warm hit ratio to baseline: {c['value']:.2f} (goal {c['goal']}) — "
                  f"{'met' if c['met'] else '[!] NOT MET'}")
        for key, text in (("idle", "idle"), ("after_serving_every_tenant", "after serving every tenant"),
                          ("serving_peak", "peak while serving them and one /metrics scrape"),
                          ("lifetime_peak", "lifetime peak"),
                          ("startup_peak", "start-up peak (before any request)")):
            c = checks.get(f"rss_all_cached_{key}")
            if c:
                print(f"  RSS with {document['tenant_scale']['tenants']:,} tenants cached, {text}: {c['value_mib']} MiB "
                      f"(goal {c['goal']}) — {'met' if c['met'] else '[!] NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    """Measure, print, write the JSON; children are always stopped."""
    return run_bench("theme_bench", parse_args(argv), benchmark, print_report)


if __name__ == "__main__":
    sys.exit(main())
