"""HTTP-level tests: StubTreq over the real root resource (see tests/support/web_harness.py)."""
