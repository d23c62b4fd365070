"""Tests of the background workers (odds poller) on a deterministic Clock."""
