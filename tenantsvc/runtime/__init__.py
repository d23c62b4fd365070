"""Twisted plumbing shared by adapters, services and workers: relaying and bounding Deferreds, coalescing, loops.

It sits just above core and obs in the layer order (tests/test_layers.py) and knows nothing of the
service's domain.
"""
