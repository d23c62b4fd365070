"""The ``--demo`` tenant: created with a non-default theme if missing, so a laptop has something to curl."""

from __future__ import annotations

from tenantsvc.adapters.db import tenant_store
from tenantsvc.core.storage_errors import IntegrityViolation
from tenantsvc.adapters.db.pool import InteractionRunner, Txn
from tenantsvc.core.theme import Theme

DEMO_SLUG = "demo"
DEMO_NAME = "Demo Sportsbook"
DEMO_THEME = Theme(
    primary_color="#F59E0B",
    secondary_color="#0F172A",
    accent_color="#EF4444",
    background_color="#020617",
    text_color="#F8FAFC",
    font_family="Inter, sans-serif",
    layout_style="wide",
    button_style="sharp",
    card_style="glow",
    logo_type="text",
    logo_url="",
    sportsbook_name="Demo Sportsbook",
)


def ensure_demo_txn(txn: Txn) -> bool:
    """Create the demo tenant and its theme unless it exists; True when created."""
    if txn.one("SELECT id FROM tenants WHERE slug = %s", (DEMO_SLUG,)) is not None:
        return False
    tenant_store.insert_tenant_txn(txn, DEMO_SLUG, DEMO_NAME)
    tenant_store.save_theme_txn(txn, DEMO_SLUG, DEMO_THEME)
    return True


async def ensure_demo_tenant(db: InteractionRunner) -> bool:
    """Idempotently create the demo tenant; two instances starting together are fine."""
    try:
        return await db.run_interaction("ensure_demo", ensure_demo_txn)
    except IntegrityViolation:
        return False  # another instance created it first
