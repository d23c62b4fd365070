"""Which tenants exist: loaded from the DB at start and on a period, updated when tenants are created."""

from __future__ import annotations

from typing import Iterable


class TenantRegistry:
    """The set of active tenant slugs; ``loaded`` is False until the DB has answered once."""

    def __init__(self) -> None:
        self._slugs: frozenset[str] = frozenset()
        self.loaded = False

    def replace(self, slugs: Iterable[str]) -> None:
        """Install a fresh list from the DB."""
        self._slugs = frozenset(slugs)
        self.loaded = True

    def add(self, slug: str) -> None:
        """Record a tenant created by this process."""
        self._slugs = self._slugs | {slug}

    def is_known(self, slug: str) -> bool:
        """True when ``slug`` is an active tenant as far as the last load knows."""
        return slug in self._slugs

    def may_exist(self, slug: str) -> bool:
        """False only when a loaded registry says the tenant does not exist."""
        return slug in self._slugs or not self.loaded

    def __len__(self) -> int:
        return len(self._slugs)
