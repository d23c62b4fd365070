"""Benchmark tenantsvc's hottest paths against a bare twisted.web baseline measured in the same run.

What it does, in order (see bench/README.md for how to read the figures):

1. Makes sure ``wrk`` is installed (``apt-get install -y wrk``, non-interactively, if it is missing).
2. For each of ``--runs`` rounds, one server at a time (never both under load together):
   - starts ``twistd -n --pidfile= --logger=tenantsvc.obs.logging.twisted_observer tenantsvc --demo
     --listen tcp:PORT:interface=127.0.0.1`` in a temporary directory (embedded SQLite, ``LOG_FILE`` set
     to a file there so logging is on as in production), pinned to CPU 0 with ``taskset``; waits until
     the demo theme is served from the cache; on the first round captures the exact responses of
     ``/demo/api/public/load-theme`` and ``/healthz`` (status, headers, body);
   - loads each endpoint with ``wrk`` pinned to CPU 1 (keep-alive, ``--connections`` connections,
     bounded ``--duration``), after a short warm-up; stops the server;
   - starts ``bench/baseline_server.py`` (a bare ``twisted.web`` Resource replaying the captured
     responses byte for byte; ``/healthz``'s timestamp is replayed as captured, so its body has the same
     length), pinned to CPU 0, checks that its responses match, loads it the same way and stops it.
3. Takes the median requests/s and p99 of the rounds, prints a table with the ratio to the baseline and
   writes everything (raw runs, medians, machine, versions) as JSON to ``bench/results/``.

Every child runs in its own process group and is killed on exit, on an error and on Ctrl-C/SIGTERM.

Run it with the repository venv's python: ``.venv/bin/python bench/theme_bench.py [--duration 10]
[--connections 50] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
BASELINE_SERVER = REPO / "bench" / "baseline_server.py"
ENDPOINTS = (("load-theme", "/demo/api/public/load-theme"), ("healthz", "/healthz"))
SERVERS = ("tenantsvc", "baseline")
# Written by twisted.web itself for both servers (Connection only appears because the capture closes).
AUTOMATIC_HEADERS = frozenset({"server", "date", "content-length", "transfer-encoding", "connection"})
# Variables that would point the benchmarked process somewhere other than the embedded default.
SCRUBBED_ENV = ("DATABASE_URL", "REDIS_URL", "PROCESS_TYPE", "PORT", "LOG_FILE", "ENVIRONMENT", "ADMIN_TOKEN")
TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class BenchError(RuntimeError):
    """The benchmark cannot go on (a server did not start, wrk failed, …); the message says why."""


# --------------------------------------------------------------------------------------------------
# Child processes


class Children:
    """Every child process this script started, each in its own session so it can be killed as a group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> subprocess.Popen:
        """Start ``argv`` in a new session with its output going to the given files."""
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the child's process group, wait up to ``timeout_s``, then SIGKILL it; returns the exit code."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        else:
            _signal_group(proc, signal.SIGKILL)  # stragglers in the group, if any
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child still tracked, newest first."""
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc, timeout_s=5.0)
            except Exception as error:  # cleanup must go on for the others
                sys.stderr.write(f"theme_bench: could not stop pid {proc.pid}: {error}\n")


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------------
# Environment checks


def ensure_wrk() -> str:
    """Return the path of ``wrk``, installing it with apt-get (non-interactively) if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("theme_bench: wrk is missing; installing it with apt-get", flush=True)
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise BenchError("wrk is not installed and this user cannot run apt-get; install wrk and retry")
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (prefix + ["apt-get", "update", "-qq"],
                 prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]):
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed with exit code {result.returncode}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get reported success but wrk is still not on PATH")
    return found


def pinning(server_cpu: int, load_cpu: int) -> tuple[list[str], list[str], str]:
    """The ``taskset`` prefixes for the server and for wrk, plus a note; no pinning if it is impossible."""
    taskset = shutil.which("taskset")
    allowed = os.sched_getaffinity(0)
    if taskset is None:
        return [], [], "taskset not found: processes are not pinned"
    if server_cpu == load_cpu or not {server_cpu, load_cpu} <= allowed:
        return [], [], (f"CPUs {server_cpu} and {load_cpu} are not two distinct usable CPUs "
                        f"(usable: {sorted(allowed)}): processes are not pinned")
    return ([taskset, "-c", str(server_cpu)], [taskset, "-c", str(load_cpu)],
            f"server on CPU {server_cpu}, wrk on CPU {load_cpu}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# Raw HTTP, so captured responses are exactly what went over the wire


@dataclass
class RawResponse:
    """One HTTP/1.1 response as bytes: status, headers in wire order, body and total size."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    wire_bytes: int

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def http_get(port: int, path: str, timeout_s: float = 5.0) -> RawResponse:
    """GET ``path`` from 127.0.0.1:``port`` with ``Connection: close`` and parse the raw response."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode("ascii")
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise BenchError(f"incomplete HTTP response from port {port} for {path}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    response = RawResponse(status=status, headers=headers, body=body, wire_bytes=len(raw))
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        response.body = _dechunk(body)
    return response


def _dechunk(data: bytes) -> bytes:
    out, position = [], 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2: line_end + 2 + size])
        position = line_end + 2 + size + 2


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, logs: list[Path],
               timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``check()`` until it is true; fail early if ``proc`` exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} before it was ready\n{_tails(logs)}")
        try:
            if check():
                return
        except (OSError, BenchError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{what} was not ready after {timeout_s:.0f}s\n{_tails(logs)}")


def _tails(paths: list[Path], lines: int = 8, width: int = 400) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            shown = [line if len(line) <= width else line[:width] + " …" for line in text]
            parts.append(f"--- last lines of {path.name} ---\n" + "\n".join(shown))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# The two servers


@dataclass
class Server:
    """A started server: its process, port and where its output goes."""

    name: str
    proc: subprocess.Popen
    port: int
    logs: list[Path]
    log_file: Path | None = None


def start_tenantsvc(children: Children, python: str, workdir: Path, pin: list[str]) -> Server:
    """Start tenantsvc with the demo tenant and logging to a file; return once the demo theme is cached."""
    port = free_port()
    log_file = workdir / "tenantsvc.json"
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["LOG_FILE"] = str(log_file)
    argv = pin + [python, "-c", TWISTD, "-n", "--pidfile=", "--logger=tenantsvc.obs.logging.twisted_observer",
                  "tenantsvc", "--demo", "--listen", f"tcp:{port}:interface=127.0.0.1"]
    stdout, stderr = workdir / "tenantsvc.stdout", workdir / "tenantsvc.stderr"
    proc = children.start(argv, cwd=workdir, env=env, stdout=stdout, stderr=stderr)
    server = Server("tenantsvc", proc, port, [stderr, stdout, log_file], log_file)

    def demo_theme_cached() -> bool:
        """True once load-theme answers from the cache with the demo tenant's own theme.

        Until the first warm has run, load-theme answers with the default palette, which is not the
        response the baseline should replay.
        """
        response = http_get(port, ENDPOINTS[0][1])
        return response.status == 200 and "hit" in (response.header("cache-status") or "")

    wait_until(demo_theme_cached, proc, "tenantsvc", server.logs)
    return server


def start_baseline(children: Children, python: str, workdir: Path, pin: list[str], spec_path: Path) -> Server:
    """Start the replaying twisted.web baseline and wait until it answers."""
    port = free_port()
    argv = pin + [python, str(BASELINE_SERVER), "--spec", str(spec_path), "--port", str(port)]
    stdout, stderr = workdir / "baseline.stdout", workdir / "baseline.stderr"
    proc = children.start(argv, cwd=workdir, env=dict(os.environ), stdout=stdout, stderr=stderr)
    server = Server("baseline", proc, port, [stderr, stdout])
    wait_until(lambda: http_get(port, "/healthz").status == 200, proc, "baseline server", server.logs)
    return server


def capture(port: int) -> dict[str, RawResponse]:
    """Fetch every benchmarked endpoint once from tenantsvc."""
    captured = {}
    for name, path in ENDPOINTS:
        response = http_get(port, path)
        if response.status != 200:
            raise BenchError(f"tenantsvc answered {response.status} for {path}; expected 200")
        captured[name] = response
    return captured


def baseline_spec(captured: dict[str, RawResponse]) -> dict[str, Any]:
    """The replay spec for ``baseline_server.py``: same status, headers (in order) and body per path."""
    routes = {}
    for name, path in ENDPOINTS:
        response = captured[name]
        routes[path] = {
            "status": response.status,
            "headers": [[k, v] for k, v in response.headers if k.lower() not in AUTOMATIC_HEADERS],
            "body_b64": base64.b64encode(response.body).decode("ascii"),
        }
    return {"routes": routes}


def verify_baseline(port: int, captured: dict[str, RawResponse]) -> dict[str, dict[str, Any]]:
    """Compare the baseline's responses with tenantsvc's: body bytes, header names in order, wire size."""
    checks = {}
    for name, path in ENDPOINTS:
        ours, theirs = captured[name], http_get(port, path)
        checks[name] = {
            "status_equal": ours.status == theirs.status,
            "body_identical": ours.body == theirs.body,
            "body_bytes": len(ours.body),
            "header_names_equal": [k for k, _ in ours.headers] == [k for k, _ in theirs.headers],
            "wire_bytes_tenantsvc": ours.wire_bytes,
            "wire_bytes_baseline": theirs.wire_bytes,
        }
        checks[name]["ok"] = all(checks[name][k] for k in ("status_equal", "body_identical", "header_names_equal")) \
            and ours.wire_bytes == theirs.wire_bytes
    return checks


# --------------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    non_2xx_3xx: int
    server_cpu_us_per_request: float | None = None
    raw: str = field(default="", repr=False)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")


def _to_ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise BenchError(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Pull requests/s, p50, p99, request count and errors out of ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot parse wrk output:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_to_ms(p50.group(1)),
        p99_ms=_to_ms(p99.group(1)),
        requests=int(total.group(1)),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        raw=output,
    )


def _cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields_ = handle.read().rsplit(")", 1)[1].split()
        return int(fields_[11]) + int(fields_[12])  # utime + stime, every thread included
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_kib(pid: int) -> int | None:
    """The process's peak resident set size (VmHWM) in KiB, if /proc has it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def run_wrk(children: Children, wrk: str, pin: list[str], server: Server, path: str, *, duration_s: int,
            connections: int, threads: int, workdir: Path) -> WrkResult:
    """Load ``path`` on ``server`` with wrk for ``duration_s`` and measure server CPU per request."""
    url = f"http://127.0.0.1:{server.port}{path}"
    argv = pin + [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", url]
    output = workdir / "wrk.out"
    output.write_bytes(b"")
    before = _cpu_ticks(server.proc.pid)
    proc = children.start(argv, cwd=workdir, env=dict(os.environ), stdout=output, stderr=output)
    try:
        proc.wait(duration_s + 30)
    except subprocess.TimeoutExpired:
        children.stop(proc)
        raise BenchError(f"wrk did not finish within {duration_s + 30}s") from None
    children.stop(proc)
    after = _cpu_ticks(server.proc.pid)
    text = output.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with code {proc.returncode}:\n{text}")
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name} died under load (exit {server.proc.returncode})\n{_tails(server.logs)}")
    result = parse_wrk(text)
    if before is not None and after is not None and result.requests:
        result.server_cpu_us_per_request = round((after - before) / os.sysconf("SC_CLK_TCK") * 1e6 / result.requests, 1)
    return result


# --------------------------------------------------------------------------------------------------
# The benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (all bounded, all with defaults matching DESIGN.md §8's method)."""
    parser = argparse.ArgumentParser(description="Benchmark tenantsvc's load-theme and /healthz against a "
                                                 "bare twisted.web baseline serving byte-identical responses.")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10, max 600)")
    parser.add_argument("--connections", type=int, default=50, help="wrk keep-alive connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds before each run (default 2)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with tenantsvc's deps (default: this one)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes (default bench/results)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs, SQLite file)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 1 <= args.connections <= 10_000 or not 1 <= args.threads <= args.connections:
        parser.error("--connections must be 1..10000 and --threads 1..connections")
    if not 1 <= args.runs <= 20 or not 0 <= args.warmup <= 60:
        parser.error("--runs must be 1..20 and --warmup 0..60")
    return args


def machine_info(wrk: str) -> dict[str, Any]:
    """Where the figures were measured: CPU model and count, kernel, Python, Twisted and wrk versions."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    twisted_version = subprocess.run([sys.executable, "-c", "import twisted; print(twisted.__version__)"],
                                     capture_output=True, text=True).stdout.strip()
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "twisted": twisted_version,
            "wrk": wrk_version.split(" Copyright")[0].strip()}


def benchmark(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    """Run every round and return the full result document (raw runs, medians, ratios, checks)."""
    wrk = ensure_wrk()
    server_pin, wrk_pin, pin_note = pinning(args.server_cpu, args.wrk_cpu)
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        print(f"theme_bench: warning: load average is {load_at_start[0]:.2f}; other processes on these CPUs "
              "will distort the figures", flush=True)
    print(f"theme_bench: {pin_note}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"{args.runs} run(s), {args.warmup}s warm-up each", flush=True)
    runs: dict[str, dict[str, list[WrkResult]]] = {s: {e: [] for e, _ in ENDPOINTS} for s in SERVERS}
    extras: dict[str, Any] = {"log_bytes_per_request": [], "peak_rss_kib": {s: [] for s in SERVERS}}
    captured: dict[str, RawResponse] | None = None
    checks: dict[str, Any] = {}
    spec_path = workdir / "baseline-spec.json"

    def load(server: Server, round_no: int) -> int:
        """Warm up and measure every endpoint on ``server``; return how many requests it served."""
        served = 0
        for name, path in ENDPOINTS:
            if args.warmup:
                served += run_wrk(children, wrk, wrk_pin, server, path, duration_s=args.warmup,
                                  connections=args.connections, threads=args.threads, workdir=workdir).requests
            result = run_wrk(children, wrk, wrk_pin, server, path, duration_s=args.duration,
                             connections=args.connections, threads=args.threads, workdir=workdir)
            served += result.requests
            runs[server.name][name].append(result)
            problems = ""
            if result.socket_errors or result.non_2xx_3xx:
                problems = f"  [!] {result.socket_errors} socket errors, {result.non_2xx_3xx} non-2xx/3xx"
            print(f"  run {round_no}: {server.name:<9} {name:<10} {result.requests_per_s:>10.0f} req/s  "
                  f"p99 {result.p99_ms:7.2f} ms  cpu {result.server_cpu_us_per_request or 0:6.1f} µs/req{problems}",
                  flush=True)
        return served

    for round_no in range(1, args.runs + 1):
        server = start_tenantsvc(children, args.python, workdir, server_pin)
        served = 0
        try:
            if captured is None:
                captured = capture(server.port)
                spec_path.write_text(json.dumps(baseline_spec(captured), indent=2), encoding="utf-8")
            served = load(server, round_no)
            extras["peak_rss_kib"]["tenantsvc"].append(peak_rss_kib(server.proc.pid))
        finally:
            code = children.stop(server.proc)
            if code not in (0, None, -signal.SIGTERM):  # plain twistd re-raises SIGTERM after a clean stop
                print(f"theme_bench: tenantsvc exited with code {code} on SIGTERM", flush=True)
            if server.log_file and server.log_file.exists():
                if served:  # measured after the stop, so the writer thread has flushed everything
                    extras["log_bytes_per_request"].append(round(server.log_file.stat().st_size / served))
                server.log_file.unlink()  # about 1 KB per request: keep the disk clean between rounds

        baseline = start_baseline(children, args.python, workdir, server_pin, spec_path)
        try:
            if not checks:
                checks = verify_baseline(baseline.port, captured)
                for name, check in checks.items():
                    state = "identical" if check["ok"] else "MISMATCH"
                    print(f"theme_bench: baseline {name}: {state} (body {check['body_bytes']} B, response "
                          f"{check['wire_bytes_tenantsvc']} vs {check['wire_bytes_baseline']} B on the wire)",
                          flush=True)
            load(baseline, round_no)
            extras["peak_rss_kib"]["baseline"].append(peak_rss_kib(baseline.proc.pid))
        finally:
            children.stop(baseline.proc)

    summary = summarise(runs)
    return {
        "benchmark": "theme_bench",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": dict(machine_info(wrk), loadavg_at_start=[round(x, 2) for x in load_at_start],
                        loadavg_at_end=[round(x, 2) for x in os.getloadavg()]),
        "settings": {"duration_s": args.duration, "connections": args.connections, "threads": args.threads,
                     "runs": args.runs, "warmup_s": args.warmup, "pinning": pin_note},
        "endpoints": dict(ENDPOINTS),
        "baseline_checks": checks,
        "summary": summary,
        "extras": extras,
        "runs": {s: {e: [_public(r) for r in rs] for e, rs in per.items()} for s, per in runs.items()},
    }


def _public(result: WrkResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("raw")
    return data


def summarise(runs: dict[str, dict[str, list[WrkResult]]]) -> list[dict[str, Any]]:
    """Median req/s, p99 and CPU per request per (endpoint, server), with ratios to the baseline."""
    rows = []
    for endpoint, _ in ENDPOINTS:
        base_rps = statistics.median(r.requests_per_s for r in runs["baseline"][endpoint])
        base_p99 = statistics.median(r.p99_ms for r in runs["baseline"][endpoint])
        for server in SERVERS:
            results = runs[server][endpoint]
            rps = statistics.median(r.requests_per_s for r in results)
            p99 = statistics.median(r.p99_ms for r in results)
            cpu = [r.server_cpu_us_per_request for r in results if r.server_cpu_us_per_request is not None]
            rows.append({
                "endpoint": endpoint, "server": server,
                "requests_per_s": round(rps, 1), "p99_ms": round(p99, 2),
                "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
                "server_cpu_us_per_request": round(statistics.median(cpu), 1) if cpu else None,
                "rps_ratio_to_baseline": round(rps / base_rps, 3) if base_rps else None,
                "p99_ratio_to_baseline": round(p99 / base_p99, 2) if base_p99 else None,
                "errors": sum(r.socket_errors + r.non_2xx_3xx for r in results),
            })
    return rows


def print_table(document: dict[str, Any]) -> None:
    """Print the summary as an aligned table."""
    header = ("endpoint", "server", "req/s", "p99 ms", "ratio to baseline", "p99 vs baseline", "CPU µs/req")
    lines = [header]
    for row in document["summary"]:
        lines.append((row["endpoint"], row["server"], f"{row['requests_per_s']:.0f}", f"{row['p99_ms']:.2f}",
                      f"{row['rps_ratio_to_baseline']:.2f}", f"{row['p99_ratio_to_baseline']:.2f}×",
                      f"{row['server_cpu_us_per_request']:.0f}" if row["server_cpu_us_per_request"] else "-"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    settings, machine = document["settings"], document["machine"]
    print()
    print(f"theme_bench {document['measured_at']} — {machine['cpus']} CPUs ({machine['cpu_model']}), "
          f"Python {machine['python']}, Twisted {machine['twisted']}, {machine['wrk']}")
    print(f"medians of {settings['runs']} run(s); wrk -t{settings['threads']} -c{settings['connections']} "
          f"-d{settings['duration_s']}s --latency; {settings['pinning']}")
    for i, line in enumerate(lines):
        print("  ".join(str(cell).ljust(widths[j]) if j < 2 else str(cell).rjust(widths[j])
                        for j, cell in enumerate(line)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    log_sizes = document["extras"]["log_bytes_per_request"]
    if log_sizes:
        print(f"tenantsvc LOG_FILE grew ~{statistics.median(log_sizes):.0f} bytes per request")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; children are always stopped."""
    args = parse_args(argv)
    children = Children()
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in stop_signals}
    workdir = Path(tempfile.mkdtemp(prefix="theme-bench-"))
    try:
        document = benchmark(args, children, workdir)
        print_table(document)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = document["measured_at"].replace("-", "").replace(":", "")
        target = args.results_dir / f"theme-bench-{stamp}.json"
        target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {target}")
        return 0
    except BenchError as error:
        sys.stderr.write(f"theme_bench: {error}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("theme_bench: interrupted; stopping servers\n")
        return 130
    finally:
        for sig in stop_signals:  # a second Ctrl-C must not cut the clean-up short (it is bounded)
            signal.signal(sig, signal.SIG_IGN)
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep_temp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
