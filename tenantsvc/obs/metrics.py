"""Prometheus metrics on an injected ``CollectorRegistry`` (tests make their own registry).

Label values are always bounded: the route template rather than the raw path, a tenant label only for
tenants that exist, a fixed set of methods.

The metrics updated on every request of the public theme path (``http_request_duration_seconds``, the
branding cache counters, ``ratelimit_decisions_total``) are ``PlainHistogram``/``PlainCounter``: plain
numbers updated with no lock and rendered by a collector at scrape time, exactly as prometheus_client's
``Histogram``/``Counter`` would render them (names, help, labels, buckets, ``_created``), at a fraction of
the cost per update. They are only updated and collected on the reactor thread (``/metrics`` is rendered
there too), so they need no lock; anything updated from another thread stays a prometheus_client metric.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

from tenantsvc.obs.request_counters import NO_ROUTE_CLASS, OPERATIONAL, RequestCounters  # noqa: F401 (re-exported)

from tenantsvc.core.storage_errors import DatabaseUnavailable, StatementTimeout

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNKNOWN_TENANT = "_unknown"
NO_TENANT = ""
# From 100 µs: a warm public theme answer takes well under a millisecond, so a 1 ms lowest bucket made its
# p99 read "1 ms" whatever happened below it (issue 13). A healthy pool hands out connections as fast.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
DB_BUCKETS = LATENCY_BUCKETS
HASHING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # argon2id: ~50 ms each
# ``route_class`` of http_requests_total / http_request_duration_seconds (request_counters.ROUTE_CLASSES):
# one class per route (method and template), so the label adds no series.
# Why the server closed (or refused) an HTTP connection: the reason label of http_connections_closed_total
# (set by web.channel and web.connections).
CONNECTION_CLOSE_REASONS = ("header_deadline", "connection_cap", "peer_not_reading", "header_too_large",
                            "bad_request", "drain_idle", "drain_timeout")
FEED_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)  # a feed poll: fetch, parse, save


def _created_series_enabled() -> bool:
    """Whether prometheus_client exports ``_created`` samples (``PROMETHEUS_DISABLE_CREATED_SERIES``)."""
    return prometheus_metrics._use_created


class _PlainFamily(Collector):
    """What ``PlainCounter`` and ``PlainHistogram`` share: a name, help text, label names and a registry."""

    _type = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry):
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        registry.register(self)

    def _label_key(self, labelvalues: tuple[object, ...]) -> tuple[str, ...]:
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {labelvalues!r}")
        return tuple(str(value) for value in labelvalues)

    def _family(self) -> Metric:
        return Metric(self._name, self._documentation, self._type)

    def describe(self) -> list[Metric]:
        """The family without samples, so the registry refuses another metric of the same name."""
        return [self._family()]


class PlainCounterSeries:
    """One counter series: a plain number, no lock (reactor thread only)."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (never negative, as for a prometheus ``Counter``)."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class PlainCounter(_PlainFamily):
    """A labelled counter rendered exactly like prometheus_client's ``Counter`` (``_total`` and ``_created``).

    ``labels(...)`` returns a ``PlainCounterSeries`` with ``inc()``, as ``Counter.labels`` returns a child;
    the series exists (at 0) from that call on. Updated and collected on the reactor thread only.
    """

    _type = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry):
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)
        self._series: dict[tuple[str, ...], PlainCounterSeries] = {}

    def labels(self, *labelvalues: object) -> PlainCounterSeries:
        """The series with these label values (created at 0 on first use)."""
        key = self._label_key(labelvalues)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = PlainCounterSeries()
        return series

    def collect(self) -> list[Metric]:
        """The family with every series, in the order the series were created."""
        family = self._family()
        total, created = self._name + "_total", self._name + "_created"
        with_created = _created_series_enabled()
        for key, series in list(self._series.items()):
            labels = dict(zip(self._labelnames, key))
            family.add_sample(total, labels, series.value)
            if with_created:
                family.add_sample(created, labels, series.created)
        return [family]


class PlainHistogramSeries:
    """One histogram series: a count per bucket (not cumulative) and a sum, no lock (reactor thread only)."""

    __slots__ = ("counts", "sum", "created", "_bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()
        self._bounds = bounds

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it, as ``Histogram.observe`` does."""
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class PlainHistogram(_PlainFamily):
    """A labelled histogram rendered exactly like prometheus_client's ``Histogram``
    (``_bucket`` with ``le``, ``_count``, ``_sum``, ``_created``).

    ``labels(...)`` returns a ``PlainHistogramSeries`` with ``observe()``. ``buckets`` are the upper bounds
    without ``+Inf``, which is added. Updated and collected on the reactor thread only.
    """

    _type = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry, *,
                 buckets: Sequence[float]):
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds) or not bounds:
            raise ValueError(f"{name}: buckets must be given in increasing order")
        super().__init__(name, documentation, labelnames, registry)
        self._bounds = tuple(bounds) if bounds[-1] == INF else (*bounds, INF)
        self._le = tuple(floatToGoString(bound) for bound in self._bounds)
        self._series: dict[tuple[str, ...], PlainHistogramSeries] = {}

    def labels(self, *labelvalues: object) -> PlainHistogramSeries:
        """The series with these label values (created empty on first use)."""
        key = self._label_key(labelvalues)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = PlainHistogramSeries(self._bounds)
        return series

    def collect(self) -> list[Metric]:
        """The family with every series, in the order the series were created."""
        family = self._family()
        with_created = _created_series_enabled()
        for key, series in list(self._series.items()):
            labels = dict(zip(self._labelnames, key))
            self._add_series(family, labels, series, with_created)
        return [family]

    def _add_series(self, family: Metric, labels: dict[str, str], series: PlainHistogramSeries,
                    with_created: bool) -> None:
        name = self._name
        cumulative = 0.0
        for le, count in zip(self._le, list(series.counts)):
            cumulative += count
            family.add_sample(name + "_bucket", {**labels, "le": le}, cumulative)
        family.add_sample(name + "_count", labels, cumulative)
        if self._bounds[0] >= 0:
            family.add_sample(name + "_sum", labels, series.sum)
        if with_created:
            family.add_sample(name + "_created", labels, series.created)


def zero(counter: Counter | PlainCounter, label_values: Iterable[Sequence[str]]) -> None:
    """Create each series of ``counter`` at 0 (its label values are known up front), so a query over it
    reads 0 rather than "no data" before the first event."""
    for values in label_values:
        counter.labels(*values)


class _CallbackCounter(Collector):
    """A counter family whose values are read from a callback at scrape time (counted in another thread)."""

    def __init__(self, name: str, documentation: str, label: str, values: Sequence[str],
                 read: Callable[[], Mapping[str, int]]):
        self._name, self._documentation, self._label, self._values, self._read = (
            name, documentation, label, tuple(values), read)

    def collect(self) -> list[Metric]:
        """One ``_total`` sample per known label value (0 until counted)."""
        family = Metric(self._name, self._documentation, "counter")
        counts = self._read()
        for value in self._values:
            family.add_sample(self._name + "_total", {self._label: value}, float(counts.get(value, 0)))
        return [family]

    def describe(self) -> list[Metric]:
        """The family without samples."""
        return [Metric(self._name, self._documentation, "counter")]


class Metrics:
    """Every metric the service exports, created once per process on one registry."""

    def __init__(self, registry: CollectorRegistry, process_type: str):
        self.registry = registry
        self.process_type = process_type
        self.requests = RequestCounters()
        registry.register(self.requests)
        self.http_duration = PlainHistogram(
            "http_request_duration_seconds", "HTTP request duration by method, route template and route class.",
            ["method", "endpoint", "route_class"], registry, buckets=LATENCY_BUCKETS,
        )
        self.db_pool_usage = Gauge(
            "db_pool_usage_percent", "Pool connections in use, as a percentage of the pool ceiling.",
            ["process_type"], registry=registry,
        )
        self.db_pool_waiting = Gauge(
            "db_pool_waiting_connections", "DB interactions waiting for a pooled connection.",
            ["process_type"], registry=registry,
        )
        self.db_active = Gauge(
            "db_active_connections", "Pooled connections currently in use.", ["process_type"], registry=registry,
        )
        self.db_interactions = Counter(
            "db_interactions_total", "DB interactions by name and outcome.", ["name", "outcome"], registry=registry,
        )
        self.worker_ticks = Counter(
            "worker_ticks_total", "Worker loop iterations by worker and outcome.", ["worker", "outcome"], registry=registry,
        )
        self.worker_last_success = Gauge(
            "worker_last_success_timestamp_seconds", "Unix time of each worker's last successful tick.",
            ["worker"], registry=registry,
        )
        # Counted on every public theme request: plain numbers, rendered at scrape time.
        self.cache_hits = PlainCounter("cache_hits_total", "In-process cache hits (fresh or stale).", ["cache"],
                                       registry)
        self.cache_misses = PlainCounter("cache_misses_total", "In-process cache misses.", ["cache"], registry)
        self.cache_responses = PlainCounter(
            "cache_responses_total", "Cached answers by result (fresh, stale, default).", ["cache", "result"],
            registry,
        )
        self.cache_entries = Gauge("cache_entries", "Entries held in the in-process cache.", ["cache"],
                                   registry=registry)
        self.cache_l2 = Counter(
            "cache_l2_operations_total", "Shared (Redis) cache operations by outcome.", ["cache", "op", "outcome"],
            registry=registry,
        )
        self.cache_refresh = Counter(
            "cache_refresh_total", "Background cache refreshes by outcome.", ["cache", "outcome"], registry=registry,
        )
        self.singleflight_shared = Counter(
            "singleflight_shared_total", "Callers that joined work already in flight instead of starting it.",
            ["name"], registry=registry,
        )
        self._duration_children: dict[tuple[str, str], Callable[[float], None]] = {}
        # DB protection (issue 4). ``name`` is an interaction name: a constant in the code, so bounded.
        self.db_pool_wait = Histogram(
            "db_pool_wait_seconds", "Time DB interactions waited for a pooled connection, by interaction name.",
            ["name"], buckets=DB_BUCKETS, registry=registry,
        )
        self.db_connection_hold = Histogram(
            "db_connection_hold_seconds", "Time DB interactions held their pooled connection, by interaction name.",
            ["name"], buckets=DB_BUCKETS, registry=registry,
        )
        self.db_connection_errors = Counter(
            "db_connection_errors_total", "DB interactions that could not reach the database or lost it midway.",
            ["name"], registry=registry,
        )
        self.db_statement_timeouts = Counter(
            "db_statement_timeouts_total", "Statements Postgres cancelled at statement_timeout (SQLSTATE 57014).",
            ["name"], registry=registry,
        )
        self.db_pool_timeouts = Counter(
            "db_pool_timeouts_total",
            "DB interactions withdrawn unrun because no connection came within DB_CONN_TIMEOUT.",
            ["name"], registry=registry,
        )
        self.db_deadline_timeouts = Counter(
            "db_deadline_timeouts_total",
            "DB interactions whose caller stopped waiting at the overall deadline (conn wait + statement "
            "timeout + margin); the interaction finished, or not, in the background.",
            ["name"], registry=registry,
        )
        self.db_slow_calls = Counter(
            "db_slow_calls_total",
            "DB interactions still holding their connection at DB_SLOW_CALL_THRESHOLD (counted once, while "
            "running), by interaction name.", ["name"], registry=registry,
        )
        self.breaker_checks = Counter(
            "circuit_breaker_checks_total",
            "The breaker's own trivial queries by check (db_liveness_check: sent because calls were slow; "
            "db_breaker_probe: half-open) and outcome (answered, unanswered, no_connection).",
            ["breaker_name", "check", "outcome"], registry=registry,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", ["breaker_name"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions_total", "Circuit breaker state changes by cause.",
            ["breaker_name", "from_state", "to_state", "reason"], registry=registry,
        )
        self.breaker_rejections = Counter(
            "circuit_breaker_rejections_total", "Calls refused by an open (or probe-limited) circuit breaker.",
            ["breaker_name", "request_class"], registry=registry,
        )
        # Players (issue 5): rate limits and the session store. ``endpoint_class`` and ``op`` are constants.
        self.ratelimit_decisions = PlainCounter(  # on every public request: a plain number
            "ratelimit_decisions_total",
            "Rate-limit decisions by endpoint class, outcome (allowed, limited, or fail_open: Redis was "
            "unreachable and the in-process buckets decided) and scope (the level that refused: client or "
            "tenant; none when admitted).",
            ["endpoint_class", "outcome", "scope"], registry,
        )
        self.session_store_operations = Counter(
            "session_store_operations_total", "Session store operations by operation and outcome (ok, error).",
            ["op", "outcome"], registry=registry,
        )
        self.session_store_latency = Histogram(
            "session_store_latency_seconds", "Session store operation latency by operation.",
            ["op"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self._ratelimit_children: dict[tuple[str, str, str], Callable[[], None]] = {}
        # Sportsbook. ``sport`` is one of core.odds.SPORTS (the poller refuses others), ``kind`` one of
        # core.feed_errors.FEED_ERROR_KINDS; every other label takes the fixed values named in its help text.
        self.feed_errors = Counter(
            "feed_errors_total", "Odds feed polls that failed, by sport and error kind.", ["sport", "kind"],
            registry=registry,
        )
        self.odds_last_success = Gauge(
            "odds_worker_last_success_timestamp_seconds",
            "Unix time of each sport's last successful odds poll (absent until the first).", ["sport"],
            registry=registry,
        )
        self.odds_age = Gauge(
            "odds_age_seconds",
            "Seconds since this process last saved each sport's odds, computed at scrape time; before the "
            "sport's first success, seconds since the odds poller was built (process start-up).", ["sport"],
            registry=registry,
        )
        self.feed_fetch_duration = Histogram(
            "feed_fetch_duration_seconds", "Duration of each odds poll (fetch, parse and save), by sport.",
            ["sport"], buckets=FEED_BUCKETS, registry=registry,
        )
        self.bets_placed = Counter(
            "bets_placed_total",
            "Bet placements by outcome: accepted, replayed (an idempotent retry) or rejected.",
            ["outcome"], registry=registry,
        )
        self.bets_settled = Counter(
            "bets_settled_total", "Bets settled by outcome (won, lost, void).", ["outcome"], registry=registry,
        )
        self.bets_review = Counter(
            "bets_review_total",
            "Bets newly held for review by reason (unknown_status, unknown_market, no_score, "
            "missing_result, quarter_line).", ["reason_kind"], registry=registry,
        )
        self.settlement_results_pages = Counter(
            "settlement_results_pages_total", "Results feed pages fetched by the settler, by result (ok, error).",
            ["result"], registry=registry,
        )
        # Redis breaker (issue 10, item 4); its state, transitions and refusals are the circuit_breaker_*
        # families above with breaker_name="redis". ``kind`` is timeout or connection_error.
        self.redis_call_failures = Counter(
            "redis_call_failures_total",
            "Redis calls that timed out or met a connection error (what the Redis breaker counts), by kind.",
            ["kind"], registry=registry,
        )
        self._add_operations_kit_metrics(registry)
        self._add_health_probe_metrics(registry)
        self._add_http_edge_metrics(registry)
        self._interaction_names: set[str] = set()

    # --- issue 13: the operations kit (peaks, workers from start-up, password hashing) -------------------

    def _add_operations_kit_metrics(self, registry: CollectorRegistry) -> None:
        """The families issue 13 adds (process, platform and build info: ``obs.platform_metrics``)."""
        self.db_pool_usage_max = Gauge(
            "db_pool_usage_percent_max",
            "Highest share of the pool in use at any moment of the last minute (db_pool_usage_percent is "
            "the value at scrape time only).", ["process_type"], registry=registry,
        )
        self.db_pool_waiting_max = Gauge(
            "db_pool_waiting_connections_max",
            "Most DB interactions waiting for a connection at any moment of the last minute.",
            ["process_type"], registry=registry,
        )
        self.worker_started = Gauge(
            "worker_started_timestamp_seconds",
            "Unix time each worker was built (process start-up): with worker_last_success_timestamp_seconds, "
            "how long a worker that never succeeded has been trying.", ["worker"], registry=registry,
        )
        self.hashing_queue = Gauge(
            "password_hashing_queue_depth", "Password hash/verify operations waiting for a hashing thread.",
            registry=registry,
        )
        self.hashing_queue_max = Gauge(
            "password_hashing_queue_depth_max",
            "Most password operations waiting for a hashing thread at any moment of the last minute.",
            registry=registry,
        )
        self.hashing_threads = Gauge(
            "password_hashing_threads", "Threads that hash and verify passwords (argon2id).", registry=registry,
        )
        self.hashing_wait = Histogram(
            "password_hashing_wait_seconds", "Time password operations waited for a hashing thread.",
            buckets=HASHING_BUCKETS, registry=registry,
        )
        self.hashing_duration = Histogram(
            "password_hashing_duration_seconds", "CPU-bound time of each password operation, by op (hash, verify).",
            ["op"], buckets=HASHING_BUCKETS, registry=registry,
        )
        self.hashing_rejected = Counter(
            "password_hashing_rejected_total",
            "Password operations refused at once because too many were already waiting (the caller got 503).",
            registry=registry,
        )
        for op in ("hash", "verify"):
            self.hashing_duration.labels(op)

    # --- issue 11: the HTTP edge (connections) -------------------------------------------------------

    def _add_http_edge_metrics(self, registry: CollectorRegistry) -> None:
        """Open connections and the connections we closed, by reason (``web.channel.CLOSE_REASONS``)."""
        self.http_connections_open = Gauge(
            "http_connections_open", "HTTP connections open now, on every listener.", registry=registry,
        )
        self._connection_counts: list[Callable[[], int]] = []
        self.http_connections_closed = Counter(
            "http_connections_closed",
            "HTTP connections the server closed or refused, by reason: header_deadline (request head not "
            "complete in HTTP_HEADER_TIMEOUT), connection_cap (over HTTP_MAX_CONNECTIONS_PER_CLIENT), "
            "peer_not_reading (write buffer not drained in HTTP_WRITE_TIMEOUT), header_too_large (414/431), "
            "bad_request (400), drain_idle (idle keep-alive closed by the SIGTERM drain), drain_timeout "
            "(still open when DRAIN_TIMEOUT passed).", ["reason"], registry=registry,
        )
        zero(self.http_connections_closed, [(reason,) for reason in CONNECTION_CLOSE_REASONS])

    def watch_connections(self, open_count: Callable[[], int]) -> None:
        """Add ``open_count()`` to ``http_connections_open`` at scrape time (one per listener, summed)."""
        self._connection_counts.append(open_count)
        counts = self._connection_counts
        self.http_connections_open.set_function(lambda: sum(count() for count in counts))

    def record_connection_closed(self, reason: str) -> None:
        """Count one connection closed (or refused) by the server for ``reason``."""
        self.http_connections_closed.labels(reason).inc()

    def watch_pool_peaks(self, peaks: Callable[[], object]) -> None:
        """Export the pool's peak gauges from ``peaks()`` (a ``PoolSnapshot`` of maxima) at scrape time."""
        labels = (self.process_type,)
        self.db_pool_usage_max.labels(*labels).set_function(lambda: peaks().usage_percent)  # type: ignore[attr-defined]
        self.db_pool_waiting_max.labels(*labels).set_function(lambda: peaks().waiting)  # type: ignore[attr-defined]

    def watch_password_hashing(self, threads: int, queue_depth: Callable[[], float],
                               queue_depth_peak: Callable[[], float]) -> None:
        """Export the hashing pool's size and queue (current and peak) at scrape time."""
        self.hashing_threads.set(threads)
        self.hashing_queue.set_function(queue_depth)
        self.hashing_queue_max.set_function(queue_depth_peak)

    def record_password_operation(self, op: str, wait_s: float, run_s: float) -> None:
        """Time one password operation (called in a hashing thread: prometheus_client metrics are locked)."""
        self.hashing_wait.observe(wait_s)
        self.hashing_duration.labels(op).observe(run_s)

    def worker_built(self, worker: str, now: float) -> None:
        """A worker exists from ``now``: its tick counters at 0 and its start time, before any tick runs."""
        zero(self.worker_ticks, [(worker, "ok"), (worker, "error")])
        self.worker_started.labels(worker).set(now)

    def record_worker_tick(self, worker: str, ok: bool, now: float) -> None:
        """Count one worker tick; a success also sets ``worker_last_success_timestamp_seconds``."""
        self.worker_ticks.labels(worker, "ok" if ok else "error").inc()
        if ok:
            self.worker_last_success.labels(worker).set(now)

    def _first_interaction(self, name: str) -> None:
        """Create every per-interaction counter of ``name`` at 0, so its errors read 0 rather than no data."""
        self._interaction_names.add(name)
        self.db_interactions.labels(name, "ok")
        for counter in (self.db_connection_errors, self.db_statement_timeouts, self.db_pool_timeouts,
                        self.db_deadline_timeouts, self.db_slow_calls):
            counter.labels(name)

    # --- end of issue 13 block ----------------------------------------------------------------------------

    def watch_pool(self, snapshot: Callable[[], object]) -> None:
        """Export pool gauges computed from ``snapshot()`` at scrape time."""
        labels = (self.process_type,)
        self.db_pool_usage.labels(*labels).set_function(lambda: snapshot().usage_percent)  # type: ignore[attr-defined]
        self.db_pool_waiting.labels(*labels).set_function(lambda: snapshot().waiting)  # type: ignore[attr-defined]
        self.db_active.labels(*labels).set_function(lambda: snapshot().in_use)  # type: ignore[attr-defined]

    def watch_connection_replacements(self, replacements: Callable[[], Mapping[str, int]]) -> None:
        """Export ``db_connections_replaced_total{outcome}`` from ``replacements()`` at scrape time."""
        self.registry.register(_CallbackCounter(
            "db_connections_replaced",
            "Pooled connections found dead at the start of a transaction, by outcome: replaced (a new "
            "connection was opened and the transaction ran on it) or failed (connecting failed too).",
            "outcome", ("replaced", "failed"), replacements))

    def watch_odds_age(self, sport: str, age_s: Callable[[], float]) -> None:
        """Export ``odds_age_seconds{sport}`` computed from ``age_s()`` at scrape time (it grows between polls)."""
        self.odds_age.labels(sport).set_function(age_s)

    def record_request(self, method: str, endpoint: str, status: int, tenant: str, seconds: float,
                       route_class: str = NO_ROUTE_CLASS) -> None:
        """Count one finished HTTP request (label children are cached: this is on every request).

        ``route_class`` is a function of ``method`` and ``endpoint`` (one class per route), so it adds no series.
        """
        if method not in KNOWN_METHODS:
            method = "OTHER"
        self.requests.record(method, endpoint, str(status), tenant, route_class,
                             tenant not in (UNKNOWN_TENANT, NO_TENANT))
        observe = self._duration_children.get((method, endpoint))
        if observe is None:
            observe = self.http_duration.labels(method, endpoint, route_class).observe
            self._duration_children[(method, endpoint)] = observe
        observe(seconds)

    def record_interaction(self, name: str, wait_s: float, hold_s: float, failure: object) -> None:
        """Count and time one DB interaction (an observer for ``Database.add_observer``).

        Wait time is observed for every interaction; hold time only for those that got a connection
        (a failure with ``hold_s == 0`` never held one). Connection errors and statement timeouts are
        also counted on their own.
        """
        error = None if failure is None else getattr(failure, "value", failure)
        if name not in self._interaction_names:
            self._first_interaction(name)
        self.db_interactions.labels(name, "ok" if error is None else type(error).__name__).inc()
        self.db_pool_wait.labels(name).observe(wait_s)
        if error is None or hold_s > 0:
            self.db_connection_hold.labels(name).observe(hold_s)
        if isinstance(error, DatabaseUnavailable):
            self.db_connection_errors.labels(name).inc()
        elif isinstance(error, StatementTimeout):
            self.db_statement_timeouts.labels(name).inc()

    def record_rate_limit(self, endpoint_class: str, outcome: str, scope: str) -> None:
        """Count one rate-limit decision (label children are cached: this is on hot paths)."""
        key = (endpoint_class, outcome, scope)
        inc = self._ratelimit_children.get(key)
        if inc is None:
            inc = self.ratelimit_decisions.labels(*key).inc
            self._ratelimit_children[key] = inc
        inc()

    def rate_limit_counter(self, endpoint_class: str, outcome: str, scope: str) -> PlainCounterSeries:
        """The ``ratelimit_decisions_total`` series itself, for a caller that counts one kind of decision very
        often (add 1 to its ``value``: a plain number, reactor thread only)."""
        return self.ratelimit_decisions.labels(endpoint_class, outcome, scope)

    def record_session_store(self, op: str, ok: bool, seconds: float) -> None:
        """Count and time one session store operation."""
        self.session_store_operations.labels(op, "ok" if ok else "error").inc()
        self.session_store_latency.labels(op).observe(seconds)

    # --- issue 11 (items 4-5): how /health/detailed's probes were answered --------------------------------

    def _add_health_probe_metrics(self, registry: CollectorRegistry) -> None:
        self.health_probes = Counter(
            "health_probes_total",
            "Answers of /health/detailed's probes by how they were obtained: run (a new probe left the "
            "process), cache (a reading younger than HEALTH_PROBE_CACHE_SECONDS), in_flight (joined a probe "
            "already running).", ["probe", "source"], registry=registry)

    def health_probe_built(self, probe: str) -> None:
        """A probe exists: its three series at 0 from start-up."""
        zero(self.health_probes, [(probe, source) for source in ("run", "cache", "in_flight")])

    def record_health_probe(self, probe: str, source: str) -> None:
        """Count how one caller of ``probe`` was answered."""
        self.health_probes.labels(probe, source).inc()
