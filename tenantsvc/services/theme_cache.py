"""The two-tier theme cache behind the public theme routes.

L1 is an in-process LRU of precomputed answers (body bytes and ETags made once per fill); L2 is Redis
(``branding:<tenant>``, shared by the fleet). A request never touches the database: it is answered
from L1, else from L2 within a short timeout, else with the default theme, and a stale or missing
entry starts a background refresh. Refreshes are coalesced per process (``SingleFlight``) and across
the fleet (a Redis lock with an owner token). A failed refresh never replaces a good entry.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple

from twisted.python.failure import Failure
from eliot import ActionType, fields, write_failure
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from tenantsvc.adapters.db import tenant_store
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.bounded import with_timeout
from tenantsvc.adapters.redis import KeyValueStore, RedisUnavailable
from tenantsvc.core.http_cache import THEME_DEFAULT, strong_etag, theme_cache_headers
from tenantsvc.core.theme import DEFAULT_THEME, Theme
from tenantsvc.core.theme_cache_rules import (
    FRESH, STALE, CachedTheme, CacheWindows, decode_l2, encode_l2, freshness,
)
from tenantsvc.core.theme_css import render_theme_css
from tenantsvc.runtime.actions import add_fields, traced
from tenantsvc.obs.metrics import Metrics, zero
from tenantsvc.services.registry import TenantRegistry
from tenantsvc.runtime.singleflight import SingleFlight
from tenantsvc.services.theme_publisher import INVALIDATION_CHANNEL, L2_TTL_MS, ThemePublisher, l2_key

__all__ = ["INVALIDATION_CHANNEL", "L2_TTL_MS", "ThemeCache", "ThemeCacheSettings", "l2_key", "lock_key"]

LOCK_TTL_MS = 15_000  # longer than REFRESH_TIMEOUT_S, so a lock never expires under a live refresh
REFRESH_TIMEOUT_S = 5.0
WARM_BATCH = 500
JSON, CSS = "json", "css"
# The label values of cache_refresh_total{outcome} and cache_l2_operations_total{op,outcome}, at 0 from start-up.
REFRESH_OUTCOMES = ("ok", "error", "not_found", "lock_lost")
L2_OPERATIONS = (("get", "hit"), ("get", "miss"), ("get", "error"), ("set", "ok"), ("set", "error"))

REFRESH = ActionType("tenantsvc:themes:refresh", fields(tenant=str, trigger_correlation_id=str), fields(outcome=str),
                     "Reload one tenant's theme from the DB into L1/L2 (background).")
WARM = ActionType("tenantsvc:themes:warm", [], fields(tenants=int), "Load every tenant's theme into L1/L2.")


def lock_key(slug: str) -> str:
    """The Redis key of a tenant's fleet-wide refresh lock."""
    return f"lock:branding:{slug}"


class ThemeAnswer(NamedTuple):
    """One ready-to-send representation: the body, its strong ETag, and which row of the header table
    (``core.http_cache.theme_cache_headers``: fresh, stale or default) its caching headers come from.

    Made per request from the cached entry (a named tuple costs less to make than to keep four per tenant).
    """

    body: bytes
    etag: bytes
    result: str  # fresh, stale or default


@dataclass(frozen=True, slots=True)
class RenderedTheme:
    """A cached theme as its JSON and CSS bodies and their ETags, computed once at fill time, and the time
    it was read (``fetched_at``, Unix seconds). About 1 KiB a tenant.

    The ``Theme`` itself is not kept: the JSON body holds every field, and the rare reader that needs the
    theme (a read served while the database is refused) gets it back from there (``theme``).
    """

    fetched_at: float
    json_body: bytes
    json_etag: bytes
    css_body: bytes
    css_etag: bytes

    @classmethod
    def build(cls, entry: CachedTheme) -> "RenderedTheme":
        """Render both representations once."""
        json_body, css_body = entry.theme.to_json_bytes(), render_theme_css(entry.theme)
        return cls(entry.fetched_at, json_body, _etag(json_body), css_body, _etag(css_body))

    def answer(self, kind: str, result: str) -> ThemeAnswer:
        """The ``kind`` (json or css) answer as a ``result`` (fresh or stale) answer."""
        if kind == JSON:
            return ThemeAnswer(self.json_body, self.json_etag, result)
        return ThemeAnswer(self.css_body, self.css_etag, result)

    def theme(self) -> Theme:
        """The theme these bodies were rendered from."""
        return Theme.from_wire(json.loads(self.json_body))


def _etag(body: bytes) -> bytes:
    return strong_etag(body).encode("ascii")


def default_answers() -> dict[str, ThemeAnswer]:
    """The default theme's answers (JSON and CSS), served while a tenant's own theme is not loaded."""
    bodies = {JSON: DEFAULT_THEME.to_json_bytes(), CSS: render_theme_css(DEFAULT_THEME)}
    return {kind: ThemeAnswer(body, _etag(body), THEME_DEFAULT) for kind, body in bodies.items()}


@dataclass(frozen=True)
class ThemeCacheSettings:
    """Tunables of the theme cache."""

    windows: CacheWindows = CacheWindows()
    max_entries: int = 10_000
    l2_timeout_s: float = 0.05


class ThemeCache:
    """Answers public theme requests from memory and keeps L1/L2 filled in the background."""

    def __init__(
        self,
        *,
        clock: Any,
        db: InteractionRunner,
        registry: TenantRegistry,
        metrics: Metrics,
        l2: KeyValueStore | None = None,
        settings: ThemeCacheSettings = ThemeCacheSettings(),
        new_token: Callable[[], str] = lambda: secrets.token_hex(16),
    ):
        self._clock = clock
        self._db = db
        self._registry = registry
        self._metrics = metrics
        self._l2 = l2
        self._publisher = ThemePublisher(l2, clock, metrics) if l2 is not None else None
        self._settings = settings
        self._new_token = new_token
        self._l1: OrderedDict[str, RenderedTheme] = OrderedDict()
        windows = settings.windows
        self.headers = theme_cache_headers(windows.ttl_s, windows.stale_while_revalidate_s)
        self._defaults = default_answers()
        self._refreshes: SingleFlight[None] = SingleFlight(
            on_shared=metrics.singleflight_shared.labels("branding_refresh").inc)
        self._l2_reads: SingleFlight[CachedTheme | None] = SingleFlight(
            on_shared=metrics.singleflight_shared.labels("branding_l2_read").inc)
        # Plain-number counters (obs.metrics.PlainCounter): updated here on the reactor thread only, no lock.
        self._hits = metrics.cache_hits.labels("branding")
        self._misses = metrics.cache_misses.labels("branding")
        self._responses = {result: metrics.cache_responses.labels("branding", result)
                           for result in (FRESH, STALE, "default")}
        metrics.cache_entries.labels("branding").set_function(lambda: len(self._l1))
        zero(metrics.cache_refresh, [("branding", outcome) for outcome in REFRESH_OUTCOMES])
        if l2 is not None:
            zero(metrics.cache_l2, [("branding", *op_outcome) for op_outcome in L2_OPERATIONS])

    # -- the request path -------------------------------------------------------------------------

    def answer(self, slug: str, kind: str, correlation_id: str = "") -> ThemeAnswer | Deferred | None:
        """The answer for ``slug`` (``kind`` json or css): immediate from L1, a Deferred when L2 must be
        asked, or None when the tenant does not exist. Never touches the database."""
        rendered = self._l1.get(slug)
        if rendered is not None:
            state = freshness(rendered.fetched_at, self._clock.seconds(), self._settings.windows)
            if state is FRESH:
                self._l1.move_to_end(slug)
                self._hits.inc()
                return self._respond(rendered.answer(kind, FRESH))
            if state is STALE:
                self._l1.move_to_end(slug)
                self._hits.inc()
                self.refresh(slug, correlation_id)
                return self._respond(rendered.answer(kind, STALE))
        elif not self._registry.may_exist(slug):
            return None
        self._misses.inc()
        return ensureDeferred(self._answer_from_l2(slug, kind, correlation_id))

    def peek(self, slug: str, kind: str) -> ThemeAnswer:
        """What is cached for ``slug`` (fresh variant, whatever its age) or the defaults; no refresh, no metrics.

        For answers that must not cause work, such as a rate-limited request.
        """
        rendered = self._l1.get(slug)
        return rendered.answer(kind, FRESH) if rendered is not None else self._defaults[kind]

    def cached_theme(self, slug: str) -> Theme | None:
        """The theme held in L1 for ``slug`` whatever its age (for reads served while the DB is refused)."""
        rendered = self._l1.get(slug)
        return rendered.theme() if rendered is not None else None

    def _respond(self, answer: ThemeAnswer) -> ThemeAnswer:
        self._responses[answer.result].inc()
        return answer

    async def _answer_from_l2(self, slug: str, kind: str, correlation_id: str) -> ThemeAnswer:
        entry = await self._l2_reads.run(slug, lambda: self._read_l2(slug))
        rendered: RenderedTheme | None
        if entry is not None:
            rendered = self._install(entry)
            state = freshness(entry.fetched_at, self._clock.seconds(), self._settings.windows)
            if state is FRESH:
                return self._respond(rendered.answer(kind, FRESH))
        else:
            rendered = self._l1.get(slug)  # an expired entry is still the last good theme
        self.refresh(slug, correlation_id)
        if rendered is not None:
            return self._respond(rendered.answer(kind, STALE))
        return self._respond(self._defaults[kind])

    async def _read_l2(self, slug: str) -> CachedTheme | None:
        if self._l2 is None:
            return None
        try:
            raw = await with_timeout(self._clock, self._l2.get(l2_key(slug)), self._settings.l2_timeout_s)
        except Exception:  # timeout or Redis down: the request carries on without L2
            self._metrics.cache_l2.labels("branding", "get", "error").inc()
            return None
        entry = decode_l2(raw)
        if entry is None or entry.slug != slug:
            self._metrics.cache_l2.labels("branding", "get", "miss").inc()
            return None
        self._metrics.cache_l2.labels("branding", "get", "hit").inc()
        return entry

    # -- filling ----------------------------------------------------------------------------------

    def _install(self, entry: CachedTheme) -> RenderedTheme:
        """Put ``entry`` in L1 unless L1 already holds something newer; evict the least recently used."""
        current = self._l1.get(entry.slug)
        if current is not None and current.fetched_at > entry.fetched_at:
            return current
        rendered = RenderedTheme.build(entry)
        self._l1[entry.slug] = rendered
        self._l1.move_to_end(entry.slug)
        while len(self._l1) > self._settings.max_entries:
            self._l1.popitem(last=False)
        return rendered

    def refresh(self, slug: str, correlation_id: str = "") -> Deferred:
        """Reload ``slug`` from the DB in the background, once per process and (with Redis) once per fleet.

        The refresh is its own eliot action naming the correlation id of the request that caused it.
        """
        action = REFRESH(tenant=slug, trigger_correlation_id=correlation_id)
        return self._refreshes.run(slug, lambda: traced(action, lambda: self._refresh(slug))).addErrback(
            lambda failure: None)

    async def _refresh(self, slug: str) -> None:
        token = await self._acquire_lock(slug)
        if token is False:
            outcome = "lock_lost"
        else:
            try:
                outcome = await self._reload(slug)
            finally:
                if isinstance(token, str):
                    self._release_lock(slug, token)
        self._metrics.cache_refresh.labels("branding", outcome).inc()
        add_fields(outcome=outcome)

    async def _reload(self, slug: str) -> str:
        """Read the theme from the DB and store it everywhere; a failure leaves the cached entry alone."""
        read_at = self._clock.seconds()
        try:
            theme = await with_timeout(self._clock, self._db.run_interaction(
                "refresh_theme", tenant_store.load_theme_txn, slug), REFRESH_TIMEOUT_S)
        except tenant_store.NotFound:
            self._l1.pop(slug, None)
            return "not_found"
        except Exception:
            write_failure(Failure())
            return "error"
        await self.store(slug, theme, read_at=read_at)
        return "ok"

    async def _acquire_lock(self, slug: str) -> str | bool | None:
        """A token when we hold the fleet lock, False when another instance does, None without Redis."""
        if self._l2 is None:
            return None
        token = self._new_token()
        try:
            acquired = await self._l2.set(lock_key(slug), token, px=LOCK_TTL_MS, nx=True)
        except RedisUnavailable:
            return None  # Redis down: refresh locally; SingleFlight still bounds it to one per process
        return token if acquired else False

    def _release_lock(self, slug: str, token: str) -> None:
        assert self._l2 is not None
        self._l2.compare_and_delete(lock_key(slug), token).addErrback(lambda failure: None)

    async def store(self, slug: str, theme: Theme, *, read_at: float | None = None) -> None:
        """Install a theme just read or saved in L1, L2 and every instance's L1 (pub/sub).

        ``read_at`` is when the DB read began (a refresh); a save passes nothing, its data being current
        now. Newest wins everywhere: a refresh that read before a save committed can never replace the
        saved theme, here, in Redis or on another instance.
        """
        entry = CachedTheme(slug=slug, theme=theme, fetched_at=self._clock.seconds() if read_at is None else read_at)
        self._install(entry)
        self._registry.add(slug)
        if self._publisher is not None:
            await self._publisher.publish(entry)

    def stop(self) -> None:
        """At shutdown: stop retrying theme writes Redis refused (the database has them; peers refresh at TTL)."""
        if self._publisher is not None:
            self._publisher.stop()

    def on_invalidation(self, payload: str) -> None:
        """A message from another instance: install the theme it carries (newest wins)."""
        entry = decode_l2(payload)
        if entry is None:
            return
        self._registry.add(entry.slug)
        self._install(entry)

    def mark_all_stale(self) -> None:
        """After a pub/sub outage we may have missed saves: serve what we have, but revalidate it."""
        cutoff = self._clock.seconds() - self._settings.windows.ttl_s
        for slug, rendered in list(self._l1.items()):
            if rendered.fetched_at > cutoff:
                self._l1[slug] = replace(rendered, fetched_at=cutoff)

    def _count_l2_set(self, _: object, outcome: str) -> None:
        self._metrics.cache_l2.labels("branding", "set", outcome).inc()

    def warm(self) -> Deferred:
        """Load every active tenant's theme in batches into L1 and L2 and refresh the registry."""
        return traced(WARM(), self._warm)

    async def _warm(self) -> int:
        slugs: list[str] = []
        after = ""
        while True:
            now = self._clock.seconds()  # before the read: a save committed meanwhile stays newer
            batch = await self._db.run_interaction(
                "load_all_themes", tenant_store.load_all_themes_txn, after, WARM_BATCH)
            writes = []
            for slug, theme in batch:
                slugs.append(slug)
                entry = CachedTheme(slug=slug, theme=theme, fetched_at=now)
                self._install(entry)
                if self._l2 is not None:
                    writes.append(self._l2.set_if_newer(l2_key(slug), encode_l2(entry), now, px=L2_TTL_MS)
                                  .addCallbacks(self._count_l2_set, self._count_l2_set, callbackArgs=("ok",),
                                                errbackArgs=("error",)))
            if writes:
                await gatherResults(writes)  # every write counted itself; none fails
            if len(batch) < WARM_BATCH:
                break
            after = batch[-1][0]
        self._registry.replace(slugs)
        for slug in [s for s in self._l1 if not self._registry.is_known(s)]:
            del self._l1[slug]
        add_fields(tenants=len(slugs))
        return len(slugs)

    def __len__(self) -> int:
        return len(self._l1)
