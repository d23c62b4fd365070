"""Bundled demo Goalserve feed documents (package data read through importlib.resources)."""
