"""Redis over txredisapi, every call bounded by a timeout so a dead or paused Redis never hangs a caller.

txredisapi imports the global reactor, so it is imported only when a client is built (after twistd
or pytest-twisted has chosen the reactor).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from tenantsvc.adapters.deferreds import with_timeout
from tenantsvc.config import RedisTarget

DEFAULT_TIMEOUT_S = 0.5


class RedisClient(Service):
    """A lazily connecting, self-reconnecting pool; a Service so it disconnects on shutdown."""

    name = "redis"

    def __init__(self, target: RedisTarget, clock: Any, timeout_s: float = DEFAULT_TIMEOUT_S, poolsize: int = 4):
        import txredisapi

        self._clock = clock
        self.timeout_s = timeout_s
        self.target = target
        self._pool = txredisapi.lazyConnectionPool(
            host=target.host, port=target.port, dbid=target.db, poolsize=poolsize, password=target.password,
            reconnect=True, connectTimeout=max(timeout_s, 1.0), replyTimeout=timeout_s,
            ssl_context_factory=target.tls,
        )

    def call(self, command: str, *args: Any) -> Deferred:
        """Run one Redis command (``execute_command``) with the client's timeout."""
        return with_timeout(self._clock, self._pool.execute_command(command, *args), self.timeout_s)

    async def ping(self) -> float:
        """Round-trip a PING; returns the seconds it took."""
        started = self._clock.seconds()
        await self.call("PING")
        return self._clock.seconds() - started

    def stopService(self) -> Any:
        """Disconnect every pooled connection."""
        super().stopService()
        return self._pool.disconnect()
