"""The eliot rule of ``tenantsvc.runtime.actions``: no ``with`` block holds an action open across an ``await``.

Read statically over the whole package: inside an ``async def``, a ``with`` (or ``async with``) whose body
awaits must not be an eliot action or context — ``start_action(...)``, ``start_task(...)``, an action type
called (``REFRESH(...)``), ``something.context()`` or a name that says it is an action or a task. Such work
runs through ``traced`` instead. Plus ``traced`` itself on a Clock: the action spans a real suspension.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest
from eliot import log_message, start_action
from eliot.parse import Parser
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

import tenantsvc
from tenantsvc.runtime.actions import add_fields, traced
from tests.support.logs import memory_logger

PACKAGE_DIR = Path(tenantsvc.__file__).parent
ELIOT_CALLS = {"start_action", "start_task", "context", "startAction", "startTask"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def is_eliot_context(expr: ast.expr) -> bool:
    """True for the context managers that open or enter an eliot action."""
    if isinstance(expr, ast.Call):
        name = _name(expr.func)
        return name in ELIOT_CALLS or (name.isupper() and len(name) > 1)
    name = _name(expr).lower()
    return "action" in name or "task" in name


def _awaits(statements: list[ast.stmt]) -> bool:
    """Whether the statements await, not counting functions defined inside them."""
    pending: list[ast.AST] = list(statements)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return False


def actions_held_across_await(source: str) -> list[int]:
    """Lines of the ``with`` blocks in ``source`` that hold an eliot action open across an ``await``."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if (isinstance(node, (ast.With, ast.AsyncWith)) and _awaits(node.body)
                    and any(is_eliot_context(item.context_expr) for item in node.items)):
                found.append(node.lineno)
    return sorted(set(found))


MODULES = sorted(PACKAGE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_no_action_is_held_open_across_an_await(path):
    assert actions_held_across_await(path.read_text()) == []


def test_the_checker_sees_each_form_and_spares_synchronous_blocks():
    source = '''
async def a():
    with start_action(action_type="x"):
        await thing()
async def b(action):
    with action.context():
        await thing()
async def c():
    with REFRESH(tenant="t") as refresh:
        return await thing()
async def d(task):
    with task:
        async for item in things():
            pass
async def fine(action, lock):
    with action.context():
        log()
    with lock:
        await thing()
    with start_action(action_type="y"):
        async def inner():
            await thing()
'''
    assert actions_held_across_await(source) == [3, 6, 9, 12]


@pytest.fixture()
def logger() -> Iterator:
    with memory_logger() as captured:
        yield captured


def test_traced_work_is_the_action_across_a_suspension_and_finishes_with_its_result(logger):
    clock = Clock()

    async def work() -> int:
        later: Deferred = Deferred()
        clock.callLater(1, later.callback, None)
        await later
        log_message(message_type="resumed")
        add_fields(answer=42)
        return 42

    done = traced(start_action(action_type="test:work"), work)
    log_message(message_type="meanwhile")  # outside the action while the work is suspended
    assert not done.called
    clock.advance(1)
    assert done.result == 42
    [meanwhile] = [m for m in logger.messages if m.get("message_type") == "meanwhile"]
    [tree] = Parser.parse_stream([m for m in logger.messages if m is not meanwhile])
    root = tree.root()
    assert meanwhile["task_uuid"] != root.task_uuid
    assert root.status == "succeeded" and root.end_message.contents["answer"] == 42
    assert [child.contents.message_type for child in root.children] == ["resumed"]


def test_traced_work_that_fails_finishes_its_action_failed(logger):
    async def work() -> None:
        raise KeyError("missing")

    done = traced(start_action(action_type="test:fails"), work)
    failures: list = []
    done.addErrback(failures.append)
    assert failures and failures[0].check(KeyError)
    [tree] = Parser.parse_stream(logger.messages)
    assert tree.root().status == "failed" and tree.root().end_message.contents["exception"].endswith("KeyError")
