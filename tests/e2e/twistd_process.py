"""Real ``twistd -n tenantsvc`` processes for the end-to-end tests, and urllib to drive them over loopback HTTP.

Each process runs in its own temp directory (so the embedded SQLite file lands there) with a minimal
environment: ``PYTHONPATH`` pointing at the repository (which also makes the twistd plugin visible)
and ``ADMIN_TOKEN``; nothing is inherited that could point it at a real database. The web listener
binds ``tcp:0`` on 127.0.0.1 and the test reads the chosen port from the process's own eliot log, so
two tests can never race for a port. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Mapping

from tests.support.processes import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# ``python -m twisted`` is ``twist``, not ``twistd``: run twistd's entry point with this interpreter.
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
TWISTD_OPTIONS = ["-n", "--pidfile=", "--logger=tenantsvc.obs.logging.twisted_observer"]
ADMIN_TOKEN = "e2e-admin-token-0123456789"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0


def service_env(**overrides: str) -> dict[str, str]:
    """A minimal environment for a tenantsvc process (plus ``overrides``).

    ``DRAIN_PRESTOP_DELAY`` is 0 (no load balancer to wait for) unless a test sets it.
    """
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT),
            "ADMIN_TOKEN": ADMIN_TOKEN, "LANG": "C.UTF-8", "DRAIN_PRESTOP_DELAY": "0", **overrides}


def run_twistd(args: list[str], env: Mapping[str, str], cwd: Path,
               timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """Run a twistd command line to completion (for ``--help`` and start-up failures)."""
    return subprocess.run([*TWISTD, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout_s)


@dataclass(frozen=True)
class HttpAnswer:
    """One response read with urllib."""

    status: int
    headers: Message  # case-insensitive lookup, as HTTP header names are
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def http(method: str, url: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None) -> HttpAnswer:
    """Send one request over loopback and return the answer (4xx/5xx included, never raised)."""
    data = None if json_body is None else json.dumps(json_body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return HttpAnswer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, error.headers, error.read())


class TenantsvcProcess:
    """One ``twistd -n tenantsvc …`` subprocess with its stdout (eliot JSON lines) and stderr in files.

    ``launcher`` replaces the twistd command (``tests.e2e.reactor_blocker.LAUNCHER``: twistd plus a test-only
    way to block the reactor).
    """

    def __init__(self, workdir: Path, args: list[str], env: Mapping[str, str], launcher: list[str] = TWISTD):
        self.workdir = workdir
        self.stdout_path = workdir / "stdout.jsonl"
        self.stderr_path = workdir / "stderr.txt"
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen([*launcher, *TWISTD_OPTIONS, "tenantsvc", *args], env=dict(env),
                                            cwd=workdir, stdout=stdout, stderr=stderr)
        self.port: int | None = None

    def messages(self) -> list[dict[str, Any]]:
        """Every complete eliot message written to stdout so far."""
        text = self.stdout_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for_message(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first logged message matching ``predicate``, waiting (bounded) for it to be written."""
        found: list[dict[str, Any]] = []

        def logged() -> bool:
            """True once a matching message is on stdout; fails fast if the process died."""
            if self.process.poll() is not None:
                raise AssertionError(f"tenantsvc exited ({self.process.returncode}) before {what}: {self.stderr()}")
            found[:] = [message for message in self.messages() if predicate(message)][:1]
            return bool(found)

        wait_until(logged, what, timeout_s=START_TIMEOUT_S)
        return found[0]

    def wait_until_ready(self) -> None:
        """Wait for the listener (its port comes from the log), then for ``/readyz`` to answer 200."""
        self.port = self.listening_port("web")

        def ready() -> bool:
            """True when ``/readyz`` answers 200 (a refused connection is just not ready yet)."""
            try:
                return http("GET", self.url("/readyz")).status == 200
            except OSError:
                return False

        wait_until(ready, "/readyz to answer 200", timeout_s=START_TIMEOUT_S)

    def listening_port(self, listener: str) -> int:
        """The port the listener ``web`` (main) or ``ops`` (``OPS_LISTEN``) bound, from the log (bounded wait)."""
        listening = self.wait_for_message(lambda m: m.get("message_type") == "tenantsvc:web:listening"
                                          and m.get("listener", "web") == listener, f"the {listener} listener")
        return int(listening["port"])

    def url(self, path: str, port: int | None = None) -> str:
        """The URL of ``path`` on this process's main listener (or on ``port``, e.g. the operations listener)."""
        assert self.port is not None, "not listening (call wait_until_ready first)"
        return f"http://127.0.0.1:{port or self.port}{path}"

    def stderr(self) -> str:
        """Everything written to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def rss_kib(self) -> int:
        """The process's resident memory now (``VmRSS``), in KiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

    def terminate(self) -> int:
        """Send SIGTERM and wait (bounded) for the process to exit; return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        """Kill the process if it is still running (teardown of a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
