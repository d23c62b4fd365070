"""Process plumbing shared by the throwaway servers, the e2e tests and bench: free ports, owned temp dirs,
supervised child processes, signals, /proc readings and polling.

``initdb``, ``postgres`` and ``pgbouncer`` refuse to run as root, and CI runs as root, so commands for
those servers go through ``as_service_user`` (``runuser -u postgres --`` when we are root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

SERVICE_USER = "postgres"
READY_TIMEOUT_S = 30.0


def is_root() -> bool:
    """True when this process runs as root (then servers are started as ``SERVICE_USER``)."""
    return os.geteuid() == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_service_user(argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run as ``SERVICE_USER`` when we are root, unchanged otherwise."""
    if is_root():
        return ["runuser", "-u", SERVICE_USER, "--", *argv]
    return list(argv)


def owned_temp_dir(prefix: str) -> str:
    """A new temp directory the servers' user owns.

    As root it goes under /tmp, which that user can traverse whatever ``TMPDIR`` says.
    """
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp" if is_root() else None)
    if is_root():
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def remove_dir(path: str) -> None:
    """Delete a server's temp directory, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)


def run_checked(argv: Sequence[str], what: str, timeout_s: float = 60.0) -> None:
    """Run a short command; raise with its output if it fails."""
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}\n{result.stderr}")


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S,
               interval_s: float = 0.05) -> None:
    """Poll ``predicate`` until it is true (fixture set-up only); raise ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def accepts_connections(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields after it are space separated.
    return text[text.rindex(")") + 2:].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` (every thread) in clock ticks, or None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/PID/status`` size in KiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident); None if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (R, S, T, Z…), or None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[0]


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return process_state(pid) not in (None, "Z", "X")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first, then their children…)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = parents.get(frontier.pop(0), [])
        found.extend(children)
        frontier.extend(children)
    return found


def signal_quietly(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``, ignoring a process that already exited."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def freeze_tree(pid: int) -> None:
    """SIGSTOP ``pid`` first (so it forks nothing new), then all its descendants; return once all are stopped."""
    signal_quietly(pid, signal.SIGSTOP)
    frozen = [pid, *descendants(pid)]
    for child in frozen[1:]:
        signal_quietly(child, signal.SIGSTOP)
    wait_until(lambda: all(process_state(p) in (None, "T", "t", "Z") for p in frozen),
               f"process tree of {pid} to stop", timeout_s=10)


def thaw_tree(pid: int) -> None:
    """SIGCONT the descendants of ``pid``, then ``pid`` itself (the reverse of ``freeze_tree``)."""
    for child in descendants(pid):
        signal_quietly(child, signal.SIGCONT)
    signal_quietly(pid, signal.SIGCONT)


def read_pid_file(path: str) -> int:
    """The pid on the first line of a pid file."""
    with open(path) as handle:
        return int(handle.readline().strip())


class DisposableServer:
    """Base of the throwaway servers whose ``stop()`` ends the process: ``close()`` also deletes ``base_dir``."""

    base_dir: str

    def stop(self) -> None:
        """Stop the server process (subclasses)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete its files."""
        try:
            self.stop()
        finally:
            remove_dir(self.base_dir)


class ChildProcesses:
    """Every child process started through it, each in its own session so it can be stopped as a group.

    ``stop_all()`` (in a ``finally``) stops whatever is still running: SIGTERM to the group, then SIGKILL.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], stdout: Path,
              stderr: Path) -> subprocess.Popen:
        """Start ``argv`` in a new session with its output appended to the given files."""
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        return self.adopt(proc)

    def adopt(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Track a process started elsewhere (in its own session) so ``stop_all`` stops it too."""
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the child's process group, wait up to ``timeout_s``, then SIGKILL it; return the exit code."""
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            signal_group(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child still tracked, newest first."""
        for proc in reversed(list(self._procs)):
            try:
                self.stop(proc, timeout_s=5.0)
            except Exception as error:  # cleanup must go on for the others
                sys.stderr.write(f"could not stop pid {proc.pid}: {error}\n")


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``, ignoring one that is already gone."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` to its current RSS (``/proc/PID/clear_refs``, Linux 4.0+); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
