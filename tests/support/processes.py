"""Process plumbing shared by the throwaway servers: free ports, owned temp dirs, signals and polling.

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
import time
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
