"""Fault injection against the real Postgres while a real tenantsvc web stack serves traffic over loopback.

Each test starts the stack (``tests.fault.stack``: 4 connections, ``DB_CONN_TIMEOUT=1``,
``DB_STATEMENT_TIMEOUT=1s``, so the overall deadline is 2.5 s) on a fresh database, runs concurrent
loops of every request class, injects one fault into the session's Postgres — a crash
(``pg_ctl stop -m immediate``), a freeze (SIGSTOP) or a pool saturated by long transactions — and then
checks every single answer: JSON with an allowed status (a 500 or a hang fails the test), public
theme answers always 200 with the saved theme, latencies within the configured bounds, the breaker's
transitions, and the ledger against the idempotency keys of the credits answered 200 (all there) and
of those refused before they ran (none there). The server is always restored in ``finally``; every
wait is bounded. Run them alone with ``-m fault``; ``-s`` prints the measured figures.
"""

from __future__ import annotations

import statistics
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread

from tenantsvc.composition.core_parts import PRODUCTION_BREAKER
from tests.support.postgres import quote_ident
from tests.fault.stack import (
    CREDIT,
    OTHER_THEME,
    PUBLIC,
    PUT_THEME,
    READ_TENANTS,
    READ_THEME,
    SAVED_THEME,
    Answer,
    Stack,
    Traffic,
    eventually,
    sleep,
    start_stack,
    summary,
)

pytestmark = [pytest.mark.fault, pytest.mark.integration]

CONN_TIMEOUT_S = 1.0
DEADLINE_S = 2.5  # DB_CONN_TIMEOUT 1 s + DB_STATEMENT_TIMEOUT 1 s + the breaker's 0.5 s margin
SLACK_S = 0.75  # reactor scheduling and loopback HTTP on top of a bound (client and server share a reactor)
FAST_S = 0.5  # "well under DB_CONN_TIMEOUT": a refusal that did not wait for a connection
PROBE_BUDGET = PRODUCTION_BREAKER.half_open_max_probes
OPEN_DURATION_S = PRODUCTION_BREAKER.open_duration_max_s  # the longest open period
SLOW_CALL_S = 1.0  # DB_SLOW_CALL_THRESHOLD's default, also the breaker's probe timeout
MIXED = {PUBLIC: 2, READ_THEME: 1, READ_TENANTS: 1, CREDIT: 2, PUT_THEME: 1}
THEME_COLOURS = {SAVED_THEME["primaryColor"], OTHER_THEME["primaryColor"]}

# What a 503 says about whether the write ran (the messages of tenantsvc.services.errors / web.errors).
NEVER_RAN = {"breaker_open": "circuit breaker is open", "pool_timeout": "no database connection within"}
MAYBE_RAN = {"deadline": "did not answer within", "statement_timeout": "took too long to answer",
             "db_unavailable": "the database is unavailable"}


def cause(answer: Answer) -> str:
    """Why a 503 was answered (a key of NEVER_RAN or MAYBE_RAN), '' for other answers."""
    if answer.status != 503:
        return ""
    for name, text in {**NEVER_RAN, **MAYBE_RAN}.items():
        if text in answer.message:
            return name
    return "other: " + answer.message


def restore(postgres_server: Any) -> None:
    """Bring the session's Postgres back whatever the test did to it (thawed, running)."""
    postgres_server.resume()
    if not postgres_server.is_running():
        postgres_server.start()


@asynccontextmanager
async def fault_stack(postgres_server: Any, database_url: str, **env: str) -> AsyncIterator[Stack]:
    """A started stack; on the way out Postgres is restored first (the pool joins its threads on stop).

    The session cluster runs with ``synchronous_commit = off`` for speed, so a crash would lose the last
    commits — acknowledged writes — by design of the fixture; this database commits durably.
    """
    dbname = database_url.rsplit("/", 1)[1]
    postgres_server.execute(f"ALTER DATABASE {quote_ident(dbname)} SET synchronous_commit = on")
    stack = await start_stack(database_url, **env)
    try:
        yield stack
    finally:
        restore(postgres_server)
        await stack.stop()


def transition_after(stack: Stack, at: float, to_state: str, from_state: str | None = None) -> dict[str, Any] | None:
    """The first breaker transition to ``to_state`` (from ``from_state``) at or after ``at``."""
    for t in stack.transitions():
        if t["at"] >= at and t["to"] == to_state and from_state in (None, t["from"]):
            return t
    return None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def latency_figures(answers: list[Answer]) -> str:
    if not answers:
        return "none"
    values = sorted(a.elapsed_s for a in answers)
    return f"n={len(values)} median {ms(statistics.median(values))} max {ms(values[-1])}"


def assert_every_answer_is_well_formed(traffic: Traffic) -> None:
    problems = traffic.problems()
    assert not problems, f"{len(problems)} bad answers, e.g. {problems[:5]} ({summary(traffic.answers)})"


def assert_public_served_the_saved_theme(traffic: Traffic) -> None:
    public = traffic.of(PUBLIC)
    assert public and all(a.status == 200 for a in public)
    served = {a.payload["primaryColor"] for a in public}
    assert served <= THEME_COLOURS, f"load-theme served {served}, not a saved theme"


async def assert_writes_accounted_for(stack: Stack, traffic: Traffic) -> dict[str, int]:
    """Every credit answered 200 is in the ledger; none refused before it ran is; the theme is a saved one."""
    ledger = await stack.ledger_keys()
    credits = traffic.of(CREDIT)
    answered_ok = {a.key for a in credits if a.status == 200}
    assert answered_ok <= ledger, f"credits answered 200 but not in the ledger: {sorted(answered_ok - ledger)[:5]}"
    never_ran = {a.key for a in credits if cause(a) in NEVER_RAN}
    assert not never_ran & ledger, f"credits refused before running but in the ledger: {sorted(never_ran & ledger)}"
    unknown = [a for a in traffic.answers if a.status == 503 and cause(a).startswith("other")]
    assert not unknown, unknown[:3]
    puts = sorted(traffic.of(PUT_THEME), key=lambda a: a.sent_at)
    last_ok = max((i for i, a in enumerate(puts) if a.status == 200), default=None)
    if last_ok is not None:
        possible = {puts[last_ok].theme["primaryColor"]} | {
            a.theme["primaryColor"] for a in puts[last_ok + 1:] if cause(a) in MAYBE_RAN}
        assert (await stack.saved_theme())["primaryColor"] in possible
    causes: dict[str, int] = {}
    for a in traffic.answers:
        if a.status == 503:
            causes[cause(a)] = causes.get(cause(a), 0) + 1
    return {"credits_ok": len(answered_ok), "in_ledger": len(ledger & {a.key for a in credits}),
            "refused_never_ran": len(never_ran), **{f"503_{k}": v for k, v in sorted(causes.items())}}


# ---- Postgres crash ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_postgres_crash_never_turns_into_500s_hangs_or_lost_writes(postgres_server, postgres_database_url):
    from twisted.internet import reactor

    async with fault_stack(postgres_server, postgres_database_url) as stack:
        traffic = Traffic(stack, MIXED)
        try:
            await sleep(1.0)
            crashed_at = reactor.seconds()
            await deferToThread(postgres_server.stop_immediate)
            opened = await eventually(lambda: transition_after(stack, crashed_at, "open"), within_s=5,
                                      what="the breaker to open after the crash")
            await sleep(2.0)
            restarted_at = reactor.seconds()
            await deferToThread(postgres_server.start)
            started_at = reactor.seconds()
            closed = await eventually(lambda: transition_after(stack, started_at, "closed", "half_open"),
                                      within_s=OPEN_DURATION_S * 3,
                                      what="the breaker to close through half-open after the restart")
            await eventually(lambda: traffic.of(CREDIT, since=closed["at"]) and any(
                a.status == 200 for a in traffic.of(CREDIT, since=closed["at"])), within_s=5,
                what="a credit to succeed after recovery")
        finally:
            await traffic.stop()
            restore(postgres_server)
        figures = await assert_writes_accounted_for(stack, traffic)

    assert_every_answer_is_well_formed(traffic)
    assert_public_served_the_saved_theme(traffic)
    assert (opened["reason"], opened["detail"]) == ("failures", "connection_error"), opened
    # Reads while the DB is down: the cached theme (saying so) or 503, never anything else.
    down = (opened["at"], closed["at"])
    for read in traffic.of(READ_THEME, READ_TENANTS, since=down[0], until=restarted_at):
        assert read.status == 503 or read.headers.get("cache-status", "").endswith("detail=db-refused"), read
    # Writes refused by the open breaker: fast, without waiting for a connection.
    refused = [a for a in traffic.of(CREDIT, PUT_THEME, since=down[0], until=restarted_at)
               if stack.steady_state(a) == "open" and a.status == 503]
    assert refused and all(cause(a) == "breaker_open" for a in refused), refused[:3]
    assert max(a.elapsed_s for a in refused) < FAST_S, latency_figures(refused)
    # Half-open after the restart: no more DB calls at once than the probe budget, then closed.
    path = [(t["from"], t["to"], t["reason"]) for t in stack.transitions() if t["at"] >= started_at]
    assert path[-2:] == [("open", "half_open", "cooldown"), ("half_open", "closed", "recovered")], path
    assert 0 < stack.monitor.max_in_half_open <= PROBE_BUDGET, stack.monitor.max_in_half_open
    assert stack.metric("circuit_breaker_transitions_total", breaker_name="db_pool", from_state="half_open",
                        to_state="closed", reason="recovered") >= 1
    assert stack.metric("circuit_breaker_state", breaker_name="db_pool") == 0
    rejected = stack.metric("circuit_breaker_rejections_total", breaker_name="db_pool")
    assert rejected >= len(refused)
    print(f"\nFIGURES crash: {summary(traffic.answers)}\n  breaker opened {ms(opened['at'] - crashed_at)} after"
          f" the crash ({opened['reason']}/{opened['detail']}); write 503s while open: {latency_figures(refused)};"
          f" closed {ms(closed['at'] - started_at)} after Postgres accepted connections again (restart took"
          f" {ms(started_at - restarted_at)}); path after restart {path}; max DB calls in flight in half-open"
          f" {stack.monitor.max_in_half_open} of {stack.monitor.half_open_submissions} submitted;"
          f" rejections {rejected:.0f}; {figures}")


# ---- Postgres frozen ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_frozen_postgres_never_keeps_a_request_waiting_past_the_bounds(postgres_server, postgres_database_url):
    from twisted.internet import reactor

    async with fault_stack(postgres_server, postgres_database_url) as stack:
        assert stack.breaker.deadline_s == DEADLINE_S
        traffic = Traffic(stack, MIXED)
        try:
            await sleep(1.0)
            frozen_at = reactor.seconds()
            await deferToThread(postgres_server.pause)
            opened = await eventually(lambda: transition_after(stack, frozen_at, "open"), within_s=DEADLINE_S + 3,
                                      what="the breaker to open while Postgres is frozen")
            await eventually(lambda: stack.metric("db_deadline_timeouts_total") > 0, within_s=DEADLINE_S + 1,
                             what="the overall deadline to answer a call stuck on the frozen DB")
            await sleep(2.0)
            resumed_at = reactor.seconds()
            await deferToThread(postgres_server.resume)
            recovered = await eventually(
                lambda: [a for a in traffic.of(CREDIT, since=resumed_at) if a.status == 200], within_s=15,
                what="a credit to succeed after SIGCONT")
            await sleep(0.5)
        finally:
            await traffic.stop()
            restore(postgres_server)
        figures = await assert_writes_accounted_for(stack, traffic)

    assert_every_answer_is_well_formed(traffic)
    assert_public_served_the_saved_theme(traffic)
    slowest = max(traffic.answers, key=lambda a: a.elapsed_s)
    assert slowest.elapsed_s < DEADLINE_S + SLACK_S, slowest
    during = traffic.of(CREDIT, PUT_THEME, READ_THEME, READ_TENANTS, since=frozen_at, until=resumed_at)
    # The overall deadline answered a call stuck on the frozen DB (awaited above through
    # db_deadline_timeouts_total). Whether that call was a request's or background work (a theme refresh,
    # the breaker's liveness check) depends on what held a connection at the instant of the freeze, so the
    # requests' own deadline 503s are reported, not required; every request stayed within the bound above.
    timed_out = [a for a in during if cause(a) == "deadline"]
    public = traffic.of(PUBLIC, since=frozen_at, until=resumed_at)
    recovery_s = min(a.answered_at for a in recovered) - resumed_at
    print(f"\nFIGURES freeze: {summary(traffic.answers)}\n  slowest {slowest!r}; bound {DEADLINE_S} s;"
          f" breaker opened {ms(opened['at'] - frozen_at)} after SIGSTOP ({opened['reason']}/{opened['detail']});"
          f" deadline 503s {latency_figures(timed_out)}; public while frozen {latency_figures(public)};"
          f" first credit 200 {ms(recovery_s)} after SIGCONT;"
          f" deadline timeouts {stack.metric('db_deadline_timeouts_total'):.0f},"
          f" pool timeouts {stack.metric('db_pool_timeouts_total'):.0f}; {figures}")


@pytest_twisted.ensureDeferred
async def test_a_frozen_postgres_with_connections_to_spare_opens_the_breaker_on_slow_calls_before_any_deadline(
        postgres_server, postgres_database_url):
    """With connections to spare there is no pool pressure: the calls still running past the slow-call
    threshold tell (before, only their overall deadlines did)."""
    from twisted.internet import reactor

    async with fault_stack(postgres_server, postgres_database_url, DB_WEB_POOL_MAX="16") as stack:
        traffic = Traffic(stack, {PUBLIC: 1, CREDIT: 5})
        try:
            await sleep(1.0)
            frozen_at = reactor.seconds()
            await deferToThread(postgres_server.pause)
            opened = await eventually(lambda: transition_after(stack, frozen_at, "open"), within_s=DEADLINE_S + 3,
                                      what="the breaker to open while Postgres is frozen")
            await sleep(DEADLINE_S + 0.5)  # the stuck calls reach their deadlines; new ones meet the open breaker
            resumed_at = reactor.seconds()
            await deferToThread(postgres_server.resume)
            await eventually(lambda: [a for a in traffic.of(CREDIT, since=resumed_at) if a.status == 200],
                             within_s=15, what="a credit to succeed after SIGCONT")
        finally:
            await traffic.stop()
            restore(postgres_server)
        figures = await assert_writes_accounted_for(stack, traffic)

    assert_every_answer_is_well_formed(traffic)
    # Five calls stuck at once pass the slow-call threshold together: five slow-call failures, well before
    # any deadline (with fewer callers the liveness check opens it one probe timeout later).
    assert (opened["reason"], opened["detail"]) in {("failures", "slow_call"), ("failures", "unresponsive")}, opened
    assert SLOW_CALL_S - 0.1 <= opened["at"] - frozen_at < 2 * SLOW_CALL_S + SLACK_S
    refused = [a for a in traffic.of(CREDIT, since=opened["at"], until=resumed_at) if stack.steady_state(a) == "open"]
    assert refused and all(cause(a) == "breaker_open" and a.elapsed_s < FAST_S for a in refused), refused[:3]
    slowest = max(traffic.answers, key=lambda a: a.elapsed_s)
    assert slowest.elapsed_s < DEADLINE_S + SLACK_S, slowest
    print(f"\nFIGURES freeze, spare connections: {summary(traffic.answers)}\n  breaker opened"
          f" {ms(opened['at'] - frozen_at)} after SIGSTOP ({opened['reason']}/{opened['detail']});"
          f" writes refused while open {latency_figures(refused)}; {figures}")


# ---- pool saturated ---------------------------------------------------------------------------


def hold_connection_txn(txn: Any, seconds: float) -> None:
    """Interaction body (test only): a long report holding its connection (its own statement timeout lifted)."""
    txn.execute("SET LOCAL statement_timeout = 0")
    txn.execute("SELECT pg_sleep(%s)", (seconds,))


@pytest_twisted.ensureDeferred
async def test_a_saturated_pool_sheds_reads_keeps_public_fast_and_admits_writes_up_to_the_bound(
        postgres_server, postgres_database_url):
    from twisted.internet import reactor

    async with fault_stack(postgres_server, postgres_database_url) as stack:
        traffic = Traffic(stack, {PUBLIC: 2, READ_THEME: 1, READ_TENANTS: 1, CREDIT: 2})
        try:
            await sleep(0.5)
            saturated_at = reactor.seconds()
            # Four long transactions take every connection; they end one by one, 0.5 s apart.
            holders = [stack.db.run_interaction("long_report", hold_connection_txn, 3.0 + 0.5 * i) for i in range(4)]
            opened = await eventually(lambda: transition_after(stack, saturated_at, "open"), within_s=2,
                                      what="the breaker to open on pool pressure")
            await gatherResults(holders)
            closed = await eventually(lambda: transition_after(stack, opened["at"], "closed"),
                                      within_s=OPEN_DURATION_S * 2, what="the breaker to close again")
            await sleep(0.3)
        finally:
            await traffic.stop()
            restore(postgres_server)
        figures = await assert_writes_accounted_for(stack, traffic)

    assert_every_answer_is_well_formed(traffic)
    assert_public_served_the_saved_theme(traffic)
    assert opened["reason"] == "pressure", opened
    while_open = (opened["at"], closed["at"])
    public = traffic.of(PUBLIC, since=while_open[0], until=while_open[1])
    assert public and max(a.elapsed_s for a in public) < FAST_S, latency_figures(public)
    reads = [a for a in traffic.of(READ_THEME, READ_TENANTS, since=while_open[0], until=while_open[1])
             if stack.steady_state(a) == "open"]
    assert reads
    for read in reads:
        assert cause(read) == "breaker_open" or read.headers.get("cache-status", "").endswith("detail=db-refused"), read
        assert read.elapsed_s < FAST_S, read
    # Writes sent while it was open on pressure (admitted then: what happens after cannot undo that).
    writes = [a for a in traffic.of(CREDIT, since=while_open[0], until=while_open[1]) if a.breaker_state == "open"]
    admitted = [a for a in writes if a.status == 200]
    timed_out = [a for a in writes if cause(a) == "pool_timeout"]
    assert admitted, f"no write got through while the breaker was open on pressure: {summary(writes)}"
    assert timed_out, f"no write waited out DB_CONN_TIMEOUT while the pool was saturated: {summary(writes)}"
    assert all(a.status == 200 or cause(a) == "pool_timeout" for a in writes), (
        summary(writes), sorted({cause(a) for a in writes if a.status != 200}))
    assert all(a.elapsed_s < CONN_TIMEOUT_S + SLACK_S for a in writes), latency_figures(writes)
    assert all(a.elapsed_s >= CONN_TIMEOUT_S * 0.9 for a in timed_out), latency_figures(timed_out)
    print(f"\nFIGURES saturation: {summary(traffic.answers)}\n  breaker opened {ms(opened['at'] - saturated_at)}"
          f" after the holders were submitted ({opened['reason']}); public while open {latency_figures(public)};"
          f" reads while open {latency_figures(reads)}; writes admitted while open {latency_figures(admitted)};"
          f" writes withdrawn at DB_CONN_TIMEOUT {latency_figures(timed_out)}; {figures}")
