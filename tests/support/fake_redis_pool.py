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

# What a Redis that is up answers: PONG, no session; a script (the token buckets') see ``script_reply``.
DEFAULT_REPLIES: dict[str, Any] = {"PING": "PONG", "GET": None, "SET": "OK", "PUBLISH": 0}
SCRIPT_COMMANDS = ("EVALSHA", "EVAL")


def default_reply(command: str, args: tuple[Any, ...]) -> Any:
    """``DEFAULT_REPLIES``, and for a script an admitting token-bucket answer: 0 (no bucket refused) and
    99 tokens left in each of its keys (``EVALSHA sha1 numkeys key…``)."""
    if command in SCRIPT_COMMANDS:
        return [0] + ["99"] * int(args[1])
    return DEFAULT_REPLIES.get(command)


class FakeRedisPool:
    """Records commands; answers as ``mode`` says (see the module docstring)."""

    def __init__(self, mode: str = "up") -> None:
        self.mode = mode
        self.sent: list[str] = []
        self.replies: dict[str, Any] = {}
        self.pending: list[tuple[str, tuple[Any, ...], Deferred]] = []

    def execute_command(self, command: str, *args: Any) -> Deferred:
        """Like ``txredisapi``'s pool: a Deferred of the reply."""
        import txredisapi

        self.sent.append(command)
        if self.mode == "hung":
            waiting: Deferred = Deferred()
            self.pending.append((command, args, waiting))
            return waiting
        if self.mode == "refused":
            return fail(txredisapi.ConnectionError("Not connected"))
        reply = self.replies[command] if command in self.replies else default_reply(command, args)
        return fail(reply) if isinstance(reply, Exception) else succeed(reply)

    def answer_pending(self) -> int:
        """Answer every hung call still waiting (a thawed Redis working through its backlog); how many."""
        pending, self.pending = self.pending, []
        answered = 0
        for command, args, waiting in pending:
            if not waiting.called:
                answered += 1
                waiting.callback(default_reply(command, args))
        return answered

    def count(self, command: str) -> int:
        """How many times ``command`` was sent."""
        return self.sent.count(command)
