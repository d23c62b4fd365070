"""The public theme path (warm, 304, css, healthz, spread, cold herds, memory) against a bare twisted.web baseline
replaying identical bytes (uvicorn/Flask beside it when installed); ``--rounds``: the sustained mode (bench/README.md)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_server import alternatives  # noqa: E402
from runner import (  # noqa: E402
    BROWSER_HEADERS, LOAD_THEME, Bench, BenchError, Load, Scenario, Server, bench_parser, compare, paired_rounds,
    print_table, public, ratios, replay_entry, run_main, scrape, summary_row, summary_table,
)

from tests.support.http import HttpAnswer, raw_get  # noqa: E402
from tests.support.metrics import sample_delta  # noqa: E402
from tests.support.processes import reset_peak_rss, status_kib  # noqa: E402

TENANT_PATH = "/bench-{:05d}/api/public/load-theme"
HERD = Load(script=Path(__file__).with_name("herd.lua"))  # each request the next tenant's load-theme (+ the count)
PAIRED = {"warm": Scenario("warm hit", Load(LOAD_THEME)),
          "304": Scenario("304", Load(LOAD_THEME, (("If-None-Match", "<the captured ETag>"),)), status=304),
          "css": Scenario("theme.css", Load("/demo/api/public/theme.css")),
          "browser": Scenario("browser hit", Load(LOAD_THEME, BROWSER_HEADERS)),
          "healthz": Scenario("healthz", Load("/healthz")),
          "spread": Scenario("spread hit", HERD, setup="all-cached")}
SCENARIOS = (*PAIRED, "cold", "memory")
NEVER_REWARM = "86400"  # THEME_WARM_INTERVAL of the many-tenant instances: only the start-up warm runs
GOALS = {"warm hit": 0.90, "theme.css": 0.85, "spread hit": 0.75}  # sustained ratio to bare twisted.web (issue 14)
P99_GOAL_MS, CREEP_GOAL_PCT, RSS_GOAL_MIB = 10.0, 5.0, 80
# The tenant-scale instances are web processes, as a fleet runs them (the goal is RSS per web process);
# the demo instances of the paired rounds run every role, as ``./scripts/run`` does.
WEB_PROCESS = ("--demo", "--role", "web")


def capture(port: int, scenarios: list[Scenario]) -> tuple[list[Scenario], dict[str, HttpAnswer], dict[str, Any]]:
    """Each scenario's answer over a raw socket, the scenarios with the ETag filled in, and the replay spec."""
    load_theme, answers, routes = raw_get(port, LOAD_THEME), {}, {}
    etag = load_theme.header("etag") or ""
    filled = [replace(s, load=replace(s.load, headers=(("If-None-Match", etag),)))
              if s.status == 304 else s for s in scenarios]
    for scenario in filled:
        path = scenario.load.path if not scenario.load.script else TENANT_PATH.format(0)
        answers[scenario.name] = answer = raw_get(port, path, scenario.load.headers)
        if answer.status != scenario.status or (scenario.load.script and "hit" not in (answer.header("cache-status") or "")):
            raise BenchError(f"{scenario.name}: tenantsvc answered {answer.status} {answer.header('cache-status')}")
        if scenario.status == 304:
            routes.setdefault(LOAD_THEME, replay_entry(load_theme))["if_none_match"] = replay_entry(answer, etag=etag)
        elif not scenario.load.script:
            routes.setdefault(path, replay_entry(answer))
    if any(s.load.script for s in filled):
        return filled, answers, {"fallback": replay_entry(answers["spread hit"])}
    return filled, answers, {"routes": routes}


def baselines(bench: Bench, spec: dict[str, Any], scenarios: list[Scenario],
              answers: dict[Any, HttpAnswer]) -> tuple[list[Server], dict[str, Any]]:
    """The twisted.web baseline and the alternatives, each checked against tenantsvc's answers (its own answer kept
    in ``answers`` under (scenario, server), for the size check under load)."""
    alts = bench.args.alternatives.items()
    servers = [bench.baseline(spec)] + [bench.baseline(spec, name, argv) for name, argv in alts]
    checks = {}
    for server in servers:
        for scenario in scenarios:
            path = TENANT_PATH.format(0) if scenario.load.script else scenario.load.path
            theirs = answers[(scenario.name, server.name)] = raw_get(server.port, path, scenario.load.headers)
            check = checks[f"{server.name} {scenario.name}"] = compare(answers[scenario.name], theirs)
            same = check["status"] and check["body"]
            state = "identical" if check["identical"] else "same status and body, own headers" if same else "MISMATCH"
            print(f"check {server.name}, {scenario.name}: {state} (tenantsvc {check['wire_bytes'][0]} B, "
                  f"{server.name} {check['wire_bytes'][1]} B on the wire)", flush=True)
    return servers, checks


def seed(bench: Bench) -> tuple[Path, dict[str, Any]]:
    """A SQLite database with ``--tenants`` tenants ``bench-00000…`` plus demo: the demo's theme rows copied, each
    with its own colour and name of fixed length."""
    args, started = bench.args, time.monotonic()
    bench.stop(bench.tenantsvc("seeded"))  # the migrated database with the demo tenant
    db_file = bench.workdir / "seeded" / "var" / "tenantsvc.sqlite3"
    with sqlite3.connect(db_file) as db:
        db.row_factory = sqlite3.Row
        demo = db.execute("SELECT th.* FROM themes th JOIN tenants t ON t.id = th.tenant_id WHERE t.slug = 'demo'"
                          ).fetchone()
        columns = [c for c in demo.keys() if c not in ("tenant_id", "updated_at")]
        for i in range(args.tenants):
            tenant_id = db.execute("INSERT INTO tenants (slug, name) VALUES (?, ?)",
                                   (f"bench-{i:05d}", f"Bench Tenant {i:05d}")).lastrowid
            own = {"primary_color": f"#{(i * 2654435761) & 0xFFFFFF:06X}",
                   "sportsbook_name": f"Bench Sportsbook {i:05d}"}
            db.execute(f"INSERT INTO themes (tenant_id, {', '.join(columns)}) VALUES (?{', ?' * len(columns)})",
                       (tenant_id, *(own.get(c, demo[c]) for c in columns)))
    seconds = round(time.monotonic() - started, 1)
    print(f"created {args.tenants:,} tenants in {seconds} s", flush=True)
    return db_file, {"seconds": seconds}


def many_tenants(bench: Bench, db_file: Path, name: str, cache_entries: int, **env: str) -> tuple[Server, dict]:
    """tenantsvc on a private copy of the seeded database, ready after its start-up warm, and that warm's figures."""
    (bench.workdir / name / "var").mkdir(parents=True)
    with sqlite3.connect(db_file) as source, sqlite3.connect(bench.workdir / name / "var" / "tenantsvc.sqlite3") as copy:
        source.backup(copy)
    server = bench.tenantsvc(name, *WEB_PROCESS, THEME_CACHE_MAX_ENTRIES=str(cache_entries), THEME_WARM_INTERVAL=NEVER_REWARM, **env)
    is_warm = lambda status: lambda m: m.get("action_type") == "tenantsvc:themes:warm" and m.get("action_status") in status  # noqa
    began = server.process.wait_for_message(is_warm(("started",)), "the start-up warm")  # type: ignore[union-attr]
    ended = server.process.wait_for_message(is_warm(("succeeded", "failed")), "its end")  # type: ignore[union-attr]
    return server, {"seconds": round(ended["timestamp"] - began["timestamp"], 2), "outcome": ended["action_status"],
                    "ready_after_s": server.ready_after_s}


def herd_outcome(before: dict, after: dict) -> dict[str, Any]:
    """What the cache and the DB did during a herd, from two ``/metrics`` scrapes."""
    grew = lambda name, by, **where: sample_delta(before, after, name, by, **where)  # noqa: E731
    return {"db_reads": grew("db_interactions_total", "name").get("refresh_theme", 0),
            "answers": grew("cache_responses_total", "result", cache="branding"),
            "l2_gets": grew("cache_l2_operations_total", "outcome", cache="branding", op="get"),
            "refreshes": grew("cache_refresh_total", "outcome", cache="branding"),
            "breaker_rejections": grew("circuit_breaker_rejections_total", "request_class"),
            "statuses": grew("http_requests_total", "status", endpoint="/<tenant>/api/public/load-theme")}


def mib(kib: int | None) -> float | None:
    """KiB → MiB, one decimal."""
    return kib and round(kib / 1024, 1)


def measure(bench: Bench) -> dict[str, Any]:
    """Every selected scenario: paired rounds per set-up, then the cold herds; the document for the results file."""
    args, runs = bench.args, {}
    doc: dict[str, Any] = {"settings": vars(args) | {"pinning": bench.pin_note}, "memory": {}, "herds": {}}
    print(f"theme_bench: {','.join(args.scenarios)}; {bench.pin_note}; wrk -c{args.connections} -d{args.duration}s, "
          f"{args.runs} process(es) × {args.rounds} round(s); load average {os.getloadavg()[0]:.2f}", flush=True)
    scenarios = [replace(s, load=args.herd) if s.load is HERD else s for k, s in PAIRED.items() if k in args.scenarios]
    db_file = None
    if {"spread", "memory", "cold"} & set(args.scenarios):
        if "memory" in args.scenarios:
            idle = bench.tenantsvc("idle-demo", *WEB_PROCESS)
            time.sleep(1.0)
            doc["memory"] |= {"idle_demo_only": status_kib(idle.proc.pid, "VmRSS"),
                              "startup_peak_demo_only": status_kib(idle.proc.pid, "VmHWM")}
            bench.stop(idle)
        db_file, doc["seed"] = seed(bench)
    for run in range(args.runs):
        for setup in ("demo", "all-cached"):
            chosen = [s for s in scenarios if s.setup == setup]
            if not chosen:
                continue
            if setup == "demo":
                server = bench.tenantsvc(f"demo-{run}", ready=lambda p: "hit" in (raw_get(p, LOAD_THEME).header(
                    "cache-status") or ""))
            else:
                server, doc["startup_warm"] = many_tenants(bench, db_file, f"all-cached-{run}", args.tenants + 1)
                time.sleep(1.0)
                doc["memory"] |= {"idle_all_cached": status_kib(server.proc.pid, "VmRSS"),
                                  "startup_peak_all_cached": status_kib(server.proc.pid, "VmHWM"),
                                  "peak_reset": reset_peak_rss(server.proc.pid)}
            chosen, answers, spec = capture(server.port, chosen)
            others, doc.setdefault("baseline_checks", {})[setup] = baselines(bench, spec, chosen, answers)
            paired_rounds(bench, [server, *others], chosen, args.rounds, run * args.rounds + 1, runs, answers)
            if setup == "all-cached":
                doc["memory"]["after_serving_all"] = status_kib(server.proc.pid, "VmRSS")
                doc["memory"]["metrics_bytes"] = len(raw_get(server.port, "/metrics", timeout_s=10).body)
                doc["memory"]["serving_peak"] = status_kib(server.proc.pid, "VmHWM")
            for other in others:
                bench.stop(other)
            bench.stop(server)
    if "cold" in args.scenarios:
        cold_herds(bench, db_file, doc, runs)
    names = [s.name for s in scenarios] + [name for name in doc["herds"]]
    servers = ["tenantsvc", "baseline", *args.alternatives]
    doc["summary"] = [summary_row(n, s, runs) for n in names for s in servers if (n, s) in runs]
    doc["runs"] = {f"{n} / {s}": [public(r) for r in rs] for (n, s), rs in runs.items()}
    doc["per_round"] = {n: per_round(runs, n, args.rounds) for n in [s.name for s in scenarios]}
    doc["goals"] = goals(doc, runs)
    return doc


def cold_herds(bench: Bench, db_file: Path | None, doc: dict[str, Any], runs: dict) -> None:
    """Herds on instances whose L1 holds ``--herd-cache-entries``: no warm-up, once each; then their baseline."""
    from tests.support.redis_server import RedisServer

    args, default, cold = bench.args, None, Scenario("cold herd", bench.args.herd)
    variants = [("cold herd, no Redis", False)]
    if args.redis == "auto" and shutil.which("redis-server"):
        variants.append(("cold herd, Redis L2", True))
    elif args.redis == "auto":
        print("note: redis-server not found: the Redis L2 herd is skipped")
    for number, (label, with_redis) in enumerate(variants):
        redis = RedisServer() if with_redis else None
        try:
            if redis:
                redis.start()
                os.sched_setaffinity(redis.pid, {args.load_cpu})  # beside wrk, not on tenantsvc's CPU
            env = {"REDIS_URL": redis.url} if redis else {}
            server, warm = many_tenants(bench, db_file, f"herd-{number}", args.herd_cache_entries, **env)
            default = default or raw_get(server.port, TENANT_PATH.format(0))  # an L1 miss: the default answer
            before = scrape(server.port)
            runs[(label, "tenantsvc")] = [bench.measure(server, cold, label)]
            doc["herds"][label] = herd_outcome(before, scrape(server.port)) | {"startup_warm": warm}
            bench.stop(server)
        finally:
            if redis:
                redis.close()
    baseline = bench.baseline({"fallback": replay_entry(default)})
    result = bench.measure(baseline, cold, "herd, default answer", default, args.warmup)
    for label in doc["herds"]:
        runs[(label, "baseline")] = [result]
    bench.stop(baseline)


def later_half(values: list[float]) -> list[float]:
    """The values a sustained figure is the median of: the later half, at least 5 (the last 5 of 10 rounds)."""
    return values[-max(5, len(values) // 2):]


def per_round(runs: dict, name: str, rounds: int) -> list[dict[str, Any]]:
    """tenantsvc's CPU µs/req, req/s and ratio per round, and the creep of each process: its last round against
    its first, and (the goal's figure) its CPU relative to the baseline's in the same round, median of the last
    third of the rounds against the first third (3 of 10), which the machine's own drift does not move."""
    own, ratio = runs.get((name, "tenantsvc"), []), ratios(runs, name, "tenantsvc")
    base = runs.get((name, "baseline"), [])
    rows = [{"round": i + 1, "cpu_us_per_request": r.server_cpu_us_per_request, "requests_per_s": r.requests_per_s,
             "ratio": ratio[i] if i < len(ratio) else None,
             "relative_cpu": r.server_cpu_us_per_request / base[i].server_cpu_us_per_request if i < len(base) else None}
            for i, r in enumerate(own)]
    for start in range(0, len(rows) if rounds > 1 else 0, rounds):
        block, last = rows[start:start + rounds], rows[start + rounds - 1]
        last["cpu_creep_pct"] = round((last["cpu_us_per_request"] / block[0]["cpu_us_per_request"] - 1) * 100, 1)
        last["rps_creep_pct"] = round((last["requests_per_s"] / block[0]["requests_per_s"] - 1) * 100, 1)
        relative = [r["relative_cpu"] for r in block if r["relative_cpu"] is not None]
        third = len(relative) // 3
        if third >= 2:
            edge = statistics.median(relative[-third:]) / statistics.median(relative[:third])
            last["relative_creep_pct"] = round((edge - 1) * 100, 1)
    return rows


def goals(doc: dict[str, Any], runs: dict) -> list[tuple[str, bool]]:
    """Issue 14's goals as (line, met), on the sustained figures (median of the later half's per-round ratios)."""
    lines, rows = [], {(r["scenario"], r["server"]): r for r in doc["summary"]}
    for name, goal in GOALS.items():
        if (name, "tenantsvc") in rows:
            value = statistics.median(later_half(rows[(name, "tenantsvc")]["ratio_per_round"]))
            lines.append((f"{name} sustained {value:.2f}× bare twisted.web (goal ≥ {goal:.2f}×)", value >= goal))
    if ("304", "tenantsvc") in rows and ("warm hit", "tenantsvc") in rows:
        pairs = zip(runs[("304", "tenantsvc")], runs[("warm hit", "tenantsvc")])
        value = statistics.median(later_half([n.requests_per_s / w.requests_per_s for n, w in pairs]))
        lines.append((f"304 vs warm hit (same process) {value:.2f}× (goal ≥ 1.00×)", value >= 1.0))
    paired = [r for r in doc["summary"] if r["server"] == "tenantsvc" and r["scenario"] in doc["per_round"]]
    if paired and doc["settings"]["connections"] == 50:
        worst = max(paired, key=lambda r: r["p99_ms"])
        lines.append((f"p99 at 50 connections ≤ {P99_GOAL_MS:g} ms: worst {worst['p99_ms']:.2f} ms ({worst['scenario']})",
                      worst["p99_ms"] <= P99_GOAL_MS))
    for name, rows_ in doc["per_round"].items():
        creeps = [r["relative_creep_pct"] for r in rows_ if "relative_creep_pct" in r]
        if creeps:
            lines.append((f"{name} CPU creep over {doc['settings']['rounds']} rounds, relative to the baseline's "
                          f"{max(creeps, key=abs):+.1f} % (goal within {CREEP_GOAL_PCT:g} %)",
                          all(abs(c) <= CREEP_GOAL_PCT for c in creeps)))
    for key in ("idle_all_cached", "after_serving_all", "serving_peak"):
        if doc["memory"].get(key):
            value = mib(doc["memory"][key])
            lines.append((f"RSS with {doc['settings']['tenants']:,} tenants cached, {key.replace('_', ' ')}: "
                          f"{value} MiB (goal ≤ {RSS_GOAL_MIB} MiB)", value <= RSS_GOAL_MIB))
    return lines


def report(doc: dict[str, Any]) -> None:
    """The table, the per-round lines of the sustained mode, the herds, memory and the goals."""
    m, settings = doc["machine"], doc["settings"]
    print(f"\ntheme_bench {doc['measured_at']}: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, {m['wrk']}, "
          f"commit {m['commit']}; wrk -c{settings['connections']} -d{settings['duration']}s; {settings['pinning']}")
    summary_table(doc["summary"])
    for name, rows in doc["per_round"].items() if settings["rounds"] > 1 else ():
        print(f"\n  {name}, tenantsvc per round:")
        creep = lambda value: None if value is None else f"{value:+.1f} %"  # noqa: E731
        print_table(("round", "CPU µs/req", "req/s", "ratio", "CPU ÷ baseline's", "CPU creep", "req/s creep",
                     "relative creep"),
                    [(r["round"], r["cpu_us_per_request"], f"{r['requests_per_s']:.0f}", r["ratio"],
                      None if r["relative_cpu"] is None else f"{r['relative_cpu']:.3f}", creep(r.get("cpu_creep_pct")),
                      creep(r.get("rps_creep_pct")), creep(r.get("relative_creep_pct"))) for r in rows], indent="    ")
    for label, outcome in doc["herds"].items():
        print(f"  {label}: {outcome['db_reads']:,} DB reads (refresh_theme); answers {outcome['answers']}; L2 gets "
              f"{outcome['l2_gets']}; refreshes {outcome['refreshes']}; breaker rejections "
              f"{outcome['breaker_rejections'] or 'none'}; start-up warm {outcome['startup_warm']['seconds']} s")
    if doc.get("startup_warm"):
        print(f"  start-up warm of {settings['tenants']:,} tenants: {doc['startup_warm']['seconds']} s, ready after "
              f"{doc['startup_warm']['ready_after_s']} s")
    memory = [f"{k.replace('_', ' ')} {mib(v)}" for k, v in doc["memory"].items() if k not in ("peak_reset", "metrics_bytes") and v]
    if memory:
        print(f"  tenantsvc RSS (MiB): {', '.join(memory)}"
              f"{'' if doc['memory'].get('peak_reset', True) else ' (serving peak is the lifetime peak)'}; "
              f"/metrics {doc['memory'].get('metrics_bytes', 0) / 1e6:.1f} MB")
    print("\ngoals (issue 14):")
    for line, met in doc["goals"]:
        print(f"  {'met' if met else '[!] NOT MET'}: {line}")


def parse_args(argv: list[str] | None) -> Any:
    """Command-line options (bounded)."""
    parser = bench_parser(
        __doc__, scenarios=("warm,304,css,spread,cold,memory", ",".join(SCENARIOS)),
        duration=(10.0, "seconds per measured wrk run"), rounds=(1, "consecutive rounds against one process"),
        runs=(0, "fresh processes (default 3, or 1 with --rounds)"), connections=50, tenants=10_000,
        warmup=(2.0, "unmeasured wrk seconds before a process's first run"), herd_cache_entries=100,
        redis=("auto", "auto|off"),
        no_alt_baselines=(False, "skip uvicorn+Starlette and Flask/gunicorn even when installed"))
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if set(args.scenarios) - set(SCENARIOS) or not 1 <= args.duration <= 600 or not 1 <= args.rounds <= 100 \
            or args.redis not in ("auto", "off"):
        parser.error(f"--scenarios takes some of {','.join(SCENARIOS)}; --duration 1..600; --rounds 1..100; "
                     "--redis auto|off")
    if "memory" in args.scenarios and "spread" not in args.scenarios:
        args.scenarios.append("spread")  # memory "after serving every tenant" is read after the spread hit
    args.runs, args.herd = args.runs or (3 if args.rounds == 1 else 1), replace(HERD, script_args=(str(args.tenants),))
    args.alternatives = {} if args.no_alt_baselines else alternatives()
    return args


if __name__ == "__main__":
    sys.exit(run_main("theme-bench", parse_args(None), measure, report))
