"""A throwaway ``redis-server`` on a free loopback port that keeps nothing on disk.

Fault helpers: ``stop``/``start`` (same port again) and ``pause``/``resume`` (SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile

from tests.support.processes import DisposableServer, accepts_connections, free_port, freeze_tree, thaw_tree, wait_until


def _send_command(host: str, port: int, *words: str, timeout_s: float = 2.0) -> bytes:
    """Send one RESP command and return the first reply line (enough for PING/FLUSHALL)."""
    payload = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(word.encode())}\r\n".encode() + word.encode() + b"\r\n" for word in words)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        return sock.makefile("rb").readline().rstrip(b"\r\n")


class RedisServer(DisposableServer):
    """One redis-server process; ``url`` for ``REDIS_URL``; ``close()`` at the end."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (run scripts/setup)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base_dir = tempfile.mkdtemp(prefix="tenantsvc-redis-")
        self.log_file = os.path.join(self.base_dir, "redis.log")
        self._process: subprocess.Popen | None = None
        self._paused = False

    @property
    def url(self) -> str:
        """``REDIS_URL`` for this server (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, after ``stop``) and wait until it answers PING."""
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                 "--dir", self.base_dir, "--daemonize", "no", "--protected-mode", "yes"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self.ping, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        """True when the server answers PING with PONG."""
        if not accepts_connections(self.host, self.port):
            return False
        try:
            return _send_command(self.host, self.port, "PING") == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        """Delete every key in every database (tests call it to start clean)."""
        reply = _send_command(self.host, self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    @property
    def pid(self) -> int:
        """The server's pid (it must be running)."""
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        """Kill the server (SIGKILL: like a crash, nothing flushed) and wait for it to exit."""
        if self._process is None:
            return
        self.resume()
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients' commands hang instead of failing."""
        freeze_tree(self.pid)
        self._paused = True

    def resume(self) -> None:
        """Undo ``pause`` (SIGCONT); harmless when not paused."""
        if self._paused and self._process is not None:
            thaw_tree(self.pid)
        self._paused = False

