"""Hostile clients (issue 11): pipelining, slowloris, per-client cap, oversized heads and the SIGTERM drain, each
against a fresh ``twistd tenantsvc --demo`` (README "Hostile clients and limits" says how to read it)."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import Bench, bench_parser, ensure_wrk, latency_ms, run_main, scrape, socket_errors  # noqa: E402

from tests.support.hostile_clients import (  # noqa: E402
    KeepAliveClient, ReadinessWatcher, answer_to, connect, healthz_ms, peer_closed, pipelined_gets,
)
from tests.support.metrics import sample_delta  # noqa: E402
from tests.support.processes import reset_peak_rss, status_kib  # noqa: E402

SCENARIOS = ("pipelining", "slowloris", "cap", "oversized", "drain")
OVERSIZED = {"header line 20 KiB": b"GET /healthz HTTP/1.1\r\nHost: b\r\nX-Big: " + b"a" * 20480 + b"\r\n\r\n",
             "header section 17 KiB (170 lines)": b"GET /healthz HTTP/1.1\r\nHost: b\r\n"
             + b"".join(b"X-H%03d: %s\r\n" % (i, b"b" * 90) for i in range(170)) + b"\r\n",
             "request line 17 KiB": b"GET /healthz?" + b"q" * 17408 + b" HTTP/1.1\r\nHost: b\r\n\r\n"}


def probing(port: int, interval_s: float, stop: threading.Event, latencies: list) -> threading.Thread:
    """A thread timing ``GET /healthz`` on a new connection every ``interval_s`` (None: failed) until ``stop``."""
    def run() -> None:
        while not stop.wait(interval_s):
            latencies.append(healthz_ms(port, 10.0))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def health(latencies: list) -> dict[str, Any]:
    """Probes, failures and median/p99/max latency (ms)."""
    return {"probes": len(latencies), "failures": latencies.count(None),
            **latency_ms([v for v in latencies if v is not None])}


def attack(bench: Bench, name: str) -> dict[str, Any]:
    """Scenario ``name`` against a fresh server; its figures, with ``http_connections_closed_total`` by reason."""
    args = bench.args
    env = {"pipelining": {"HTTP_WRITE_TIMEOUT": f"{args.write_timeout:g}"},
           "drain": {"DRAIN_PRESTOP_DELAY": f"{args.prestop:g}"}}.get(name, {})
    server = bench.tenantsvc(name, **env)
    port, pid, stop, latencies, out = server.port, server.proc.pid, threading.Event(), [], {}
    before = scrape(port)
    if name == "pipelining":  # never-reading connections, each with many pipelined GET /metrics
        time.sleep(1.0)
        out["rss_before_mib"], _ = status_kib(pid, "VmRSS") / 1024, reset_peak_rss(pid)
        socks = [connect(port) for _ in range(args.connections)]
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        probe, began = probing(port, 0.1, stop, latencies), time.monotonic()
        for sock in socks:
            try:
                sock.settimeout(10.0)
                sock.sendall(pipelined_gets("/metrics", args.pipelined))
            except OSError:
                pass
        samples = []
        while time.monotonic() - began < args.attack_duration:
            samples.append(status_kib(pid, "VmRSS") or 0)
            time.sleep(0.25)
        stop.set()
        probe.join(11)
        out |= {"healthz": health(latencies), "attackers_closed_by_server": sum(map(peer_closed, socks)),
                "rss_peak_mib": status_kib(pid, "VmHWM") / 1024, "rss_max_sampled_mib": max(samples) / 1024}
        for sock in socks:
            sock.close()
        time.sleep(3.0)
        out["rss_after_mib"] = status_kib(pid, "VmRSS") / 1024
    elif name == "slowloris":  # heads dripped a line at a time, never finished
        probe, opened, closed = probing(port, 0.25, stop, latencies), [], {}
        for _ in range(args.slow_connections):
            opened.append((connect(port), time.monotonic()))
            opened[-1][0].sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        began = time.monotonic()
        while time.monotonic() - began < args.slow_duration:
            for index, (sock, first) in ((i, o) for i, o in enumerate(opened) if i not in closed):
                try:
                    if peer_closed(sock):
                        raise OSError
                    sock.sendall(b"X-Slow: %d\r\n" % index)
                except OSError:
                    closed[index] = time.monotonic() - first
            time.sleep(args.drip)
        stop.set()
        probe.join(11)
        times = sorted(closed.values())
        out |= {"closed_by_server": len(times), "still_open": len(opened) - len(times), "healthz": health(latencies),
                "closed_after_s": times and {"min": round(times[0], 1), "max": round(times[-1], 1)}}
        for sock, _ in opened:
            sock.close()
    elif name == "cap":  # idle connections from one address
        socks = [connect(port) for _ in range(args.cap_connections)]
        time.sleep(1.0)
        refused = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                refused += sock.recv(4096).startswith(b"HTTP/1.1 429")
            except OSError:
                pass
            sock.close()  # first: /metrics from this address would be over the cap too
        time.sleep(0.5)
        out |= {"connections": len(socks), "refused_429": refused, "accepted": len(socks) - refused}
    elif name == "oversized":
        for case, request in OVERSIZED.items():
            head, _, body = answer_to(port, request).partition(b"\r\n\r\n")
            out[case] = (head.split(b"\r\n", 1)[0] + b" " + body[:160]).decode("latin-1") if head else "closed, no answer"
    else:  # drain: SIGTERM under keep-alive load
        wrk_out = bench.workdir / "drain-wrk.out"
        wrk = bench.children.start([ensure_wrk(), "-t1", f"-c{args.wrk_connections}", f"-d{args.prestop + 8:.0f}s",
                                    f"http://127.0.0.1:{port}/healthz"], cwd=bench.workdir, env={"PATH": "/usr/bin:/bin"},
                                   stdout=wrk_out, stderr=wrk_out)
        clients = [KeepAliveClient(port, stop) for _ in range(args.keepalive_clients)]
        watcher = ReadinessWatcher(port, stop)
        for thread in (*clients, watcher):
            thread.start()
        time.sleep(2.0)
        sigterm_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        out["exit_code"] = server.proc.wait(args.prestop + 20)
        out["exited_after_sigterm_s"] = round(time.monotonic() - sigterm_at, 2)
        time.sleep(0.5)
        stop.set()
        for thread in (*clients, watcher):
            thread.join(15)
        bench.children.stop(wrk, timeout_s=args.prestop + 20)
        text = wrk_out.read_text(errors="replace")
        out |= {"readyz": [(round(at - sigterm_at, 2), state) for at, state in watcher.changes],
                "client_outcomes": {k: sum(c.outcomes[k] for c in clients) for k in ("ok", "refused", "cut",
                                                                                       "closes_announced")},
                "client_cuts": sorted({cut for c in clients for cut in c.cuts}),
                "wrk_socket_errors": socket_errors(text)}
        return out
    out["closes"] = sample_delta(before, scrape(port), "http_connections_closed_total", "reason")
    bench.stop(server)
    return out


def measure(bench: Bench) -> dict[str, Any]:
    """Every chosen scenario, printed as it ends."""
    results = {}
    for name in bench.args.scenarios.split(","):
        print(f"--- {name}", flush=True)
        results[name] = attack(bench, name)
        for key, value in results[name].items():
            print(f"  {key}: {round(value, 1) if isinstance(value, float) else value}", flush=True)
    return {"code_dir": bench.args.code_dir or "this tree", "results": results}


if __name__ == "__main__":
    parser = bench_parser(__doc__, scenarios=",".join(SCENARIOS), connections=50, pipelined=500, slow_connections=200,
                          cap_connections=300, wrk_connections=20, keepalive_clients=8, attack_duration=30.0,
                          write_timeout=5.0, drip=2.0, slow_duration=25.0, prestop=2.0)
    options = parser.parse_args()
    if set(options.scenarios.split(",")) - set(SCENARIOS):
        parser.error(f"--scenarios takes some of {','.join(SCENARIOS)}")
    sys.exit(run_main("hostile-clients", options, measure))
