"""Hostile clients against a real ``twistd tenantsvc --demo`` on loopback (issue 11, items 1-3): what they cost.

Scenarios (``--scenarios``, default all, each against a fresh server; bounded counts and durations):

- ``pipelining``: ``--connections`` (50) connections each send ``--pipelined`` (500) ``GET /metrics`` at once
  and never read. Reported: the server's RSS before, its peak during (``VmHWM`` after a reset) and after
  the attackers hang up; ``/healthz`` latency on fresh connections during the attack (one probe every
  0.1 s, 10 s timeout); how many attacker connections the server closed, and
  ``http_connections_closed_total`` by reason.
- ``slowloris``: ``--slow-connections`` (200) connections each send a request line and then one header
  line every ``--drip`` (2) seconds, never finishing the head, for ``--slow-duration`` (25) seconds.
  Reported: how many the server closed and after how long, ``/healthz`` latency meanwhile, closes by reason.
- ``cap``: ``--cap-connections`` (300) idle connections from 127.0.0.1: how many were accepted, how many
  refused (``429 too_many_connections``) under ``HTTP_MAX_CONNECTIONS_PER_CLIENT`` (default 256).
- ``oversized``: a 20 KiB header line, a 17 KiB header section of small lines, a 17 KiB request line:
  the status line and body the server answered, or that it closed without an answer.
- ``drain``: ``wrk`` (keep-alive, ``--wrk-connections``) on ``/healthz`` plus ``--keepalive-clients`` Python
  keep-alive clients issuing requests back to back, and a ``/readyz`` poller on new connections; SIGTERM
  after 2 s (``DRAIN_PRESTOP_DELAY=--prestop``). Reported: the ``/readyz`` sequence (200 → 503 → refused),
  every keep-alive client outcome (full responses; clean refusals on a new connection; resets or
  disconnects mid-request, which must be 0), wrk's socket errors by kind, and the exit status.

``--code-dir`` runs the server from another source tree (``git worktree add /tmp/edge-before 71fcdb2``),
which is how the "before" figures are measured with the same script. The machine has 2 shared cores:
latencies are noisy, compare the same run's figures. Prints a report; writes
``bench/results/hostile-clients-<UTC timestamp>.json``. It measures; it asserts nothing.

    .venv/bin/python bench/hostile_clients.py [--scenarios pipelining,slowloris,cap,oversized,drain]
    .venv/bin/python bench/hostile_clients.py --code-dir /tmp/edge-before
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    REPO, BenchError, Children, Server, ensure_wrk, metric_delta, mib, peak_rss_kib, proc_status_kib,
    reset_peak_rss, run_guarded, scrape_metrics, start_tenantsvc, stop_tenantsvc, write_results,
)

from tests.support.hostile_clients import (  # noqa: E402
    KeepAliveClient, ReadinessWatcher, answer_to, connect, healthz_ms, peer_closed, pipelined_gets,
)

SCENARIOS = ("pipelining", "slowloris", "cap", "oversized", "drain")
PROBE_TIMEOUT_S = 10.0
CLOSED = "http_connections_closed_total"


# --------------------------------------------------------------------------------------------------
# Helpers


def start(children: Children, args: argparse.Namespace, workdir: Path, name: str, **env: str) -> Server:
    """A fresh demo server for one scenario, from ``--code-dir`` when given."""
    extra = dict(env)
    if args.code_dir:
        extra["PYTHONPATH"] = str(Path(args.code_dir).resolve())
    return start_tenantsvc(children, sys.executable, workdir / name, [], env_extra=extra, wait_for="readyz")


class HealthProbe(threading.Thread):
    """``GET /healthz`` on a new connection every ``interval_s``; records latency or failure."""

    def __init__(self, port: int, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self._port, self._interval_s = port, interval_s
        self._stop_event = threading.Event()
        self.latencies_ms: list[float] = []
        self.failures = 0

    def run(self) -> None:
        """Probe until stopped."""
        while not self._stop_event.is_set():
            latency = healthz_ms(self._port, PROBE_TIMEOUT_S)
            if latency is None:
                self.failures += 1
            else:
                self.latencies_ms.append(latency)
            self._stop_event.wait(self._interval_s)

    def stop(self) -> dict[str, Any]:
        """Stop probing and summarise."""
        self._stop_event.set()
        self.join(PROBE_TIMEOUT_S + 1)
        values = sorted(self.latencies_ms)
        return {"probes": len(values) + self.failures, "failures": self.failures,
                "p50_ms": round(statistics.median(values), 1) if values else None,
                "p99_ms": round(values[int(0.99 * (len(values) - 1))], 1) if values else None,
                "max_ms": round(values[-1], 1) if values else None}


def closes(before: dict, after: dict) -> dict[str, int]:
    """``http_connections_closed_total`` growth by reason (empty for a server without it)."""
    return metric_delta(before, after, CLOSED, "reason")


def safe_scrape(port: int) -> dict:
    """``/metrics`` samples, or an empty dict if it cannot be read."""
    try:
        return scrape_metrics(port)
    except (OSError, BenchError):
        return {}


# --------------------------------------------------------------------------------------------------
# Scenarios


def pipelining(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """50 × 500 pipelined GET /metrics, never read."""
    server = start(children, args, workdir, "pipelining", HTTP_WRITE_TIMEOUT=str(args.write_timeout))
    pid = server.proc.pid
    before = safe_scrape(server.port)
    time.sleep(1.0)
    rss_before = proc_status_kib(pid, "VmRSS")
    reset_peak_rss(pid)
    payload = pipelined_gets("/metrics", args.pipelined)
    attackers = []
    for _ in range(args.connections):
        sock = connect(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10.0)
        attackers.append(sock)
    probe = HealthProbe(server.port)
    probe.start()
    began = time.monotonic()
    for sock in attackers:
        try:
            sock.sendall(payload)
        except OSError:
            pass
    rss_samples = []
    while time.monotonic() - began < args.attack_duration:
        rss_samples.append(proc_status_kib(pid, "VmRSS") or 0)
        time.sleep(0.25)
    health = probe.stop()
    closed_by_server = sum(peer_closed(sock) for sock in attackers)
    peak = peak_rss_kib(pid)
    for sock in attackers:
        sock.close()
    time.sleep(3.0)
    rss_after = proc_status_kib(pid, "VmRSS")
    after = safe_scrape(server.port)
    stop_tenantsvc(children, server)
    return {"connections": args.connections, "pipelined": args.pipelined, "duration_s": args.attack_duration,
            "rss_before_mib": mib(rss_before), "rss_peak_mib": mib(peak),
            "rss_max_sampled_mib": mib(max(rss_samples) if rss_samples else None),
            "rss_after_mib": mib(rss_after), "healthz": health,
            "attackers_closed_by_server": closed_by_server, "closes": closes(before, after),
            "metrics_answered": metric_delta(before, after, "http_requests_total", "endpoint").get("/metrics")}


def slowloris(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """200 connections dripping header lines, never finishing the head."""
    server = start(children, args, workdir, "slowloris")
    before = safe_scrape(server.port)
    probe = HealthProbe(server.port, interval_s=0.25)
    probe.start()
    opened: list[tuple[socket.socket, float]] = []
    for _ in range(args.slow_connections):
        sock = connect(server.port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        opened.append((sock, time.monotonic()))
    closed_after: dict[int, float] = {}
    began = time.monotonic()
    while time.monotonic() - began < args.slow_duration:
        for index, (sock, first_byte) in enumerate(opened):
            if index in closed_after:
                continue
            if peer_closed(sock):
                closed_after[index] = time.monotonic() - first_byte
                continue
            try:
                sock.setblocking(True)
                sock.sendall(b"X-Slow: %d\r\n" % index)
            except OSError:
                closed_after[index] = time.monotonic() - first_byte
        time.sleep(args.drip)
    health = probe.stop()
    after = safe_scrape(server.port)
    for sock, _ in opened:
        sock.close()
    stop_tenantsvc(children, server)
    times = sorted(closed_after.values())
    return {"connections": args.slow_connections, "drip_s": args.drip, "duration_s": args.slow_duration,
            "closed_by_server": len(times), "still_open": args.slow_connections - len(times),
            "closed_after_s": {"min": round(times[0], 1), "max": round(times[-1], 1)} if times else None,
            "healthz": health, "closes": closes(before, after)}


def cap(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Many idle connections from one address: accepted vs refused at the per-client cap."""
    server = start(children, args, workdir, "cap")
    before = safe_scrape(server.port)
    sockets, refused, failed = [], 0, 0
    for _ in range(args.cap_connections):
        try:
            sockets.append(connect(server.port))
        except OSError:
            failed += 1
    time.sleep(1.0)
    for sock in sockets:  # the refusals were answered at once (1 s ago): no waiting per socket
        sock.setblocking(False)
        try:
            if sock.recv(4096).startswith(b"HTTP/1.1 429"):
                refused += 1
        except OSError:
            pass
    for sock in sockets:  # first: /metrics from this address would be over the cap too
        sock.close()
    time.sleep(0.5)
    after = safe_scrape(server.port)
    stop_tenantsvc(children, server)
    return {"connections": args.cap_connections, "refused_429": refused, "connect_failed": failed,
            "accepted": len(sockets) - refused, "closes": closes(before, after)}


def first_line_and_body(raw: bytes) -> str:
    """An answer's status line and the start of its body, or that there was none."""
    if not raw:
        return "closed without an answer"
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1") + " " + body[:160].decode("latin-1")


def oversized(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """A too-long header line, a too-large header section, a too-long request line."""
    server = start(children, args, workdir, "oversized")
    before = safe_scrape(server.port)
    cases = {
        "header line 20 KiB": b"GET /healthz HTTP/1.1\r\nHost: b\r\nX-Big: " + b"a" * 20480 + b"\r\n\r\n",
        "header section 17 KiB (170 lines)": b"GET /healthz HTTP/1.1\r\nHost: b\r\n"
        + b"".join(b"X-H%03d: %s\r\n" % (i, b"b" * 90) for i in range(170)) + b"\r\n",
        "request line 17 KiB": b"GET /healthz?" + b"q" * 17408 + b" HTTP/1.1\r\nHost: b\r\n\r\n",
    }
    answers = {name: first_line_and_body(answer_to(server.port, request)) for name, request in cases.items()}
    after = safe_scrape(server.port)
    stop_tenantsvc(children, server)
    return {"answers": answers, "closes": closes(before, after)}


_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def drain(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """SIGTERM under keep-alive load: readiness sequence, client outcomes, wrk's socket errors."""
    server = start(children, args, workdir, "drain", DRAIN_PRESTOP_DELAY=str(args.prestop))
    wrk = ensure_wrk()
    wrk_out = workdir / "drain-wrk.out"
    wrk_proc = children.start([wrk, "-t1", f"-c{args.wrk_connections}", f"-d{args.prestop + 8:.0f}s",
                               f"http://127.0.0.1:{server.port}/healthz"],
                              cwd=workdir, env={"PATH": "/usr/bin:/bin"}, stdout=wrk_out, stderr=wrk_out)
    stop = threading.Event()
    clients = [KeepAliveClient(server.port, stop) for _ in range(args.keepalive_clients)]
    poller = ReadinessWatcher(server.port, stop)
    for thread in (*clients, poller):
        thread.start()
    time.sleep(2.0)
    sigterm_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(args.prestop + 20)
    except Exception:
        code = None
    exited_after = time.monotonic() - sigterm_at
    time.sleep(0.5)
    stop.set()
    for thread in (*clients, poller):
        thread.join(15)
    try:
        wrk_proc.wait(args.prestop + 20)
    except Exception:
        children.stop(wrk_proc)
    text = wrk_out.read_text(errors="replace")
    errors = _WRK_ERRORS.search(text)
    totals = {key: sum(client.outcomes[key] for client in clients) for key in ("ok", "refused", "cut", "closes_announced")}
    children.stop(server.proc)
    return {
        "prestop_s": args.prestop, "exit_code": code, "exited_after_sigterm_s": round(exited_after, 2),
        "readyz": [(round(at - sigterm_at, 2), state) for at, state in poller.changes],
        "keepalive_clients": args.keepalive_clients, "client_outcomes": totals,
        "client_cuts": sorted({name for client in clients for name in client.cuts}),
        "wrk_socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups())))
        if errors else {},
        "wrk_requests": int(m.group(1)) if (m := re.search(r"(\d+) requests in", text)) else None,
    }


RUNNERS: dict[str, Callable[[argparse.Namespace, Children, Path], dict[str, Any]]] = {
    "pipelining": pipelining, "slowloris": slowloris, "cap": cap, "oversized": oversized, "drain": drain,
}


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--code-dir", help="run the server from this source tree (the 'before' figures)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--pipelined", type=int, default=500)
    parser.add_argument("--attack-duration", type=float, default=30.0)
    parser.add_argument("--write-timeout", type=float, default=5.0, help="HTTP_WRITE_TIMEOUT for pipelining")
    parser.add_argument("--slow-connections", type=int, default=200)
    parser.add_argument("--drip", type=float, default=2.0)
    parser.add_argument("--slow-duration", type=float, default=25.0)
    parser.add_argument("--cap-connections", type=int, default=300)
    parser.add_argument("--prestop", type=float, default=2.0)
    parser.add_argument("--wrk-connections", type=int, default=20)
    parser.add_argument("--keepalive-clients", type=int, default=8)
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios, print each result, write the JSON."""
    args = parse_args(argv)

    def run(children: Children, workdir: Path) -> int:
        document: dict[str, Any] = {
            "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "code_dir": args.code_dir or str(REPO), "results": {}}
        for name in args.scenarios.split(","):
            print(f"--- {name}", flush=True)
            result = RUNNERS[name](args, children, workdir)
            document["results"][name] = result
            for key, value in result.items():
                print(f"  {key}: {value}", flush=True)
        write_results(document, args.results_dir, "hostile-clients")
        return 0

    return run_guarded("hostile_clients", args.keep_temp, run)


if __name__ == "__main__":
    sys.exit(main())
