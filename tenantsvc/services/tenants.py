"""Tenant administration: create and list tenants, read and save themes, credit wallets."""

from __future__ import annotations

from typing import Any, Mapping

from tenantsvc.adapters.db import tenant_store
from tenantsvc.core.storage_errors import IntegrityViolation
from tenantsvc.adapters.db.pool import InteractionRunner
from tenantsvc.runtime.deferreds import shield
from tenantsvc.core.tenants import parse_new_tenant
from tenantsvc.core.theme import DEFAULT_THEME, Theme, parse_theme
from tenantsvc.core.validation import ValidationFailed, check_text, check_unknown_fields
from tenantsvc.services.errors import Conflict, NotFoundError, ServiceUnavailable
from tenantsvc.services.theme_cache import ThemeCache

MAX_CREDIT_CENTS = 10**11  # one billion in major units: anything larger is a typo
MAX_REASON_LENGTH = 200


def parse_credit(payload: Mapping[str, Any]) -> tuple[int, str]:
    """Validate ``{"amount_cents", "reason"}``: a non-zero whole number of cents and a short reason."""
    errors: dict[str, str] = {}
    check_unknown_fields(errors, payload, {"amount_cents", "reason"})
    amount = payload.get("amount_cents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        errors["amount_cents"] = "must be a whole number of cents"
    elif amount == 0 or abs(amount) > MAX_CREDIT_CENTS:
        errors["amount_cents"] = f"must be non-zero and at most {MAX_CREDIT_CENTS} in size"
    reason = check_text(errors, "reason", payload.get("reason"), min_len=1, max_len=MAX_REASON_LENGTH)
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(amount, int) and reason is not None
    return amount, reason


class TenantService:
    """Admin operations on tenants; writes are shielded from client disconnects."""

    def __init__(self, reads: InteractionRunner, writes: InteractionRunner, themes: ThemeCache):
        self._reads = reads
        self._writes = writes
        self._themes = themes

    async def create_tenant(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Create a tenant from ``{"slug", "name"}``; ``Conflict`` if the slug is taken."""
        new = parse_new_tenant(payload)
        try:
            tenant = await shield(self._writes.run_interaction("insert_tenant", tenant_store.insert_tenant_txn,
                                                           new.slug, new.name))
        except IntegrityViolation as violation:
            if violation.kind == "unique":
                raise Conflict("tenant_exists", f"a tenant with slug {new.slug!r} already exists") from None
            raise
        await self._themes.store(new.slug, DEFAULT_THEME)  # registry, L1, L2 and the fleet learn of it
        return tenant

    async def list_tenants(self) -> list[dict[str, Any]]:
        """Every tenant."""
        return await self._reads.run_interaction("list_tenants", tenant_store.list_tenants_txn)

    async def get_theme(self, slug: str) -> tuple[Theme, bool]:
        """The tenant's saved theme (the default palette if never saved) and whether it came from the cache.

        While the database is refused (breaker open, pool exhausted) the theme cached for the public
        path is served instead; with nothing cached the refusal propagates (503).
        """
        try:
            return await self._reads.run_interaction("load_theme", tenant_store.load_theme_txn, slug), False
        except tenant_store.NotFound:
            raise NotFoundError(f"no tenant {slug!r}") from None
        except ServiceUnavailable:
            cached = self._themes.cached_theme(slug)
            if cached is None:
                raise
            return cached, True

    async def save_theme(self, slug: str, payload: Mapping[str, Any]) -> Theme:
        """Validate and store a full theme (absent keys take the defaults), then update the public cache."""
        theme = parse_theme(payload, DEFAULT_THEME)
        try:
            await shield(self._writes.run_interaction("save_theme", tenant_store.save_theme_txn, slug, theme))
        except tenant_store.NotFound:
            raise NotFoundError(f"no tenant {slug!r}") from None
        await self._themes.store(slug, theme)  # write-through to L2 and invalidate every instance's L1
        return theme

    async def credit(
        self, slug: str, username: str, payload: Mapping[str, Any], idempotency_key: str | None
    ) -> tenant_store.CreditResult:
        """Credit (or, with a negative amount, debit) a user's wallet exactly once per idempotency key."""
        amount, reason = parse_credit(payload)
        try:
            result = await shield(self._writes.run_interaction(
                "credit_wallet", tenant_store.credit_wallet_txn, slug, username, amount, reason, idempotency_key))
            return _same_request(result, amount)
        except tenant_store.NotFound:
            raise NotFoundError(f"no user {username!r} in tenant {slug!r}") from None
        except tenant_store.InsufficientFunds:
            raise Conflict("insufficient_funds", "the wallet balance cannot go below zero") from None
        except IntegrityViolation as violation:
            if violation.kind != "unique" or idempotency_key is None:
                raise
        # A concurrent request with the same key won the race: answer with what it recorded.
        replay = await self._writes.run_interaction(
            "replay_credit", tenant_store.replay_credit_txn, slug, username, idempotency_key)
        if replay is None:
            raise Conflict("idempotency_conflict", "a concurrent request with this key failed; retry")
        return _same_request(replay, amount)


def _same_request(result: tenant_store.CreditResult, amount: int) -> tenant_store.CreditResult:
    """A replayed idempotency key must carry the same amount; anything else is a client bug (422)."""
    if result.replayed and result.amount_cents != amount:
        raise ValidationFailed({"Idempotency-Key": "was already used for a different request"})
    return result
