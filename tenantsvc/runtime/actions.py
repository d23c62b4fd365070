"""eliot actions around asynchronous work: the one rule for actions and Deferreds.

The rule (eliot's documented way for Twisted, ``docs/source/generating/twisted.rst``): an action that
outlives one synchronous step is never held open by a ``with`` block spanning an ``await``. Such a block
finishes the action in whatever context the coroutine happens to resume or be closed in (a cancelled or
garbage-collected coroutine runs its ``__exit__`` elsewhere), so the tree ``eliot-tree`` shows goes wrong.
Instead the work runs as the action with ``traced``: it is *started* inside ``action.context()`` (Twisted
copies that context for every later step of the coroutine, so nested actions and messages become the
action's children) and the action is *finished* by ``DeferredContext(d).addActionFinish()`` when its
Deferred fires, with the result or the failure. ``with action.context():`` around purely synchronous code
stays fine. tests/runtime/test_actions.py enforces the rule over the whole package.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from eliot import Action, current_action
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, ensureDeferred

T = TypeVar("T")


def traced(action: Action, work: Callable[[], Awaitable[T]]) -> "Deferred[T]":
    """Run ``work()`` as ``action``: nested actions become its children; it finishes with the result."""
    with action.context():
        return DeferredContext(ensureDeferred(work())).addActionFinish()  # type: ignore[arg-type]


def add_fields(**fields: Any) -> None:
    """Add success fields to the action the caller runs in, if any."""
    action = current_action()
    if action is not None:
        action.addSuccessFields(**fields)
