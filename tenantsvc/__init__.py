"""tenantsvc: a multi-tenant sportsbook API on Twisted and Klein.

This module must stay import-light: it never imports klein or the reactor.
"""

__version__ = "0.1.0"
