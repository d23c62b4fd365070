"""Loopback HTTP clients that behave like attackers or like careful keep-alive clients (issue 11).

Used by ``tests/e2e/test_http_edge.py`` (quick, and at full scale under ``-m load``): raw sockets that
pipeline and never read, drip a request head, or send oversized heads; a keep-alive client that tells a clean
refusal (a NEW connection refused once the listener is closed) from a cut (reset or disconnect with a request
outstanding); a ``/readyz`` poller recording each change of answer; a ``/healthz`` prober timing each answer
during an attack. Every call has a timeout.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time

from tests.support.figures import quantile


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    """A new loopback connection to ``port``."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def pipelined_gets(path: str, count: int) -> bytes:
    """``count`` pipelined ``GET path`` requests in one byte string."""
    return (f"GET {path} HTTP/1.1\r\nHost: attacker\r\n\r\n" * count).encode("ascii")


_TCP_ESTABLISHED = 1


def peer_closed(sock: socket.socket) -> bool:
    """True when the server has closed or reset ``sock``, found without reading from it (Linux ``TCP_INFO``
    state), so a never-reading client stays never-reading while it checks."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return state != _TCP_ESTABLISHED


def answer_to(port: int, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Everything the server sent back for ``request`` until it closed (b"" if it closed without a word)."""
    with connect(port, timeout_s) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError:
            pass
    return b"".join(chunks)


def healthz_ms(port: int, timeout_s: float = 10.0) -> float | None:
    """Milliseconds for ``GET /healthz`` on a new connection, or None when it failed or was not a 200."""
    began = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        connection.request("GET", "/healthz")
        ok = connection.getresponse().status == 200
        connection.close()
    except (OSError, http.client.HTTPException):
        return None
    return (time.monotonic() - began) * 1000 if ok else None


class KeepAliveClient(threading.Thread):
    """``GET path`` back to back on one keep-alive connection, reconnecting when the server says close.

    ``outcomes``: ``ok`` (a full 200), ``refused`` (a NEW connection refused: the listener is closed, which
    is clean; the client then stops), ``cut`` (reset or disconnected with a request outstanding, or a
    non-200: a client-visible failure), ``closes_announced`` (responses with ``Connection: close``).
    """

    def __init__(self, port: int, stop: threading.Event, path: str = "/healthz"):
        super().__init__(daemon=True)
        self._port, self._stop_event, self._path = port, stop, path
        self.outcomes = {"ok": 0, "refused": 0, "cut": 0, "closes_announced": 0}
        self.cuts: list[str] = []

    def run(self) -> None:
        """Loop until stopped or refused."""
        connection: http.client.HTTPConnection | None = None
        while not self._stop_event.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=10)
                try:
                    connection.connect()
                except ConnectionRefusedError:
                    self.outcomes["refused"] += 1
                    return
            try:
                connection.request("GET", self._path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                self.outcomes["cut"] += 1
                self.cuts.append(error.__class__.__name__)
                connection.close()
                connection = None
                continue
            self.outcomes["ok" if response.status == 200 else "cut"] += 1
            if response.will_close:  # Connection: close: this connection is done, the next request opens one
                self.outcomes["closes_announced"] += 1
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


class ReadinessWatcher(threading.Thread):
    """``GET /readyz`` on a new connection every ``interval_s``; ``changes`` lists (monotonic time, answer)
    at each change: a status code, ``refused`` (then it stops) or ``error:<exception>``."""

    def __init__(self, port: int, stop: threading.Event, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self._port, self._stop_event, self._interval_s = port, stop, interval_s
        self.changes: list[tuple[float, str]] = []

    def run(self) -> None:
        """Poll until stopped or refused."""
        while not self._stop_event.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=5)
                connection.request("GET", "/readyz")
                state = str(connection.getresponse().status)
                connection.close()
            except ConnectionRefusedError:
                state = "refused"
            except (OSError, http.client.HTTPException) as error:
                state = f"error:{error.__class__.__name__}"
            if not self.changes or self.changes[-1][1] != state:
                self.changes.append((time.monotonic(), state))
            if state == "refused":
                return
            self._stop_event.wait(self._interval_s)

    @property
    def sequence(self) -> list[str]:
        """The answers in the order they changed (e.g. ``["200", "503", "refused"]``)."""
        return [state for _, state in self.changes]


class HealthzProbe(threading.Thread):
    """``healthz_ms`` on a new connection every ``interval_s`` until ``stop``; ``figures()`` sums them up."""

    def __init__(self, port: int, stop: threading.Event, interval_s: float):
        super().__init__(daemon=True)
        self._port, self._stop_event, self._interval_s = port, stop, interval_s
        self.latencies_ms: list[float | None] = []

    def run(self) -> None:
        """Probe until stopped."""
        while not self._stop_event.wait(self._interval_s):
            self.latencies_ms.append(healthz_ms(self._port))

    def figures(self) -> str:
        """Probes, failures, and the median, p99 and max latency of the answered ones."""
        answered = sorted(v for v in self.latencies_ms if v is not None)
        failed = len(self.latencies_ms) - len(answered)
        if not answered:
            return f"{len(self.latencies_ms)} /healthz probes, {failed} failed"
        return (f"{len(self.latencies_ms)} /healthz probes, {failed} failed, median {statistics.median(answered):.1f}"
                f" ms, p99 {quantile(answered, 0.99):.1f} ms, max {answered[-1]:.1f} ms")
