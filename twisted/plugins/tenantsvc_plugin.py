"""Registers ``twistd tenantsvc``; everything else is imported lazily by tenantsvc.tap."""
from twisted.application.service import ServiceMaker

tenantsvc = ServiceMaker("tenantsvc", "tenantsvc.tap", "Multi-tenant sportsbook API (web and workers).", "tenantsvc")
