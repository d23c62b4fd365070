"""A stand-in for txredisapi's connection pool under ``RedisClient(..., pool=FakeRedisPool())``, driven by a test.

It records every command sent and answers according to ``mode``:

- ``"up"``: at once, with ``replies[command]`` (a value, or an exception instance to fail with — e.g.
  ``txredisapi.ResponseError`` for an error reply), else ``DEFAULT_REPLIES``;
- ``"hung"``: never, like a frozen Redis (SIGSTOP): the call waits until the client's timer cancels it;
- ``"refused"``: at once with ``txredisapi.ConnectionError``, like a Redis that is down.

Hung calls are kept in ``pending`` so a test can answer them late (``answer_pending``), as a thawed Redis does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

# What a Redis that is up answers: PONG, an allowed token-bucket decision, no session.
DEFAULT_REPLIES: dict[str, Any] = {"PING": "PONG", "EVALSHA": [1, "99"], "EVAL": [1, "99"], "GET": None,
                                   "SET": "OK", "PUBLISH": 0}


class FakeRedisPool:
    """Records commands; answers as ``mode`` says (see the module docstring)."""

    def __init__(self, mode: str = "up") -> None:
        self.mode = mode
        self.sent: list[str] = []
        self.replies: dict[str, Any] = {}
        self.pending: list[tuple[str, Deferred]] = []

    def execute_command(self, command: str, *args: Any) -> Deferred:
        """Like ``txredisapi``'s pool: a Deferred of the reply."""
        import txredisapi

        self.sent.append(command)
        if self.mode == "hung":
            waiting: Deferred = Deferred()
            self.pending.append((command, waiting))
            return waiting
        if self.mode == "refused":
            return fail(txredisapi.ConnectionError("Not connected"))
        reply = self.replies.get(command, DEFAULT_REPLIES.get(command))
        return fail(reply) if isinstance(reply, Exception) else succeed(reply)

    def answer_pending(self) -> int:
        """Answer every hung call still waiting (a thawed Redis working through its backlog); how many."""
        pending, self.pending = self.pending, []
        answered = 0
        for command, waiting in pending:
            if not waiting.called:
                answered += 1
                waiting.callback(DEFAULT_REPLIES.get(command))
        return answered

    def count(self, command: str) -> int:
        """How many times ``command`` was sent."""
        return self.sent.count(command)
