"""Public theme answers from an in-process cache, filled from the DB at start and on saves.

``public_answer`` never touches the DB: it answers from memory, or with the default theme when the
tenant may exist but nothing is cached yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from eliot import start_action

from tenantsvc.adapters.db import tenant_store
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.core.http_cache import strong_etag
from tenantsvc.core.theme import DEFAULT_THEME, Theme
from tenantsvc.services.registry import TenantRegistry

FRESH_CACHE_CONTROL = b"public, max-age=300, stale-while-revalidate=60"
DEFAULT_CACHE_CONTROL = b"public, max-age=60, stale-while-revalidate=30"
WARM_BATCH = 500


@dataclass(frozen=True)
class ThemeAnswer:
    """Everything needed to answer load-theme, computed once when the entry is filled."""

    theme: Theme
    body: bytes
    etag: bytes
    etag_text: str
    cache_control: bytes
    cache_status: bytes

    @classmethod
    def build(cls, theme: Theme, *, is_default: bool) -> "ThemeAnswer":
        """Precompute body, strong ETag and headers for ``theme``."""
        body = theme.to_json_bytes()
        etag = strong_etag(body)
        return cls(
            theme=theme,
            body=body,
            etag=etag.encode("ascii"),
            etag_text=etag,
            cache_control=DEFAULT_CACHE_CONTROL if is_default else FRESH_CACHE_CONTROL,
            cache_status=b"tenantsvc; default" if is_default else b"tenantsvc; hit",
        )


DEFAULT_ANSWER = ThemeAnswer.build(DEFAULT_THEME, is_default=True)


class ThemeService:
    """Serves themes from memory; loads them from the DB in the background."""

    def __init__(self, db: InteractionRunner, registry: TenantRegistry):
        self._db = db
        self._registry = registry
        self._answers: dict[str, ThemeAnswer] = {}

    def public_answer(self, slug: str) -> ThemeAnswer | None:
        """The cached answer for ``slug``, the default answer if it may exist, or None if it does not."""
        answer = self._answers.get(slug)
        if answer is not None:
            return answer
        return DEFAULT_ANSWER if self._registry.may_exist(slug) else None

    def remember(self, slug: str, theme: Theme) -> None:
        """Replace the cached answer for ``slug`` (after a save, or when warming)."""
        self._answers[slug] = ThemeAnswer.build(theme, is_default=False)

    async def warm(self) -> int:
        """Load every active tenant's theme in batches and refresh the tenant registry; return the count."""
        with start_action(action_type="tenantsvc:themes:warm") as action:
            loaded: dict[str, ThemeAnswer] = {}
            after = ""
            while True:
                batch = await self._db.run_interaction(
                    "load_all_themes", tenant_store.load_all_themes_txn, after, WARM_BATCH
                )
                for slug, theme in batch:
                    loaded[slug] = ThemeAnswer.build(theme, is_default=False)
                if len(batch) < WARM_BATCH:
                    break
                after = batch[-1][0]
            self._answers = loaded
            self._registry.replace(loaded)
            action.addSuccessFields(tenants=len(loaded))
            return len(loaded)

    def cached_count(self) -> int:
        """How many tenants have a cached answer."""
        return len(self._answers)

