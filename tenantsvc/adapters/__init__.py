"""Adapters: the only code that talks to the outside world (databases, Redis, outbound HTTP)."""
