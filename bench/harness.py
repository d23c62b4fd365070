"""The bench runner: the few things every bench script needs on top of the test harness in ``tests/support``.

``tests/support`` owns launching (``tenantsvc_process.TenantsvcProcess``, ``processes.ChildProcesses``),
HTTP answers (``http.HttpAnswer``, ``raw_get``), metric reading (``metrics``, prometheus_client's parser)
and /proc readings. Here: tenantsvc started the way the benchmarks measure it (``start_tenantsvc``), the
replaying baseline and a throwaway Redis, wrk (run, parsed, with the server's CPU per request and the CPU
the rest of the machine used meanwhile), and ``run_guarded``/``write_results`` (children always stopped,
results as JSON). Importing this module makes the repository importable (``tests.support``, ``tenantsvc``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.http import HttpAnswer, raw_get as http_get  # noqa: E402
from tests.support.metrics import Series, sample_delta as metric_delta, sample_value as gauge  # noqa: E402,F401
from tests.support.metrics import scraped_samples  # noqa: E402
from tests.support.processes import ChildProcesses as Children, cpu_ticks, free_port  # noqa: E402,F401
from tests.support.processes import status_kib as proc_status_kib  # noqa: E402
from tests.support.tenantsvc_process import TenantsvcProcess, twistd_command  # noqa: E402

RawResponse = HttpAnswer  # a response captured by ``http_get`` (headers in wire order, size on the wire)
RESULTS_DIR = REPO / "bench" / "results"
BASELINE_SERVER = REPO / "bench" / "baseline_server.py"
LOAD_THEME = "/demo/api/public/load-theme"
# Variables that would point the benchmarked process somewhere other than the embedded default, or change
# what is measured. The tenant-scale scenarios set some of them again explicitly.
SCRUBBED_ENV = ("DATABASE_URL", "REDIS_URL", "PROCESS_TYPE", "PORT", "LOG_FILE", "ENVIRONMENT", "ADMIN_TOKEN",
                "PGBOUNCER_ADMIN_URL", "TRUSTED_PROXY_HEADER", "MAX_BODY_BYTES")
SCRUBBED_PREFIXES = ("THEME_", "RATE_LIMIT_", "DB_", "REDIS_", "ACCESS_LOG_", "SESSION_")
# The public routes are rate limited per tenant (100 requests, then 2/s, by default). One tenant loaded
# at thousands of requests a second would be over the limit after 0.1 s and get the limited answer (200,
# X-Rate-Limited, a shorter Cache-Control) instead of the warm hit. The limiter still runs on every
# request, with a bucket that never empties: its cost is measured, its verdict does not change the answer.
UNLIMITED_PUBLIC = {"RATE_LIMIT_PUBLIC": "1000000000/1000000000"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
MIB = 1024  # KiB per MiB

class BenchError(RuntimeError):
    """The benchmark cannot go on (a server did not start, wrk failed, …); the message says why."""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------------
# Environment, waiting, /proc


def ensure_wrk() -> str:
    """Return the path of ``wrk``, installing it with apt-get (non-interactively) if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print(f"{Path(sys.argv[0]).stem}: wrk is missing; installing it with apt-get", flush=True)
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


def pinning(server_cpu: int, load_cpu: int, load_name: str = "wrk") -> tuple[list[str], list[str], str]:
    """The ``taskset`` prefixes for the server and for the load (``load_name``), plus a note; no pinning if
    it is impossible. Shared by the bench scripts."""
    taskset = shutil.which("taskset")
    allowed = os.sched_getaffinity(0)
    if taskset is None:
        return [], [], "taskset not found: processes are not pinned"
    if server_cpu == load_cpu or not {server_cpu, load_cpu} <= allowed:
        return [], [], (f"CPUs {server_cpu} and {load_cpu} are not two distinct usable CPUs "
                        f"(usable: {sorted(allowed)}): processes are not pinned")
    return ([taskset, "-c", str(server_cpu)], [taskset, "-c", str(load_cpu)],
            f"server on CPU {server_cpu}, {load_name} on CPU {load_cpu}")


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, logs: list[Path],
               timeout_s: float = START_TIMEOUT_S, poll_s: float = 0.1) -> None:
    """Poll ``check()`` until it is true; fail early if ``proc`` exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} before it was ready\n{log_tails(logs)}")
        try:
            if check():
                return
        except (OSError, BenchError, ValueError, IndexError):
            pass
        time.sleep(poll_s)
    raise BenchError(f"{what} was not ready after {timeout_s:.0f}s\n{log_tails(logs)}")


def log_tails(paths: list[Path], lines: int = 8, width: int = 400) -> str:
    """The last lines of each log file, to explain why a child process failed."""
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


def peak_rss_kib(pid: int) -> int | None:
    """The process's peak resident set size (VmHWM) in KiB, if /proc has it."""
    return proc_status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (``/proc/PID/clear_refs``, Linux 4.0+); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def mib(kib: int | None) -> float | None:
    """KiB → MiB, one decimal."""
    return round(kib / MIB, 1) if kib is not None else None


def scrape_metrics(port: int) -> dict[Series, float]:
    """Every sample of ``/metrics`` (``*_created`` series left out), keyed by name and sorted labels."""
    response = http_get(port, "/metrics", timeout_s=10.0)
    if response.status != 200:
        raise BenchError(f"/metrics answered {response.status}")
    return scraped_samples(response.body.decode("utf-8", errors="replace"))


# --------------------------------------------------------------------------------------------------
# The servers


@dataclass
class Server:
    """A started server: its process, port and where its output goes."""

    name: str
    proc: subprocess.Popen
    port: int
    logs: list[Path]
    log_file: Path | None = None
    ready_after_s: float | None = None  # from spawn to ready (demo theme cached, or /readyz 200)


def tenantsvc_env(log_file: Path, env_extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment minus everything that would change what is measured, logging to ``log_file``, with
    the public rate limit out of reach, plus ``env_extra`` (a ``PYTHONPATH`` there replaces the repository: ``--code-dir``)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV and not k.startswith(SCRUBBED_PREFIXES)}
    env.update(UNLIMITED_PUBLIC)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["LOG_FILE"] = str(log_file)
    env.update(env_extra or {})
    return env


def start_tenantsvc(children: Children, python: str, cwd: Path, pin: list[str], *,
                    env_extra: dict[str, str] | None = None, wait_for: str | Callable[[int], bool] = "demo_hit",
                    args: Sequence[str] = ("--demo",), env: dict[str, str] | None = None) -> Server:
    """Start ``twistd -n tenantsvc *args`` (default ``--demo``: embedded SQLite in ``cwd``) and wait until ready.

    The environment is ``env`` as given, or ``tenantsvc_env`` (logging to a file in ``cwd``) plus
    ``env_extra``. ``wait_for="demo_hit"``: until load-theme answers with ``Cache-Status: tenantsvc; hit``
    (until the first warm has run it answers with the default palette, which is not what the baseline
    should replay); ``"readyz"``: until ``/readyz`` answers 200; or a callable given the port.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    port = free_port()  # chosen here, not read from the log: a --code-dir tree may log differently
    env = dict(env) if env is not None else tenantsvc_env(cwd / "tenantsvc.json", env_extra)
    spawned = time.monotonic()
    process = TenantsvcProcess(cwd, [*args, "--listen", f"tcp:{port}:interface=127.0.0.1"], env,
                               twistd_command(python, pin), own_session=True, start_timeout_s=START_TIMEOUT_S)
    children.adopt(process.process)
    log_file = Path(env["LOG_FILE"]) if env.get("LOG_FILE") else None
    server = Server("tenantsvc", process.process, port, [process.stderr_path, process.stdout_path]
                    + ([log_file] if log_file else []), log_file)
    checks: dict[str, Callable[[int], bool]] = {
        "demo_hit": lambda p: "hit" in (http_get(p, LOAD_THEME).header("cache-status") or ""),
        "readyz": lambda p: http_get(p, "/readyz").status == 200}
    check = checks[wait_for] if isinstance(wait_for, str) else wait_for
    process.port = port
    try:
        process.wait_until_ready(lambda: check(port), f"tenantsvc to be ready ({wait_for})")
    except (AssertionError, TimeoutError) as error:
        raise BenchError(f"{error}\n{log_tails(server.logs)}") from None
    server.ready_after_s = round(time.monotonic() - spawned, 2)
    return server


def stop_tenantsvc(children: Children, server: Server) -> int | None:
    """SIGTERM tenantsvc (it drains and exits); report an unclean exit."""
    code = children.stop(server.proc)
    if code not in (0, None, -signal.SIGTERM):  # plain twistd re-raises SIGTERM after a clean stop
        print(f"{Path(sys.argv[0]).stem}: tenantsvc exited with code {code} on SIGTERM", flush=True)
    return code


def start_baseline(children: Children, python: str, workdir: Path, pin: list[str], spec_path: Path) -> Server:
    """Start the replaying twisted.web baseline and wait until it answers."""
    port = free_port()
    argv = pin + [python, str(BASELINE_SERVER), "--spec", str(spec_path), "--port", str(port)]
    stdout, stderr = workdir / "baseline.stdout", workdir / "baseline.stderr"
    spawned = time.monotonic()
    proc = children.start(argv, cwd=workdir, env=dict(os.environ), stdout=stdout, stderr=stderr)
    server = Server("baseline", proc, port, [stderr, stdout])
    wait_until(lambda: http_get(port, "/").status > 0, proc, "baseline server", server.logs)
    server.ready_after_s = round(time.monotonic() - spawned, 2)
    return server


def start_redis(children: Children, redis_server: str, workdir: Path, pin: list[str]) -> tuple[subprocess.Popen, int]:
    """A throwaway redis-server on a free loopback port, without persistence; returns it and its port."""
    port = free_port()
    directory = workdir / "redis"
    directory.mkdir(exist_ok=True)
    argv = pin + [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                  "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(directory)]
    logs = [directory / "redis.stdout", directory / "redis.stderr"]
    proc = children.start(argv, cwd=directory, env=dict(os.environ), stdout=logs[0], stderr=logs[1])

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    wait_until(pong, proc, "redis-server", logs, timeout_s=15.0)
    return proc, port


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
    bytes_per_response: float | None = None  # wrk's total read ÷ requests (wrk rounds the total to 0.01 unit)
    server_cpu_us_per_request: float | None = None
    other_cpu_pct: float | None = None  # CPU used by everything but the server and wrk (100 = one CPU)
    steal_pct: float | None = None  # time the hypervisor gave our vCPUs to someone else (100 = one CPU)
    raw: str = field(default="", repr=False)


_UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
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
    total = re.search(r"^\s+(\d+) requests in [^,]+, ([\d.]+)([KMGT]?B) read", output, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot parse wrk output:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_to_ms(p50.group(1)),
        p99_ms=_to_ms(p99.group(1)),
        requests=int(total.group(1)),
        bytes_per_response=round(float(total.group(2)) * _UNITS_BYTES[total.group(3)] / int(total.group(1)), 1)
        if int(total.group(1)) else None,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        raw=output,
    )


@dataclass(frozen=True)
class Load:
    """What wrk sends: a path (with extra headers), or a Lua script and its arguments."""

    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    script: Path | None = None
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class WrkSettings:
    """wrk's binary, CPU pinning and shape (threads, connections)."""

    wrk: str
    pin: list[str]
    connections: int
    threads: int
    workdir: Path


def run_wrk(children: Children, settings: WrkSettings, server: Server, load: Load, duration_s: int) -> WrkResult:
    """Load ``server`` with wrk for ``duration_s`` and measure server CPU per request."""
    argv = settings.pin + [settings.wrk, f"-t{settings.threads}", f"-c{settings.connections}", f"-d{duration_s}s",
                           "--latency"]
    for name, value in load.headers:
        argv += ["-H", f"{name}: {value}"]
    if load.script is not None:
        argv += ["-s", str(load.script)]
    argv.append(f"http://127.0.0.1:{server.port}{load.path}")
    if load.script_args:
        argv += ["--", *load.script_args]
    output = settings.workdir / "wrk.out"
    output.write_bytes(b"")
    before = cpu_ticks(server.proc.pid)
    machine_before, children_before, started = _machine_ticks(), _children_cpu_s(), time.monotonic()
    proc = children.start(argv, cwd=settings.workdir, env=dict(os.environ), stdout=output, stderr=output)
    try:
        proc.wait(duration_s + 30)
    except subprocess.TimeoutExpired:
        children.stop(proc)
        raise BenchError(f"wrk did not finish within {duration_s + 30}s") from None
    children.stop(proc)
    after = cpu_ticks(server.proc.pid)
    machine_after, children_after, elapsed = _machine_ticks(), _children_cpu_s(), time.monotonic() - started
    text = output.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with code {proc.returncode}:\n{text}")
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name} died under load (exit {server.proc.returncode})\n{log_tails(server.logs)}")
    result = parse_wrk(text)
    tick = os.sysconf("SC_CLK_TCK")
    if before is not None and after is not None and result.requests:
        result.server_cpu_us_per_request = round((after - before) / tick * 1e6 / result.requests, 1)
    if before is not None and after is not None and machine_before and machine_after and elapsed > 0:
        busy = (machine_after[0] - machine_before[0]) / tick
        other = busy - (after - before) / tick - (children_after - children_before)
        result.other_cpu_pct = round(max(other, 0.0) / elapsed * 100, 1)
        result.steal_pct = round((machine_after[1] - machine_before[1]) / tick / elapsed * 100, 1)
    return result


def _machine_ticks() -> tuple[int, int] | None:
    """All CPUs' busy ticks (user, nice, system, irq, softirq) and stolen ticks, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return values[0] + values[1] + values[2] + values[5] + values[6], values[7]
    except (OSError, ValueError, IndexError):
        return None


def _children_cpu_s() -> float:
    """CPU seconds of this script's reaped children (wrk is reaped at the end of its run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------
# Running a bench script


def run_guarded(name: str, keep_temp: bool, body: Callable[[Children, Path], int]) -> int:
    """Run ``body(children, workdir)`` for the script ``name``; whatever happens, stop the children it
    started and remove ``workdir`` (unless ``keep_temp``). SIGINT/SIGTERM/SIGHUP interrupt it (exit 130);
    a ``BenchError`` is one line on stderr (exit 1). Shared by the bench scripts.
    """
    children = Children()
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in stop_signals}
    workdir = Path(tempfile.mkdtemp(prefix=f"{name.replace('_', '-')}-"))
    try:
        return body(children, workdir)
    except BenchError as error:
        sys.stderr.write(f"{name}: {error}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{name}: interrupted; stopping children\n")
        return 130
    finally:
        for sig in stop_signals:  # a second Ctrl-C must not cut the clean-up short (it is bounded)
            signal.signal(sig, signal.SIG_IGN)
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keep_temp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def write_results(document: dict[str, Any], results_dir: Path, prefix: str) -> Path:
    """Write ``document`` as ``<results_dir>/<prefix>-<measured_at>.json`` and say where."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = document["measured_at"].replace("-", "").replace(":", "")
    target = results_dir / f"{prefix}-{stamp}.json"
    target.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results written to {target}")
    return target


def run_bench(name: str, args: Any, measure: Callable[[Any, Children, Path], dict[str, Any]],
              print_report: Callable[[dict[str, Any]], None],
              exit_status: Callable[[dict[str, Any]], int] = lambda document: 0) -> int:
    """The ``main`` of a bench script: ``measure(args, children, workdir)`` under ``run_guarded``, then print
    the report and write ``<args.results_dir>/<name with dashes>-<timestamp>.json``; the exit status is
    ``exit_status(document)`` (0: it measured, whatever the figures say)."""

    def run(children: Children, workdir: Path) -> int:
        """One guarded measurement."""
        document = measure(args, children, workdir)
        print_report(document)
        write_results(document, args.results_dir, name.replace("_", "-"))
        return exit_status(document)

    return run_guarded(name, args.keep_temp, run)


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of ``doc``, with the options every server bench has:
    ``--code-dir`` (run the server from another source tree), ``--python``, ``--results-dir``, ``--keep-temp``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--code-dir", default="", help="run the server from this source tree (default: this one)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-temp", action="store_true")
    return parser


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> list[str]:
    """Aligned lines of a table with a rule under ``header``: the first ``left`` columns flush left, the rest right."""
    lines = [tuple(header), *rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("  ".join(str(cell).ljust(widths[j]) if j < left else str(cell).rjust(widths[j])
                             for j, cell in enumerate(line)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def machine_info(**versions: str | None) -> dict[str, Any]:
    """Where the figures were measured, for the results file: CPU model and count, kernel, Python, the commit
    (noting uncommitted changes under ``tenantsvc/``), plus ``versions`` (twisted, wrk, …)."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "tenantsvc"],
                                capture_output=True, text=True).stdout.strip())
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), **versions,
            "commit": commit + ("+uncommitted tenantsvc changes" if dirty else "")}
