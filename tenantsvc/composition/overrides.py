"""What a test or a benchmark may replace when it builds the service: one small typed record, production defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from tenantsvc.adapters.db.connection_pool import ConnectionPool
from tenantsvc.obs.metrics import Metrics

if TYPE_CHECKING:
    from tenantsvc.adapters.passwords import PasswordHashing
    from tenantsvc.composition.redis_parts import RedisParts


@dataclass(frozen=True)
class Overrides:
    """Replacements for the parts ``build_service``/``build_components`` would otherwise build from the settings.

    - ``pool_factory`` builds the DB connection pool (tests on a Clock pass a threadless one);
    - ``passwords`` replaces the threaded argon2id hashing (it is then not started by the service tree);
    - ``redis(metrics)`` builds the Redis parts instead of ``REDIS_URL`` (a client on a fake pool and its breaker);
    - ``feed`` and ``run_in_thread`` replace the odds/results feed and the thread pool of the feed workers;
    - ``warm=False``: no theme warm at start-up (an instance whose warmer has not run yet: registry unloaded,
      L1 empty); ``subscribe=False``: no theme invalidation subscriber;
    - ``log=False``: no eliot destination (a test process keeps its own); ``freeze_heap=False``: no ``gc.freeze``
      after start-up (a test process builds many services).
    """

    pool_factory: Callable[..., Any] = ConnectionPool
    passwords: PasswordHashing | None = None
    redis: Callable[[Metrics], RedisParts] | None = None
    feed: Any = None
    run_in_thread: Callable[..., Any] | None = None
    warm: bool = True
    subscribe: bool = True
    log: bool = True
    freeze_heap: bool = True


PRODUCTION = Overrides()
