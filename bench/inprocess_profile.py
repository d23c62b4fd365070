"""Per-request CPU of the public theme path inside one process, without wrk or sockets: tenantsvc built as
``twistd tenantsvc --demo`` builds it, fed over in-memory transports, beside the baseline's replaying resource
(batches alternating); CPU is ``time.process_time()``. bench/README.md says how to read it."""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_server import QuietSite, Replay, ReplayResource  # noqa: E402
from runner import BROWSER_HEADERS, LOAD_THEME, replay_entry, tenantsvc_env  # noqa: E402

from tests.support.http import parse_response  # noqa: E402


def request_bytes(scenario: str, etag: str) -> bytes:
    """What wrk sends: the request line, ``Host`` and, for the 304, ``If-None-Match`` (for ``browser``, what a
    browser's fetch adds)."""
    extra = {"304": [("If-None-Match", etag)], "browser": BROWSER_HEADERS}.get(scenario, [])
    lines = "".join(f"{name}: {value}\r\n" for name, value in extra)
    return f"GET {LOAD_THEME} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{lines}\r\n".encode("latin-1")


def build_tenantsvc(reactor: Any, workdir: Path, overrides: dict[str, str]) -> tuple[Any, Any]:
    """The service tree ``twistd tenantsvc --demo`` builds, started, with the bench's environment; (service, site)."""
    from tenantsvc.config import load_settings
    from tenantsvc.service import build_service

    os.chdir(workdir)
    env = tenantsvc_env(workdir / "tenantsvc.json", DATABASE_URL=f"sqlite:///{workdir / 'tenantsvc.sqlite3'}", **overrides)
    built = build_service(load_settings(env, role=None, listen="tcp:0:interface=127.0.0.1", demo=True), reactor)
    built.service.startService()
    return built.service, built.web.site


class Connections:
    """``count`` keep-alive HTTP connections to ``site`` over in-memory transports."""

    def __init__(self, site: Any, count: int):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.channels = []
        for port in range(count):
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + port))
            channel = site.buildProtocol(transport.getPeer())
            channel.makeConnection(transport)
            self.channels.append((channel, transport))

    def send(self, n: int, data: bytes) -> int:
        """Send ``n`` requests round-robin; the response bytes received."""
        received, channels = 0, self.channels
        for i in range(n):
            channel, transport = channels[i % len(channels)]
            channel.dataReceived(data)
            received += len(transport.io.getvalue())
            transport.io.seek(0)
            transport.io.truncate()
        return received

    def close(self) -> None:
        """Close every connection, as wrk does at the end of a run."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        for channel, _ in self.channels:
            channel.connectionLost(Failure(ConnectionDone()))


def one_response(site: Any, data: bytes) -> bytes:
    """The raw bytes of one response."""
    connection = Connections(site, 1)
    connection.channels[0][0].dataReceived(data)
    raw = connection.channels[0][1].io.getvalue()
    connection.close()
    return raw


def replay_site(site: Any) -> tuple[Any, str]:
    """The baseline's replaying Site for tenantsvc's load-theme 200 and 304, and the ETag."""
    fresh = parse_response(one_response(site, request_bytes("warm", "")))
    etag = fresh.header("etag") or ""
    not_modified = parse_response(one_response(site, request_bytes("304", etag)))
    entry = replay_entry(fresh, if_none_match=replay_entry(not_modified, etag=etag))
    return QuietSite(ReplayResource(Replay({"routes": {LOAD_THEME: entry}}))), etag


def run(args: argparse.Namespace) -> None:
    """Build both servers, then time alternating batches on the real reactor (cProfile on tenantsvc's last)."""
    from twisted.internet import reactor

    workdir = Path(tempfile.mkdtemp(prefix="tenantsvc-inprocess-"))
    state: dict[str, Any] = {"batch": 0, "tenantsvc": [], "baseline": []}

    def timed(site: Any, data: bytes, profiler: Any = None) -> float:
        connections = Connections(site, args.connections)
        started = time.process_time()
        if profiler:
            profiler.enable()
        connections.send(args.requests, data)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started
        connections.close()
        return cpu / args.requests * 1e6

    def wait_for_theme() -> None:
        if b"tenantsvc; hit" not in one_response(state["site"], request_bytes("warm", "")):
            reactor.callLater(0.05, wait_for_theme)
            return
        state["baseline_site"], state["etag"] = replay_site(state["site"])
        reactor.callLater(0.5, batch)  # after freeze_start_up_heap

    def batch() -> None:
        data, number = request_bytes(args.scenario, state["etag"]), state["batch"]
        profiler = cProfile.Profile() if args.profile and number == args.batches - 1 else None
        for name in ("baseline", "tenantsvc") if number % 2 == 0 else ("tenantsvc", "baseline"):
            site = state["baseline_site" if name == "baseline" else "site"]
            state[name].append(timed(site, data, profiler if name == "tenantsvc" else None))
        t, b = state["tenantsvc"][-1], state["baseline"][-1]
        print(f"batch {number:2d}: tenantsvc {t:6.1f} µs/req  baseline {b:6.1f} µs/req  extra {t - b:5.1f} µs  "
              f"gc objects {len(gc.get_objects())}", flush=True)
        if profiler:
            stats = pstats.Stats(profiler)
            if args.profile_out:
                stats.dump_stats(args.profile_out)
            stats.sort_stats("tottime").print_stats(args.profile_lines)
        state["batch"] += 1
        reactor.callLater(args.idle, batch) if state["batch"] < args.batches else finish()

    def finish() -> None:
        medians = {name: statistics.median(state[name]) for name in ("tenantsvc", "baseline")}
        extra = statistics.median(t - b for t, b in zip(state["tenantsvc"], state["baseline"]))
        print(f"{args.scenario}: tenantsvc median {medians['tenantsvc']:.1f} µs/req (first {state['tenantsvc'][0]:.1f}, "
              f"last {state['tenantsvc'][-1]:.1f}), baseline {medians['baseline']:.1f}; tenantsvc's extra per pair: "
              f"median {extra:.1f} µs", flush=True)
        state["service"].stopService().addBoth(lambda _: reactor.stop())

    def start() -> None:  # the baseline replays this process's own tenantsvc answers
        state["service"], state["site"] = build_tenantsvc(reactor, workdir, dict(e.split("=", 1) for e in args.env))
        reactor.callLater(0.05, wait_for_theme)

    reactor.callWhenRunning(start)
    try:
        reactor.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("warm", "304", "browser"), default="warm")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--idle", type=float, default=0.2, help="seconds the reactor runs between batches")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for tenantsvc (e.g. ACCESS_LOG_SAMPLE_RATE=0); repeatable")
    parser.add_argument("--profile", action="store_true", help="cProfile tenantsvc's last batch")
    parser.add_argument("--profile-lines", type=int, default=35)
    parser.add_argument("--profile-out", help="also write the profile (pstats) to this file")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
