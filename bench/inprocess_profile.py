"""Per-request CPU of the public theme path measured inside one process, without wrk or sockets.

``theme_bench.py`` measures over loopback with wrk, which on a shared 2-core machine is noisy. This
script builds the service exactly as ``twistd tenantsvc --demo`` does (``build_service`` on the real
epoll reactor, logging to a file, every production feature on) and feeds requests straight into the
``Site``'s ``HTTPChannel`` objects over in-memory transports (``StringTransport``), many connections
kept alive at once as wrk does. CPU is read with ``time.process_time()`` (all threads of this
process, so the log-writer thread counts), which other processes on the machine hardly disturb.

It runs ``--batches`` batches of ``--requests`` requests. Each batch opens ``--connections`` new
connections and closes them at its end (one wrk run), then lets the reactor run for ``--idle`` seconds
(timers, the log writer, loops). Per batch it prints CPU µs per request and what could grow inside a
long-lived process: live objects tracked by the GC, collections per generation, the reactor's timed
calls and cancellations. ``--server baseline`` serves the same bytes from ``baseline_server.py``'s
replaying resource instead (from the spec this script writes in the tenantsvc mode), for the ratio.

Run::

    .venv/bin/python bench/inprocess_profile.py [--server tenantsvc|baseline] [--scenario warm|304]
        [--batches 8] [--requests 20000] [--connections 50] [--idle 0.2] [--profile]

Like every script here, it is a measurement and asserts nothing (DESIGN.md §6).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

LOAD_THEME = b"/demo/api/public/load-theme"
SPEC = Path(tempfile.gettempdir()) / "tenantsvc-inprocess-spec.json"


def request_bytes(etag: bytes | None) -> bytes:
    """What wrk sends: the request line, ``Host`` and, for the 304, ``If-None-Match``."""
    extra = b"If-None-Match: " + etag + b"\r\n" if etag else b""
    return b"GET " + LOAD_THEME + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + extra + b"\r\n"


def production_env(workdir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The environment ``theme_bench.py`` gives tenantsvc (``harness.tenantsvc_env``), on a SQLite file here."""
    from harness import tenantsvc_env

    return tenantsvc_env(workdir / "tenantsvc.json", {"DATABASE_URL": f"sqlite:///{workdir / 'tenantsvc.sqlite3'}",
                                                      **overrides})


def build_tenantsvc(reactor: Any, workdir: Path, overrides: dict[str, str]) -> tuple[Any, Any]:
    """The service tree ``twistd tenantsvc --demo`` builds, started; returns (service, site)."""
    from tenantsvc.config import load_settings
    from tenantsvc.service import build_service

    os.chdir(workdir)
    settings = load_settings(production_env(workdir, overrides), role=None, listen="tcp:0:interface=127.0.0.1",
                             demo=True)
    built = build_service(settings, reactor)
    built.service.startService()
    return built.service, built.web.site


def _constant_decision(self: Any, key: str, policy: Any, n: int = 1) -> Any:
    from tenantsvc.core.token_bucket import decision_for

    return decision_for(policy.bucket, float(policy.bucket.capacity) - 1, True)


def ablate(site: Any, names: list[str]) -> None:
    """Switch parts of the per-request work off, to see what each costs (never for a real measurement)."""
    from tenantsvc.services.rate_limiting import LocalRateLimiter
    from tenantsvc.services.theme_cache import ThemeCache
    from tenantsvc.web import public_theme

    root = site.resource
    for name in names:
        if name == "request-metrics":
            root._metrics = type("NoMetrics", (), {"record_request": lambda *args: None})()
        elif name == "ratelimit":
            LocalRateLimiter.check = _constant_decision
        elif name == "ratelimit-headers":
            public_theme.RateLimitHeaders.__call__ = lambda self, decision: ()
        elif name == "cache-metrics":
            ThemeCache._respond = lambda self, answer: answer
            for cache in [o for o in gc.get_objects() if isinstance(o, ThemeCache)]:
                cache._hits = type("NoCounter", (), {"inc": lambda self: None})()
        elif name == "ids":
            root._new_id = lambda: "0123456789abcdef0123456789abcdef"
        else:
            raise SystemExit(f"unknown --ablate {name}")


def build_baseline() -> Any:
    """``baseline_server.py``'s replaying Site, from the spec the tenantsvc mode wrote."""
    from baseline_server import QuietSite, ReplayResource, load_routes

    routes, fallback = load_routes(json.loads(SPEC.read_text()))
    return QuietSite(ReplayResource(routes, fallback))


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
        """Send ``n`` requests round-robin; returns the response bytes received."""
        received = 0
        channels = self.channels
        count = len(channels)
        for i in range(n):
            channel, transport = channels[i % count]
            channel.dataReceived(data)
            received += len(transport.io.getvalue())
            transport.io.seek(0)
            transport.io.truncate()
        return received

    def close(self) -> None:
        """Close every connection as wrk does at the end of a run."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        for channel, _ in self.channels:
            channel.connectionLost(Failure(ConnectionDone()))


def one_response(site: Any, data: bytes) -> bytes:
    """The raw bytes of one response."""
    connection = Connections(site, 1)
    channel, transport = connection.channels[0]
    channel.dataReceived(data)
    raw = transport.io.getvalue()
    connection.close()
    return raw


def write_spec(site: Any) -> bytes:
    """Capture load-theme's 200 and 304 for the baseline mode; returns the ETag."""
    raw = one_response(site, request_bytes(None))
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [line.split(": ", 1) for line in lines[1:]]
    etag = next(v for k, v in headers if k.lower() == "etag").encode("latin-1")
    raw304 = one_response(site, request_bytes(etag))
    head304 = raw304.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    automatic = {"server", "date", "content-length", "connection", "transfer-encoding"}

    def entry(status: int, pairs: list[list[str]], body_bytes: bytes) -> dict[str, Any]:
        return {"status": status, "headers": [[k, v] for k, v in pairs if k.lower() not in automatic],
                "body_b64": base64.b64encode(body_bytes).decode("ascii"),
                "chunked": not any(k.lower() == "content-length" for k, _ in pairs)}

    route = entry(200, headers, body)
    route["if_none_match"] = dict(entry(304, [line.split(": ", 1) for line in head304[1:]], b""),
                                  etag=etag.decode("latin-1"))
    SPEC.write_text(json.dumps({"routes": {LOAD_THEME.decode(): route}}))
    return etag


def reactor_state(reactor: Any) -> str:
    """Timed calls pending and cancelled in the reactor."""
    return (f"timed={len(reactor._pendingTimedCalls)} new={len(reactor._newTimedCalls)} "
            f"cancelled={reactor._cancellations}")


def run(args: argparse.Namespace) -> None:
    """Build the server, then time the batches on the reactor."""
    from twisted.internet import reactor

    workdir = Path(tempfile.mkdtemp(prefix="tenantsvc-inprocess-"))
    state: dict[str, Any] = {"batch": 0, "cpu": [], "base": []}

    def start() -> None:
        if args.server in ("tenantsvc", "both"):
            overrides = dict(item.split("=", 1) for item in args.env)
            state["top"], state["site"] = build_tenantsvc(reactor, workdir, overrides)
            reactor.callLater(0.05, wait_for_theme)
        else:
            state["site"] = build_baseline()
            state["etag"] = json.loads(SPEC.read_text())["routes"][LOAD_THEME.decode()]["if_none_match"][
                "etag"].encode("latin-1")
            reactor.callLater(0.05, batch)

    def wait_for_theme() -> None:
        raw = one_response(state["site"], request_bytes(None))
        if b"tenantsvc; hit" not in raw:
            reactor.callLater(0.05, wait_for_theme)
            return
        state["etag"] = write_spec(state["site"])
        ablate(state["site"], args.ablate)
        if args.server == "both":
            state["baseline"] = build_baseline()
        reactor.callLater(0.5, batch)  # after freeze_start_up_heap

    def batch() -> None:
        data = request_bytes(state["etag"] if args.scenario == "304" else None)
        if "baseline" in state:  # the baseline first on even batches, second on odd ones
            order = ("baseline", "site") if state["batch"] % 2 == 0 else ("site", "baseline")
            for name in order:
                us = timed(state[name], data, args.requests)
                state["base" if name == "baseline" else "cpu"].append(us)
            t, b = state["cpu"][-1], state["base"][-1]
            print(f"batch {state['batch']:2d}: tenantsvc {t:6.1f} µs/req  baseline {b:6.1f} µs/req  "
                  f"extra {t - b:5.1f} µs  {reactor_state(reactor)}", flush=True)
            return next_batch()
        connections = Connections(state["site"], args.connections)
        counts_before = [s["collections"] for s in gc.get_stats()]
        profiler = cProfile.Profile() if args.profile and state["batch"] == args.batches - 1 else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        received = connections.send(args.requests, data)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started
        connections.close()
        collections = [s["collections"] - b for s, b in zip(gc.get_stats(), counts_before)]
        us = cpu / args.requests * 1e6
        state["cpu"].append(us)
        print(f"batch {state['batch']:2d}: {us:6.1f} µs/req  {received / args.requests:6.0f} B/resp  "
              f"gc objects={len(gc.get_objects()):7d} frozen={gc.get_freeze_count():7d} "
              f"collections(gen0,1,2)={collections} {reactor_state(reactor)}", flush=True)
        if profiler:
            stats = pstats.Stats(profiler)
            if args.profile_out:
                stats.dump_stats(args.profile_out)
            stats.sort_stats("tottime").print_stats(args.profile_lines)
        next_batch()

    def timed(site: Any, data: bytes, n: int) -> float:
        connections = Connections(site, args.connections)
        started = time.process_time()
        connections.send(n, data)
        cpu = time.process_time() - started
        connections.close()
        return cpu / n * 1e6

    def next_batch() -> None:
        state["batch"] += 1
        if state["batch"] < args.batches:
            reactor.callLater(args.idle, batch)
        else:
            reactor.callLater(0, finish)

    def finish() -> None:
        cpu = sorted(state["cpu"])
        print(f"{args.server} {args.scenario}: median {cpu[len(cpu) // 2]:.1f} µs/req, min {cpu[0]:.1f}, "
              f"first {state['cpu'][0]:.1f}, last {state['cpu'][-1]:.1f}", flush=True)
        if state["base"]:
            base = sorted(state["base"])
            extra = sorted(t - b for t, b in zip(state["cpu"], state["base"]))
            print(f"baseline: median {base[len(base) // 2]:.1f} µs/req, min {base[0]:.1f}; tenantsvc's extra "
                  f"per pair: median {extra[len(extra) // 2]:.1f} µs, min {extra[0]:.1f}", flush=True)
        if "top" in state:
            state["top"].stopService().addBoth(lambda _: reactor.stop())
        else:
            reactor.stop()

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
