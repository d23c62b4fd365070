"""``RedisClient`` objects on the ``redis_server`` fixture, closed by the test's fixture teardown.

``RedisClients(server)`` makes as many clients (one per "instance") as a test needs; ``close()`` disconnects
them all. The ``redis_clients`` fixture (import it into a test module) flushes the server first and closes
the clients after the test. Nothing here imports txredisapi or the reactor at module scope.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from tenantsvc.core.targets import RedisTarget

TEST_TIMEOUT_S = 0.3  # short, so tests that stop Redis see RedisUnavailable quickly


class RedisClients:
    """A factory of clients for one test; ``close()`` at teardown."""

    def __init__(self, server: Any, timeout_s: float = TEST_TIMEOUT_S):
        self._server = server
        self._timeout_s = timeout_s
        self._clients: list[Any] = []

    def new(self) -> Any:
        """A new ``RedisClient`` (its own connection pool) on the test server, timed by the real reactor."""
        from twisted.internet import reactor

        from tenantsvc.adapters.redis import RedisClient

        client = RedisClient(RedisTarget(self._server.host, self._server.port, 0, None), reactor,
                             timeout_s=self._timeout_s)
        self._clients.append(client)
        return client

    def close(self) -> Deferred:
        """Disconnect every client made."""
        return gatherResults([client.stopService() for client in self._clients], consumeErrors=True)


@pytest.fixture
def redis_clients(redis_server: Any) -> Iterator[RedisClients]:
    """Clients on a freshly flushed ``redis_server``, disconnected after the test."""
    redis_server.flushall()
    clients = RedisClients(redis_server)
    try:
        yield clients
    finally:
        pytest_twisted.blockon(clients.close())
