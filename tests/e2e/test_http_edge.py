"""The HTTP edge against hostile clients and through a SIGTERM drain, on real ``twistd tenantsvc`` processes
(issue 11, items 1-3). Loopback only, bounded counts; every wait is a bounded poll of something observable.

The attacks are scaled down from the bench (``bench/hostile_clients.py`` runs the full 50 × 500 and 200
connections) and the limits are set short, so each test takes seconds. Bounds on memory are generous
(the machine is shared): what is asserted is behaviour — connections closed for the right reason and
counted, answers given, nothing cut.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from tests.support.tenantsvc_process import TenantsvcProcess, http, service_env
from tests.support.hostile_clients import (
    KeepAliveClient, ReadinessWatcher, answer_to, connect, healthz_ms, peer_closed, pipelined_gets,
)
from tests.support.metrics import scraped_total
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

LISTEN = ("--listen", "tcp:0:interface=127.0.0.1")


def start(start_tenantsvc, **env: str) -> TenantsvcProcess:
    return start_tenantsvc("--demo", *LISTEN, env=service_env(**env))


def closed_total(service: TenantsvcProcess, reason: str) -> float:
    return scraped_total(http("GET", service.url("/metrics")).body.decode(), "http_connections_closed_total",
                         reason=reason)


def all_closed(sockets: list[socket.socket]) -> bool:
    return all(peer_closed(sock) for sock in sockets)


def test_never_reading_pipeliners_are_bounded_aborted_and_counted_while_healthz_answers(start_tenantsvc):
    service = start(start_tenantsvc, HTTP_WRITE_TIMEOUT="2")
    rss_before = service.rss_kib()
    attackers = [connect(service.port) for _ in range(10)]
    for sock in attackers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(pipelined_gets("/metrics", 300))
    assert healthz_ms(service.port, timeout_s=5.0) is not None  # answered during the attack
    peak = rss_before
    deadline = time.monotonic() + 60
    while not all_closed(attackers):
        assert time.monotonic() < deadline, "the never-reading connections were not aborted"
        peak = max(peak, service.rss_kib())
        time.sleep(0.2)
    # Unbounded, 10 × 300 answers of ~56 KiB would be ~160 MiB; bounded it is a few MiB (generous bound).
    assert (peak - rss_before) / 1024 < 48, f"RSS grew {(peak - rss_before) / 1024:.0f} MiB"
    assert closed_total(service, "peer_not_reading") == 10
    metrics_answers = scraped_total(http("GET", service.url("/metrics")).body.decode(), "http_requests_total",
                                    endpoint="/metrics")
    assert metrics_answers < 10 * 300  # the rest were never parsed


def test_slowloris_heads_are_closed_at_the_header_deadline_and_counted(start_tenantsvc):
    service = start(start_tenantsvc, HTTP_HEADER_TIMEOUT="2")
    dripping = [connect(service.port) for _ in range(20)]
    for sock in dripping:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    began = time.monotonic()
    open_now = list(dripping)
    while open_now:
        assert time.monotonic() - began < 15, f"{len(open_now)} slowloris connections still open"
        for sock in list(open_now):
            if peer_closed(sock):
                open_now.remove(sock)
                continue
            try:
                sock.setblocking(True)
                sock.sendall(b"X-Drip: 1\r\n")  # a line every 0.3 s would keep Twisted's idle timer alive forever
            except OSError:
                open_now.remove(sock)
        time.sleep(0.3)
    assert time.monotonic() - began >= 1.5  # not before the deadline
    assert closed_total(service, "header_deadline") == 20
    assert healthz_ms(service.port) is not None


def test_oversized_heads_get_json_431_or_414_and_the_connection_closes(start_tenantsvc):
    service = start(start_tenantsvc)
    long_line = answer_to(service.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20480 + b"\r\n\r\n")
    head, _, body = long_line.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"Connection: close" in head
    assert json.loads(body)["error"] == "header_too_large"
    long_uri = answer_to(service.port, b"GET /healthz?" + b"q" * 17408 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert long_uri.startswith(b"HTTP/1.1 414 ") and json.loads(long_uri.partition(b"\r\n\r\n")[2])["error"] == \
        "uri_too_long"
    assert closed_total(service, "header_too_large") == 2


def test_connections_over_the_per_client_cap_get_429_json_and_are_counted(start_tenantsvc):
    service = start(start_tenantsvc, HTTP_MAX_CONNECTIONS_PER_CLIENT="5")
    held = [connect(service.port) for _ in range(5)]
    extra = [connect(service.port) for _ in range(2)]
    wait_until(lambda: any(peer_closed(sock) for sock in extra), "a connection over the cap to be closed", 10)
    refused = answer_to(service.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 429 ")
    assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"] == "too_many_connections"
    for sock in held + extra:
        sock.close()
    wait_until(lambda: http("GET", service.url("/healthz")).status == 200, "a freed slot to be usable", 10)
    assert closed_total(service, "connection_cap") >= 2


def test_sigterm_drain_shows_503_then_refuses_and_no_keep_alive_request_is_cut(start_tenantsvc):
    service = start(start_tenantsvc, DRAIN_PRESTOP_DELAY="1.5")
    stop = threading.Event()
    clients = [KeepAliveClient(service.port, stop) for _ in range(6)]
    watcher = ReadinessWatcher(service.port, stop)
    for thread in (*clients, watcher):
        thread.start()
    wait_until(lambda: all(client.outcomes["ok"] > 0 for client in clients) and watcher.sequence == ["200"],
               "every client served and /readyz seen at 200", 10)
    sigterm_at = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=20) == 0, service.stderr()
    for thread in (*clients, watcher):
        thread.join(timeout=15)
    stop.set()
    assert watcher.sequence == ["200", "503", "refused"], watcher.changes
    became_503 = next(at for at, state in watcher.changes if state == "503")
    refused = next(at for at, state in watcher.changes if state == "refused")
    assert became_503 - sigterm_at < 1.0 <= refused - sigterm_at  # 503 at once, the listener open ~1.5 s more
    for client in clients:
        assert client.outcomes["cut"] == 0, (client.outcomes, client.cuts)
        assert client.outcomes["refused"] == 1  # each ended on a clean refusal of a NEW connection
        assert client.outcomes["closes_announced"] >= 1  # the drain told it to close
    drained = [m for m in service.messages() if m.get("message_type") == "tenantsvc:web:drained"]
    assert drained and drained[0]["aborted_connections"] == 0


def test_a_bad_edge_setting_stops_start_up_with_one_clear_line(tmp_path):
    from tests.support.tenantsvc_process import run_twistd

    result = run_twistd(["-n", "--pidfile=", "tenantsvc", *LISTEN], service_env(HTTP_HEADER_TIMEOUT="soon"),
                        tmp_path)
    assert result.returncode == 2
    assert "configuration error: HTTP_HEADER_TIMEOUT must be a number of seconds" in result.stderr
