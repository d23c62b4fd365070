"""Per-request CPU of the public theme path inside one process, without wrk or sockets: tenantsvc built as
``twistd tenantsvc --demo`` builds it, fed over in-memory transports, beside the baseline's replaying resource
(``--server both``, batches alternating); CPU is ``time.process_time()``. bench/README.md says how to read it."""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_server import QuietSite, Replay, ReplayResource  # noqa: E402
from runner import LOAD_THEME, replay_entry, tenantsvc_env  # noqa: E402

from tests.support.http import parse_response  # noqa: E402



def request_bytes(etag: str | None) -> bytes:
    """What wrk sends: the request line, ``Host`` and, for the 304, ``If-None-Match``."""
    extra = f"If-None-Match: {etag}\r\n" if etag else ""
    return f"GET {LOAD_THEME} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{extra}\r\n".encode("latin-1")


def build_tenantsvc(reactor: Any, workdir: Path, overrides: dict[str, str]) -> tuple[Any, Any]:
    """The service tree ``twistd tenantsvc --demo`` builds, started, with the bench's environment; (service, site)."""
    from tenantsvc.config import load_settings
    from tenantsvc.service import build_service

    os.chdir(workdir)
    env = tenantsvc_env(workdir / "tenantsvc.json", DATABASE_URL=f"sqlite:///{workdir / 'tenantsvc.sqlite3'}", **overrides)
    built = build_service(load_settings(env, role=None, listen="tcp:0:interface=127.0.0.1", demo=True), reactor)
    built.service.startService()
    return built.service, built.web.site


def ablate(site: Any, names: list[str]) -> None:
    """Switch parts of the per-request work off, to see what each costs (diagnosis only)."""
    from tenantsvc.core.token_bucket import decision_for
    from tenantsvc.services.rate_limiting import LocalRateLimiter
    from tenantsvc.services.theme_cache import ThemeCache
    from tenantsvc.web import public_theme

    for name in names:
        if name == "request-metrics":
            site.resource._metrics = type("NoMetrics", (), {"record_request": lambda *args: None})()
        elif name == "ratelimit":
            LocalRateLimiter.check = lambda self, keys, policy, n=1: decision_for(
                policy.levels[0].bucket, float(policy.levels[0].bucket.capacity) - 1, True)
        elif name == "ratelimit-headers":
            public_theme.RateLimitLines.__call__ = lambda self, decision: b""
        elif name == "cache-metrics":
            ThemeCache._respond = lambda self, answer: answer
            for cache in [o for o in gc.get_objects() if isinstance(o, ThemeCache)]:
                cache._hits = type("NoCounter", (), {"inc": lambda self: None})()
        elif name == "ids":
            site.resource._new_id = lambda: "0123456789abcdef0123456789abcdef"


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
    fresh = parse_response(one_response(site, request_bytes(None)))
    etag = fresh.header("etag") or ""
    not_modified = parse_response(one_response(site, request_bytes(etag)))
    entry = replay_entry(fresh, if_none_match=replay_entry(not_modified, etag=etag))
    return QuietSite(ReplayResource(Replay({"routes": {LOAD_THEME: entry}}))), etag


def run(args: argparse.Namespace) -> None:
    """Build the servers, then time the batches on the real reactor."""
    from twisted.internet import reactor

    workdir = Path(tempfile.mkdtemp(prefix="tenantsvc-inprocess-"))
    state: dict[str, Any] = {"batch": 0, "cpu": [], "base": []}
    timers = lambda: (f"timed={len(reactor._pendingTimedCalls)} new={len(reactor._newTimedCalls)} "  # noqa: E731
                      f"cancelled={reactor._cancellations}")

    def timed(site: Any, data: bytes, profiler: Any = None) -> tuple[float, int]:
        connections = Connections(site, args.connections)
        started = time.process_time()
        if profiler:
            profiler.enable()
        received = connections.send(args.requests, data)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started
        connections.close()
        return cpu / args.requests * 1e6, received

    def wait_for_theme() -> None:
        if b"tenantsvc; hit" not in one_response(state["tenantsvc"], request_bytes(None)):
            reactor.callLater(0.05, wait_for_theme)
            return
        state["baseline"], state["etag"] = replay_site(state["tenantsvc"])
        ablate(state["tenantsvc"], args.ablate)
        reactor.callLater(0.5, batch)  # after freeze_start_up_heap

    def batch() -> None:
        data = request_bytes(state["etag"] if args.scenario == "304" else None)
        if args.server == "both":  # the baseline first on even batches, second on odd ones
            for name in ("baseline", "tenantsvc") if state["batch"] % 2 == 0 else ("tenantsvc", "baseline"):
                state["base" if name == "baseline" else "cpu"].append(timed(state[name], data)[0])
            t, b = state["cpu"][-1], state["base"][-1]
            print(f"batch {state['batch']:2d}: tenantsvc {t:6.1f} µs/req  baseline {b:6.1f} µs/req  "
                  f"extra {t - b:5.1f} µs  {timers()}", flush=True)
        else:
            counts = [s["collections"] for s in gc.get_stats()]
            profiler = cProfile.Profile() if args.profile and state["batch"] == args.batches - 1 else None
            us, received = timed(state[args.server], data, profiler)
            state["cpu"].append(us)
            print(f"batch {state['batch']:2d}: {us:6.1f} µs/req  {received / args.requests:6.0f} B/resp  gc objects="
                  f"{len(gc.get_objects()):7d} frozen={gc.get_freeze_count():7d} collections(gen0,1,2)="
                  f"{[s['collections'] - c for s, c in zip(gc.get_stats(), counts)]} {timers()}", flush=True)
            if profiler:
                stats = pstats.Stats(profiler)
                if args.profile_out:
                    stats.dump_stats(args.profile_out)
                stats.sort_stats("tottime").print_stats(args.profile_lines)
        state["batch"] += 1
        reactor.callLater(args.idle if state["batch"] < args.batches else 0,
                          batch if state["batch"] < args.batches else finish)

    def finish() -> None:
        cpu = sorted(state["cpu"])
        print(f"{args.server} {args.scenario}: median {cpu[len(cpu) // 2]:.1f} µs/req, min {cpu[0]:.1f}, "
              f"first {state['cpu'][0]:.1f}, last {state['cpu'][-1]:.1f}", flush=True)
        if state["base"]:
            base, extra = sorted(state["base"]), sorted(t - b for t, b in zip(state["cpu"], state["base"]))
            print(f"baseline: median {base[len(base) // 2]:.1f} µs/req, min {base[0]:.1f}; tenantsvc's extra "
                  f"per pair: median {extra[len(extra) // 2]:.1f} µs, min {extra[0]:.1f}", flush=True)
        state["service"].stopService().addBoth(lambda _: reactor.stop())

    def start() -> None:  # the baseline alone still replays this process's own tenantsvc answers
        state["service"], state["tenantsvc"] = build_tenantsvc(reactor, workdir, dict(e.split("=", 1) for e in args.env))
        reactor.callLater(0.05, wait_for_theme)

    reactor.callWhenRunning(start)
    try:
        reactor.run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("tenantsvc", "baseline", "both"), default="both",
                        help="both (default): tenantsvc and the baseline in this process, batches alternating")
    parser.add_argument("--scenario", choices=("warm", "304"), default="warm")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--idle", type=float, default=0.2, help="seconds the reactor runs between batches")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for tenantsvc (e.g. ACCESS_LOG_SAMPLE_RATE=0); repeatable")
    parser.add_argument("--ablate", action="append", default=[],
                        choices=("request-metrics", "ratelimit", "ratelimit-headers", "cache-metrics", "ids"),
                        help="switch one part of the per-request work off, to see its cost; repeatable")
    parser.add_argument("--profile", action="store_true", help="cProfile the last batch")
    parser.add_argument("--profile-lines", type=int, default=35)
    parser.add_argument("--profile-out", help="also write the profile (pstats) to this file")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
