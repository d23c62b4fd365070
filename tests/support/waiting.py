"""Waiting on the real reactor for things only real time can bring: Redis TTLs, reconnections, propagation.

``eventually`` is a bounded poll (fails naming what it waited for); ``pause_for`` lets real time pass.
Nothing here imports the reactor at module scope.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

POLL_STEP_S = 0.02


def real_reactor() -> Any:
    """The global reactor (imported late: pytest-twisted or twistd installs it first)."""
    from twisted.internet import reactor

    return reactor


async def eventually(check: Callable[[], Any], *, within_s: float, what: str, step_s: float = POLL_STEP_S) -> Any:
    """Poll ``check()`` (plain or async) every ``step_s`` until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` once ``within_s`` has passed without success.
    """
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if isinstance(result, Deferred) or hasattr(result, "__await__"):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within_s:g} s: {what}")
        await deferLater(real_reactor(), step_s, lambda: None)


async def pause_for(seconds: float) -> None:
    """Let ``seconds`` of real time pass on the reactor (for TTLs, which only time can expire)."""
    await deferLater(real_reactor(), seconds, lambda: None)
