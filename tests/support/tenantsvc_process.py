"""The one launcher of real ``twistd -n tenantsvc`` processes, for the e2e and fault tests and for bench/.

Each process runs in its own directory (so the embedded SQLite file lands there) with the environment it
is given (``service_env`` for tests: ``PYTHONPATH`` pointing at the repository, which also makes the twistd
plugin visible, and ``ADMIN_TOKEN``; nothing inherited that could point it at a real database). The web
listener may bind ``tcp:0`` on 127.0.0.1: the port is read from the process's own eliot log (stdout, or
``LOG_FILE`` when the environment sets it), so two processes can never race for a port. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tests.support.http import http
from tests.support.processes import signal_group, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
TWISTD_CODE = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
TWISTD_OPTIONS = ["-n", "--pidfile=", "--logger=tenantsvc.obs.logging.twisted_observer"]
ADMIN_TOKEN = "e2e-admin-token-0123456789"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def twistd_command(python: str = sys.executable, prefix: Sequence[str] = ()) -> list[str]:
    """twistd's entry point run by ``python`` (``python -m twisted`` is ``twist``), after ``prefix`` (e.g. taskset)."""
    return [*prefix, python, "-c", TWISTD_CODE]


TWISTD = twistd_command()


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


class TenantsvcProcess:
    """One ``twistd -n tenantsvc …`` subprocess with its stdout (eliot JSON lines) and stderr in files.

    ``launcher`` replaces the twistd command (``twistd_command(python, taskset prefix)`` in bench;
    ``tests.e2e.reactor_blocker.LAUNCHER``: twistd plus a test-only way to block the reactor).
    ``own_session`` starts it in a new session, so ``terminate`` signals its whole process group.
    """

    def __init__(self, workdir: Path, args: list[str], env: Mapping[str, str], launcher: Sequence[str] = TWISTD, *,
                 own_session: bool = False, start_timeout_s: float = START_TIMEOUT_S):
        self.workdir = workdir
        self.stdout_path = workdir / "stdout.jsonl"
        self.stderr_path = workdir / "stderr.txt"
        self.log_path = Path(env["LOG_FILE"]) if env.get("LOG_FILE") else self.stdout_path
        self.own_session = own_session
        self.start_timeout_s = start_timeout_s
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen([*launcher, *TWISTD_OPTIONS, "tenantsvc", *args], env=dict(env),
                                            cwd=workdir, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                            start_new_session=own_session)
        self.port: int | None = None

    def messages(self) -> list[dict[str, Any]]:
        """Every complete eliot message written to the log so far."""
        try:
            text = self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(self, check: Callable[[], Any], what: str) -> None:
        """Wait (bounded) until ``check()`` is true; fail fast, with stderr, if the process exits first."""

        def done() -> bool:
            """``check()``, after making sure the process still runs."""
            if self.process.poll() is not None:
                raise AssertionError(f"tenantsvc exited ({self.process.returncode}) before {what}: {self.stderr()}")
            return bool(check())

        wait_until(done, what, timeout_s=self.start_timeout_s)

    def wait_for_message(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first logged message matching ``predicate``, waiting (bounded) for it to be written."""
        found: list[dict[str, Any]] = []

        def logged() -> bool:
            """True once a matching message is in the log."""
            found[:] = [message for message in self.messages() if predicate(message)][:1]
            return bool(found)

        self.wait_for(logged, what)
        return found[0]

    def wait_until_ready(self, ready: Callable[[], bool] | None = None, what: str = "/readyz to answer 200") -> None:
        """Wait for the listener (its port comes from the log unless ``port`` was set, for a fixed ``--listen``),
        then until ``ready()`` (default: ``/readyz`` 200). A refused connection or a broken answer is "not yet".
        """
        if self.port is None:
            self.port = self.listening_port("web")
        check = ready or (lambda: http("GET", self.url("/readyz")).status == 200)

        def answered() -> bool:
            """``check()``, with a connection error meaning not yet."""
            try:
                return check()
            except (OSError, ValueError):
                return False

        self.wait_for(answered, what)

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

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send SIGTERM (to the group with ``own_session``) and wait (bounded) for the exit; return its status."""
        if self.own_session:
            signal_group(self.process.pid, signal.SIGTERM)
        else:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """Kill the process if it is still running (teardown of a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
