"""Observability: eliot logging and Prometheus metrics, shared by every layer."""
