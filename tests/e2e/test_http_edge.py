"""The HTTP edge against hostile clients and through a SIGTERM drain, on real ``twistd tenantsvc`` processes
(issue 11, items 1-3). Loopback only, bounded counts; every wait is a bounded poll of something observable.

Each attack runs at two scales. ``quick`` (every run): a few connections and short limits, seconds each.
``full`` (opt-in, ``pytest -m load tests/e2e/test_http_edge.py -s``, about 2 minutes): the figures the README
reports — 50 never-reading connections × 500 pipelined ``GET /metrics``, 200 slowloris connections at the
default 10 s header deadline, 300 connections from one address at the default cap of 256, and a SIGTERM
under ``wrk -c20`` beside 8 keep-alive clients. Bounds on memory are generous (the machine is shared): what
is asserted is behaviour — connections closed for the right reason and counted, answers given, nothing cut.
Each test prints a ``FIGURES`` line (``-s``).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from tests.support.tenantsvc_process import TenantsvcProcess, http, service_env
from tests.support.hostile_clients import (
    HealthzProbe, KeepAliveClient, ReadinessWatcher, answer_to, connect, healthz_ms, peer_closed, pipelined_gets,
)
from tests.support.figures import wrk_socket_errors
from tests.support.metrics import scraped_total
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

LISTEN = ("--listen", "tcp:0:interface=127.0.0.1")


@dataclass(frozen=True)
class Scale:
    """How hard each attack pushes, and the limits it pushes against."""

    pipeliners: int
    pipelined: int
    write_timeout_s: float
    slowloris: int
    drip_s: float
    header_timeout_s: float
    cap: int
    cap_connections: int
    keepalive_clients: int
    prestop_s: float
    wrk_connections: int = 0  # 0: no wrk beside the keep-alive clients


QUICK = Scale(pipeliners=10, pipelined=300, write_timeout_s=2, slowloris=20, drip_s=0.3, header_timeout_s=2, cap=5,
              cap_connections=7, keepalive_clients=6, prestop_s=1.5)
FULL = Scale(pipeliners=50, pipelined=500, write_timeout_s=5, slowloris=200, drip_s=2.0, header_timeout_s=10,
             cap=256, cap_connections=300, keepalive_clients=8, prestop_s=2.0, wrk_connections=20)


@pytest.fixture(params=[QUICK, pytest.param(FULL, marks=pytest.mark.load)], ids=["quick", "full"])
def scale(request: pytest.FixtureRequest) -> Scale:
    """The attack's size: quick on every run, full under ``-m load``."""
    return request.param


def start(start_tenantsvc, **env: str) -> TenantsvcProcess:
    return start_tenantsvc("--demo", *LISTEN, env=service_env(**env))


def closed_total(service: TenantsvcProcess, reason: str) -> float:
    return scraped_total(http("GET", service.url("/metrics")).body.decode(), "http_connections_closed_total",
                         reason=reason)


def all_closed(sockets: list[socket.socket]) -> bool:
    return all(peer_closed(sock) for sock in sockets)


def test_never_reading_pipeliners_are_bounded_aborted_and_counted_while_healthz_answers(start_tenantsvc, scale):
    service = start(start_tenantsvc, HTTP_WRITE_TIMEOUT=f"{scale.write_timeout_s:g}")
    rss_before = service.rss_kib()
    attackers = [connect(service.port) for _ in range(scale.pipeliners)]
    stop = threading.Event()
    probe = HealthzProbe(service.port, stop, interval_s=0.1)
    probe.start()
    for sock in attackers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10.0)
        sock.sendall(pipelined_gets("/metrics", scale.pipelined))
    began, peak = time.monotonic(), rss_before
    while not all_closed(attackers):
        assert time.monotonic() - began < scale.write_timeout_s + 60, "the never-reading connections were not aborted"
        peak = max(peak, service.rss_kib())
        time.sleep(0.2)
    stop.set()
    probe.join(15)
    assert probe.latencies_ms and None not in probe.latencies_ms, "every /healthz during the attack was answered"
    # Unbounded, the answers (~56 KiB each) would all be buffered: 10 × 300 of them ~160 MiB; bounded, a few MiB.
    assert (peak - rss_before) / 1024 < 48, f"RSS grew {(peak - rss_before) / 1024:.0f} MiB"
    assert closed_total(service, "peer_not_reading") == scale.pipeliners
    metrics_answers = scraped_total(http("GET", service.url("/metrics")).body.decode(), "http_requests_total",
                                    endpoint="/metrics")
    assert metrics_answers < scale.pipeliners * scale.pipelined  # the rest were never parsed
    for sock in attackers:
        sock.close()
    print(f"\nFIGURES {scale.pipeliners} × {scale.pipelined} pipelined GET /metrics, never read: all aborted after "
          f"{time.monotonic() - began:.1f} s; RSS {rss_before / 1024:.1f} → {peak / 1024:.1f} MiB (peak); "
          f"{metrics_answers:g} answered; {probe.figures()}")


def test_slowloris_heads_are_closed_at_the_header_deadline_and_counted(start_tenantsvc, scale):
    service = start(start_tenantsvc, HTTP_HEADER_TIMEOUT=f"{scale.header_timeout_s:g}")
    stop = threading.Event()
    probe = HealthzProbe(service.port, stop, interval_s=0.25)
    probe.start()
    opened = {}
    for _ in range(scale.slowloris):
        sock = connect(service.port)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        opened[sock] = time.monotonic()
    closed_after: list[float] = []
    while len(closed_after) < len(opened):
        assert time.monotonic() - min(opened.values()) < scale.header_timeout_s + 15, "slowloris connections still open"
        for sock, first in opened.items():
            if sock.fileno() == -1:
                continue
            try:
                if peer_closed(sock):
                    raise OSError
                sock.sendall(b"X-Drip: 1\r\n")  # a line at a time keeps Twisted's idle timer alive forever
            except OSError:
                closed_after.append(time.monotonic() - first)
                sock.close()
        time.sleep(scale.drip_s)
    stop.set()
    probe.join(15)
    assert min(closed_after) >= scale.header_timeout_s - 0.5  # not before the deadline
    assert closed_total(service, "header_deadline") == scale.slowloris
    assert healthz_ms(service.port) is not None and None not in probe.latencies_ms
    print(f"\nFIGURES {scale.slowloris} slowloris heads, a line every {scale.drip_s:g} s: all closed "
          f"{min(closed_after):.1f}–{max(closed_after):.1f} s after their first byte; {probe.figures()}")


def test_oversized_heads_get_json_431_or_414_and_the_connection_closes(start_tenantsvc):
    service = start(start_tenantsvc)
    cases = {b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20480 + b"\r\n\r\n": (431, "header_too_large"),
             b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%03d: %s\r\n" % (i, b"b" * 90) for i in range(170))
             + b"\r\n": (431, "header_too_large"),
             b"GET /healthz?" + b"q" * 17408 + b" HTTP/1.1\r\nHost: t\r\n\r\n": (414, "uri_too_long")}
    for request, (status, error) in cases.items():
        head, _, body = answer_to(service.port, request).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status) and b"Connection: close" in head, head[:200]
        assert json.loads(body)["error"] == error
    assert closed_total(service, "header_too_large") == 3


def test_connections_over_the_per_client_cap_get_429_json_and_are_counted(start_tenantsvc, scale):
    service = start(start_tenantsvc, HTTP_MAX_CONNECTIONS_PER_CLIENT=str(scale.cap))
    socks = [connect(service.port) for _ in range(scale.cap_connections)]
    over = scale.cap_connections - scale.cap
    wait_until(lambda: sum(map(peer_closed, socks)) == over, f"{over} connections over the cap to be closed", 10)
    refused = answer_to(service.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 429 ")
    assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"] == "too_many_connections"
    assert sum(map(peer_closed, socks)) == over, "the connections within the cap stayed open"
    for sock in socks:
        sock.close()
    wait_until(lambda: http("GET", service.url("/healthz")).status == 200, "a freed slot to be usable", 10)
    assert closed_total(service, "connection_cap") >= over + 1
    print(f"\nFIGURES {scale.cap_connections} idle connections from one address, cap {scale.cap}: "
          f"{scale.cap} accepted, {over} refused with 429 (and the one more after them)")


def test_sigterm_drain_shows_503_then_refuses_and_no_keep_alive_request_is_cut(start_tenantsvc, scale):
    service = start(start_tenantsvc, DRAIN_PRESTOP_DELAY=f"{scale.prestop_s:g}")
    stop = threading.Event()
    clients = [KeepAliveClient(service.port, stop) for _ in range(scale.keepalive_clients)]
    watcher = ReadinessWatcher(service.port, stop)
    for thread in (*clients, watcher):
        thread.start()
    wrk = wrk_on_healthz(service.port, scale) if scale.wrk_connections else None
    wait_until(lambda: all(client.outcomes["ok"] > 0 for client in clients) and watcher.sequence == ["200"],
               "every client served and /readyz seen at 200", 10)
    sigterm_at = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=scale.prestop_s + 20) == 0, service.stderr()
    exited_after_s = time.monotonic() - sigterm_at
    for thread in (*clients, watcher):
        thread.join(timeout=15)
    stop.set()
    assert watcher.sequence == ["200", "503", "refused"], watcher.changes
    became_503 = next(at for at, state in watcher.changes if state == "503")
    refused = next(at for at, state in watcher.changes if state == "refused")
    assert became_503 - sigterm_at < 1.0 <= refused - sigterm_at  # 503 at once, the listener open until pre-stop
    for client in clients:
        assert client.outcomes["cut"] == 0, (client.outcomes, client.cuts)
        assert client.outcomes["refused"] == 1  # each ended on a clean refusal of a NEW connection
        assert client.outcomes["closes_announced"] >= 1  # the drain told it to close
    drained = [m for m in service.messages() if m.get("message_type") == "tenantsvc:web:drained"]
    assert drained and drained[0]["aborted_connections"] == 0
    wrk_errors = wrk_socket_errors(wrk.communicate(timeout=60)[0]) if wrk else {}
    assert wrk_errors.get("read", 0) == 0, f"wrk saw answers cut: {wrk_errors}"
    beside = f" and wrk -c{scale.wrk_connections}" if wrk else ""
    answered = sum(c.outcomes["ok"] for c in clients)
    announced = sum(c.outcomes["closes_announced"] for c in clients)
    print(f"\nFIGURES SIGTERM with {len(clients)} keep-alive clients{beside}, DRAIN_PRESTOP_DELAY "
          f"{scale.prestop_s:g} s: /readyz 503 after {became_503 - sigterm_at:.2f} s, refused after "
          f"{refused - sigterm_at:.2f} s; exit 0 after {exited_after_s:.2f} s; {answered} full answers ({announced} "
          f"with Connection: close), 0 cut; wrk socket errors {wrk_errors or 'none'} (write: a refused connect)")


def wrk_on_healthz(port: int, scale: Scale) -> subprocess.Popen:
    """``wrk`` on ``/healthz`` through the drain, bounded by its duration (the pre-stop delay + 8 s)."""
    wrk = shutil.which("wrk")
    assert wrk, "wrk is missing: scripts/setup installs it"
    return subprocess.Popen([wrk, "-t1", f"-c{scale.wrk_connections}", f"-d{scale.prestop_s + 8:.0f}s",
                             f"http://127.0.0.1:{port}/healthz"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)




def test_a_bad_edge_setting_stops_start_up_with_one_clear_line(tmp_path):
    from tests.support.tenantsvc_process import run_twistd

    result = run_twistd(["-n", "--pidfile=", "tenantsvc", *LISTEN], service_env(HTTP_HEADER_TIMEOUT="soon"),
                        tmp_path)
    assert result.returncode == 2
    assert "configuration error: HTTP_HEADER_TIMEOUT must be a number of seconds" in result.stderr
