"""Test support: throwaway servers started from the system binaries, and database helpers.

Nothing here imports the Twisted reactor, klein or txredisapi at module scope, so ``tests/conftest.py``
can import it before pytest-twisted installs the reactor.
"""
