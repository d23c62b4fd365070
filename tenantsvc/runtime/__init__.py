"""Twisted plumbing shared by adapters, services and workers: relaying and bounding Deferreds (deferreds,
bounded), coalescing (singleflight), fixed-period loops (looping), eliot actions around Deferreds (actions).

It sits just above core and obs in the layer order (tests/test_layers.py) and knows nothing of the
service's domain.
"""
