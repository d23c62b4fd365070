"""The tiny bench runner over ``tests/support``: declarative scenarios, wrk with CPU per request, same-run replay
baselines, paired rounds and their ratios, aligned tables and the results file (the method: bench/README.md)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.figures import wrk_socket_errors  # noqa: E402
from tests.support.http import HttpAnswer, raw_get  # noqa: E402
from tests.support.metrics import scraped_samples  # noqa: E402
from tests.support.processes import ChildProcesses, cpu_ticks, descendants, free_port  # noqa: E402
from tests.support.tenantsvc_process import TenantsvcProcess, twistd_command  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
LOAD_THEME = "/demo/api/public/load-theme"
# What a browser's fetch of the theme carries (the header lines tenantsvc keeps in web/header_lines).
BROWSER_HEADERS = (("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131"),
                   ("Accept", "application/json"), ("Accept-Language", "en-GB,en;q=0.9"),
                   ("Accept-Encoding", "gzip, deflate, br, zstd"), ("Origin", "https://demo.example.com"),
                   ("Referer", "https://demo.example.com/"), ("Sec-Fetch-Dest", "empty"), ("Sec-Fetch-Mode", "cors"),
                   ("Sec-Fetch-Site", "same-site"), ("Sec-Ch-Ua-Platform", '"Linux"'))
# What would point tenantsvc elsewhere than the embedded default or change what is measured.
SCRUBBED = ("DATABASE_URL", "PROCESS_TYPE", "PORT", "LOG_FILE", "ENVIRONMENT", "ADMIN_TOKEN", "PGBOUNCER_ADMIN_URL",
            "TRUSTED_PROXY_HEADER", "MAX_BODY_BYTES", "THEME_", "RATE_LIMIT_", "DB_", "REDIS_", "ACCESS_LOG_", "SESSION_")
# The limiter runs on every request, but its bucket never empties, so the answer stays the warm hit.
UNLIMITED_PUBLIC = {"RATE_LIMIT_PUBLIC": "1000000000/1000000000"}
AUTOMATIC_HEADERS = frozenset({"server", "date", "content-length", "transfer-encoding", "connection"})
BASELINE = ["-m", "bench.baseline_server"]


class BenchError(RuntimeError):
    """The bench cannot go on; the message says why."""


@dataclass(frozen=True)
class Load:
    """What wrk sends: a path with extra headers, or a Lua script and its arguments."""

    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    script: Path | None = None
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A measured request shape: its name, the load, the status it must get and the tenantsvc set-up serving it."""

    name: str
    load: Load
    status: int = 200
    setup: str = "demo"


@dataclass
class Server:
    """A started server under load: its process, port and (tenantsvc) log file."""

    name: str
    proc: subprocess.Popen
    port: int
    log_file: Path | None = None
    ready_after_s: float | None = None
    process: TenantsvcProcess | None = None


@dataclass
class WrkResult:
    """One wrk run, with the server's CPU per request and the CPU everything else used meanwhile (100 = one CPU)."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    bytes_per_response: float | None = None
    server_cpu_us_per_request: float | None = None
    other_cpu_pct: float | None = None
    raw: str = field(default="", repr=False)


def parse_wrk(text: str) -> WrkResult:
    """Requests/s, p50, p99, requests, errors and average answer size from ``wrk --latency`` output."""
    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    found = [re.search(p, text, re.M) for p in (r"^Requests/sec:\s+([\d.]+)", r"^\s+50%\s+(\S+)", r"^\s+99%\s+(\S+)",
                                                 r"^\s+(\d+) requests in [^,]+, ([\d.]+)([KMGT]?B) read")]
    if not all(found):
        raise BenchError(f"cannot parse wrk output:\n{text}")
    rps, p50, p99, total = found  # type: ignore[misc]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    count = int(total.group(1))
    size = float(total.group(2)) * 1024 ** "BKMGT".index(total.group(3)[0]) if count else 0.0
    errors = sum(wrk_socket_errors(text).values()) + int(non_2xx.group(1) if non_2xx else 0)
    return WrkResult(float(rps.group(1)), ms(p50.group(1)), ms(p99.group(1)), count, errors,
                     round(size / count, 1) if count else None, raw=text)


def tree_ticks(pid: int) -> int:
    """CPU ticks of ``pid`` and its live descendants (gunicorn's worker, a postmaster's backends)."""
    return sum(cpu_ticks(p) or 0 for p in (pid, *descendants(pid)))


def machine_busy_ticks() -> int:
    """Busy ticks of all CPUs (user, nice, system, irq, softirq) from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return values[0] + values[1] + values[2] + values[5] + values[6]


def replay_entry(answer: HttpAnswer, **extra: Any) -> dict[str, Any]:
    """A captured answer as a replay spec entry (status, headers in wire order, body; the server writes the rest)."""
    return {"status": answer.status, "body_b64": base64.b64encode(answer.body).decode("ascii"),
            "headers": [[k, v] for k, v in answer.wire_headers if k.lower() not in AUTOMATIC_HEADERS],
            "chunked": answer.header("content-length") is None, **extra}


def compare(ours: HttpAnswer, theirs: HttpAnswer) -> dict[str, Any]:
    """tenantsvc's answer against a baseline's: status, body, header names in order, size on the wire."""
    names = [k for k, _ in ours.wire_headers], [k for k, _ in theirs.wire_headers]
    check = {"status": ours.status == theirs.status, "body": ours.body == theirs.body, "headers": names[0] == names[1],
             "wire_bytes": [ours.wire_bytes, theirs.wire_bytes]}
    check["identical"] = check["status"] and check["body"] and check["headers"] and len(set(check["wire_bytes"])) == 1
    return check


def keep_alive_size(answer: HttpAnswer) -> int:
    """The captured answer's wire size without its ``Connection: close`` (wrk keeps alive)."""
    return answer.wire_bytes - sum(len(f"{k}: {v}\r\n") for k, v in answer.wire_headers if k.lower() == "connection")


def pinning(server_cpu: int, load_cpu: int) -> tuple[list[str], list[str], str]:
    """``taskset`` prefixes for the servers and the load, and a note; no pinning when it is impossible."""
    taskset = shutil.which("taskset")
    if taskset is None or server_cpu == load_cpu or not {server_cpu, load_cpu} <= os.sched_getaffinity(0):
        return [], [], "not pinned (taskset missing or CPUs unusable)"
    return [taskset, "-c", str(server_cpu)], [taskset, "-c", str(load_cpu)], f"servers on CPU {server_cpu}, load on CPU {load_cpu}"


def ensure_wrk() -> str:
    """The path of ``wrk`` (``scripts/setup`` installs it; nothing is fetched at run time)."""
    return shutil.which("wrk") or sys.exit("wrk is missing: scripts/setup installs it (apt-get install wrk)")


def tenantsvc_env(log_file: Path, code_dir: str = "", **extra: str) -> dict[str, str]:
    """This environment minus ``SCRUBBED``, logging to ``log_file``, the server code from ``code_dir`` (default: here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    code = str(Path(code_dir).resolve()) if code_dir else str(REPO)
    return {**env, **UNLIMITED_PUBLIC, "PYTHONPATH": code, "LOG_FILE": str(log_file), **extra}


class Bench:
    """One run's child processes, temp dir, pinning and wrk shape; ``run_main`` stops every child at the end."""

    def __init__(self, args: argparse.Namespace, workdir: Path, children: ChildProcesses):
        self.args, self.workdir, self.children = args, workdir, children
        self.server_pin, self.load_pin, self.pin_note = pinning(args.server_cpu, args.load_cpu)

    def tenantsvc(self, name: str, *args: str, env: dict[str, str] | None = None,
                  ready: Callable[[int], bool] | None = None, **extra: str) -> Server:
        """``twistd -n tenantsvc *args`` (default ``--demo``) in ``workdir/name``, pinned, ready (default /readyz 200)."""
        cwd = self.workdir / name
        cwd.mkdir(parents=True, exist_ok=True)
        env = env or tenantsvc_env(cwd / "tenantsvc.json", self.args.code_dir, **extra)
        port, started = free_port(), time.monotonic()
        process = TenantsvcProcess(cwd, [*(args or ("--demo",)), "--listen", f"tcp:{port}:interface=127.0.0.1"], env,
                                   twistd_command(self.args.python, self.server_pin), own_session=True,
                                   start_timeout_s=60.0)
        self.children.adopt(process.process)
        process.port = port
        try:
            process.wait_until_ready(ready and (lambda: ready(port)))
        except (AssertionError, TimeoutError) as error:
            raise BenchError(f"{error}\n{process.stderr()[-2000:]}") from None
        return Server("tenantsvc", process.process, port, Path(env["LOG_FILE"]) if env.get("LOG_FILE") else None,
                      round(time.monotonic() - started, 2), process)

    def stop(self, server: Server) -> int | None:
        """SIGTERM the server's group (tenantsvc drains); say so when tenantsvc exits uncleanly."""
        code = self.children.stop(server.proc)
        if server.process and code not in (0, None, -signal.SIGTERM):
            print(f"[!] tenantsvc exited with {code} on SIGTERM", flush=True)
        return code

    def baseline(self, spec: dict[str, Any], name: str = "baseline", argv: Sequence[str] = BASELINE) -> Server:
        """A replay server (``argv`` + ``--port``; the spec file in ``BENCH_REPLAY_SPEC``), pinned, answering."""
        spec_file = self.workdir / f"{name}-{len(list(self.workdir.glob('*.spec.json')))}.spec.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        port = free_port()
        env = dict(os.environ, BENCH_REPLAY_SPEC=str(spec_file), PYTHONPATH=str(REPO))
        proc = self.children.start([*self.server_pin, self.args.python, *argv, "--port", str(port)], cwd=self.workdir,
                                   env=env, stdout=self.workdir / f"{name}.out", stderr=self.workdir / f"{name}.out")
        deadline = time.monotonic() + 30
        while True:
            try:
                raw_get(port, "/", timeout_s=1.0)
                return Server(name, proc, port)
            except (OSError, ValueError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{name} did not start: {(self.workdir / f'{name}.out').read_text()[-2000:]}")
                time.sleep(0.1)

    def wrk(self, server: Server, load: Load, duration_s: float) -> WrkResult:
        """wrk against ``server`` for ``duration_s``, pinned to the load CPU; the server's CPU and other CPU around it."""
        argv = [*self.load_pin, ensure_wrk(), "-t1", f"-c{self.args.connections}",
                f"-d{duration_s:g}s", "--latency", *[a for k, v in load.headers for a in ("-H", f"{k}: {v}")],
                *(["-s", str(load.script)] if load.script else []), f"http://127.0.0.1:{server.port}{load.path}",
                *(["--", *load.script_args] if load.script_args else [])]
        out = self.workdir / "wrk.out"
        out.write_bytes(b"")
        ticks, busy, started = tree_ticks(server.proc.pid), machine_busy_ticks(), time.monotonic()
        own = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = self.children.start(argv, cwd=self.workdir, env=dict(os.environ), stdout=out, stderr=out)
        try:
            proc.wait(duration_s + 30)
        finally:
            self.children.stop(proc)
        tick, elapsed = os.sysconf("SC_CLK_TCK"), time.monotonic() - started
        server_s = (tree_ticks(server.proc.pid) - ticks) / tick
        wrk_now = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_s = wrk_now.ru_utime + wrk_now.ru_stime - own.ru_utime - own.ru_stime
        if proc.returncode != 0 or server.proc.poll() is not None:
            raise BenchError(f"wrk exited {proc.returncode}, {server.name} {server.proc.poll()}: {out.read_text()}")
        result = parse_wrk(out.read_text(encoding="utf-8", errors="replace"))
        if result.requests:
            result.server_cpu_us_per_request = round(server_s * 1e6 / result.requests, 1)
        other = (machine_busy_ticks() - busy) / tick - server_s - wrk_s
        result.other_cpu_pct = round(max(other, 0.0) / elapsed * 100, 1)
        return result

    def measure(self, server: Server, scenario: Scenario, label: str, expected: HttpAnswer | None = None,
                warmup_s: float = 0) -> WrkResult:
        """An unmeasured warm-up, then the measured wrk run; one printed line, flagging errors and other answers."""
        if warmup_s:
            self.wrk(server, scenario.load, warmup_s)
        result = self.wrk(server, scenario.load, self.args.duration)
        flags = f"  [!] {result.errors} errors" if result.errors else ""
        if expected and result.bytes_per_response and abs(result.bytes_per_response - keep_alive_size(expected)) > \
                0.01 * keep_alive_size(expected):
            flags += f"  [!] answers averaged {result.bytes_per_response:.0f} B, captured {keep_alive_size(expected)} B"
        print(f"  {label:<40} {server.name:<10} {result.requests_per_s:>8.0f} req/s  p99 {result.p99_ms:7.2f} ms  "
              f"cpu {result.server_cpu_us_per_request or 0:6.1f} µs/req  other {result.other_cpu_pct or 0:4.0f}%{flags}",
              flush=True)
        return result


def paired_rounds(bench: Bench, servers: list[Server], scenarios: list[Scenario], rounds: int, first_round: int,
                  runs: dict[tuple[str, str], list[WrkResult]], captured: dict[Any, HttpAnswer]) -> None:
    """``rounds`` rounds; in each, every scenario on every server back to back (order reversed on even rounds);
    answers under load are checked against ``captured[(scenario, server)]``, else ``captured[scenario]``."""
    for number in range(first_round, first_round + rounds):
        order = servers if number % 2 else servers[::-1]
        for scenario in scenarios:
            for server in order:
                warmup = bench.args.warmup if number == first_round else 0
                runs.setdefault((scenario.name, server.name), []).append(
                    bench.measure(server, scenario, f"round {number}: {scenario.name}",
                                  captured.get((scenario.name, server.name), captured[scenario.name]), warmup))


def ratios(runs: dict[tuple[str, str], list[WrkResult]], scenario: str, server: str, base: str = "baseline",
           key: str = "requests_per_s") -> list[float]:
    """Per-round ``server`` ÷ ``base`` of ``key`` for ``scenario`` (each run against the one measured beside it)."""
    pairs = zip(runs.get((scenario, server), []), runs.get((scenario, base), []))
    return [round(getattr(s, key) / getattr(b, key), 3) for s, b in pairs if getattr(b, key)]


def summary_row(scenario: str, server: str, runs: dict[tuple[str, str], list[WrkResult]]) -> dict[str, Any]:
    """Medians of one (scenario, server) and the median of its per-round ratios to the baseline."""
    results = runs[(scenario, server)]
    cpu = [r.server_cpu_us_per_request for r in results if r.server_cpu_us_per_request]
    rps, p99 = ratios(runs, scenario, server), ratios(runs, scenario, server, key="p99_ms")
    return {"scenario": scenario, "server": server, "runs": len(results),
            "requests_per_s": round(statistics.median(r.requests_per_s for r in results), 1),
            "p50_ms": round(statistics.median(r.p50_ms for r in results), 3),
            "p99_ms": round(statistics.median(r.p99_ms for r in results), 2),
            "cpu_us_per_request": round(statistics.median(cpu), 1) if cpu else None,
            "ratio": round(statistics.median(rps), 3) if rps else None, "ratio_per_round": rps,
            "p99_ratio": round(statistics.median(p99), 2) if p99 else None,
            "errors": sum(r.errors for r in results), "other_cpu_pct": max(r.other_cpu_pct or 0 for r in results)}


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, indent: str = "  ") -> None:
    """Aligned lines with a rule under ``header``, indented: the first ``left`` columns flush left, the rest right."""
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in cells]
    for line in [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]:
        print(indent + line)


def summary_table(rows: list[dict[str, Any]]) -> None:
    """The one table of scenario × server figures, printed."""
    print_table(("scenario", "server", "req/s", "p50 ms", "p99 ms", "ratio to baseline", "p99 vs baseline",
                       "CPU µs/req", "errors", "other CPU"),
                      [(r["scenario"], r["server"], f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                        r["ratio"] and f"{r['ratio']:.2f}", r["p99_ratio"] and f"{r['p99_ratio']:.2f}×",
                        r["cpu_us_per_request"] and f"{r['cpu_us_per_request']:.0f}", r["errors"],
                        f"{r['other_cpu_pct']:.0f}%") for r in rows], left=2)


def public(result: WrkResult) -> dict[str, Any]:
    """A wrk result for the results file (without wrk's raw output)."""
    return {k: v for k, v in asdict(result).items() if k != "raw"}


def scrape(port: int) -> dict[Any, float]:
    """Every sample of ``/metrics`` (prometheus_client's parser), keyed by name and sorted labels."""
    return scraped_samples(raw_get(port, "/metrics", timeout_s=10.0).body.decode("utf-8", errors="replace"))


def machine_info() -> dict[str, Any]:
    """CPU model and count, kernel, Python, wrk, the commit (noting uncommitted tenantsvc/ changes), load average."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()  # noqa
    wrk = shutil.which("wrk")
    return {"cpu_model": next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?"),
            "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "wrk": wrk and subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split(" Copyright")[0],
            "commit": git("rev-parse", "--short", "HEAD") + ("+uncommitted" if git("status", "--porcelain", "tenantsvc") else ""),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def bench_parser(doc: str, **options: Any) -> argparse.ArgumentParser:
    """The common options (``--code-dir``, ``--python``, ``--results-dir``, ``--keep-temp``, CPUs), then ``options``:
    ``name=default`` or ``name=(default, help)``, typed by the default (``False``: a flag)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--code-dir", default="", help="run the server from this source tree (before/after)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the servers")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", "--wrk-cpu", type=int, default=1)
    for name, spec in options.items():
        default, text = spec if isinstance(spec, tuple) else (spec, None)
        kind = {"action": "store_true"} if default is False else {"type": type(default), "default": default}
        parser.add_argument(f"--{name.replace('_', '-')}", help=text, **kind)  # type: ignore[arg-type]
    return parser


def run_main(name: str, args: argparse.Namespace, measure: Callable[[Bench], dict[str, Any]],
             report: Callable[[dict[str, Any]], None] = lambda document: None) -> int:
    """``measure(bench)``, ``report(document)``, then ``<results-dir>/<name>-<UTC stamp>.json``; every child is
    stopped whatever happens (Ctrl-C, SIGTERM and SIGHUP too: exit 130); a ``BenchError`` is one line (exit 1)."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signum)

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in stop_signals}
    workdir, children = Path(tempfile.mkdtemp(prefix=f"{name}-")), ChildProcesses()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        document = {"bench": name, "measured_at": stamp, "machine": machine_info(),
                    **measure(Bench(args, workdir, children))}
        report(document)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        target = args.results_dir / f"{name}-{stamp}.json"
        target.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"results written to {target}")
        return 0
    except BenchError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted; stopping children", file=sys.stderr)
        return 130
    finally:
        for sig in stop_signals:  # a second Ctrl-C must not cut the (bounded) clean-up short
            signal.signal(sig, signal.SIG_IGN)
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep_temp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
