"""Running a coroutine inside an eliot action without holding the action's context across ``await``.

A ``with start_action(...)`` block that spans an ``await`` breaks when the coroutine is finished (or
garbage-collected) in another context; ``traced`` starts the coroutine inside the action's context
(Twisted copies it for every step) and finishes the action when the Deferred fires.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from eliot import Action
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, ensureDeferred

T = TypeVar("T")


def traced(action: Action, work: Callable[[], Awaitable[T]]) -> "Deferred[T]":
    """Run ``work()`` as ``action``: nested actions become its children; it finishes with the result."""
    with action.context():
        return DeferredContext(ensureDeferred(work())).addActionFinish()


def add_fields(**fields: Any) -> None:
    """Add success fields to the action the caller runs in, if any."""
    from eliot import current_action

    action = current_action()
    if action is not None:
        action.addSuccessFields(**fields)
