"""Tenant-scoped Klein routes under ``/<tenant>/api/…`` (the public theme is served by the root resource)."""

from __future__ import annotations

from klein import Klein

from tenantsvc.web.routing import install_error_handlers


class TenantApi:
    """Player-facing routes; later issues add auth, odds and bets here."""

    app = Klein()
    install_error_handlers(app)
