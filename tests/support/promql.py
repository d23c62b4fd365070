"""Reading PromQL in tests: the metric names an expression selects, and ``promtool`` checks of expressions.

``metric_names`` is a small lexer, enough for the expressions of ``deploy/`` (not a PromQL parser: promtool
does the parsing, see ``check_expressions``): it drops string literals, label matchers, range and grouping
clauses, then keeps every identifier that is not a function, an aggregation or a keyword.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

import yaml

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric (or recording rule) names ``expr`` selects."""
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    return {name for name, call in _IDENTIFIER.findall(text) if not call and name.lower() not in KEYWORDS}


def promtool_path() -> str:
    """promtool, which ``scripts/setup`` installs (the ``prometheus`` package); a clear failure without it."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool not found: run scripts/setup (it installs the prometheus package)"
    return binary


def check_expressions(expressions: Iterable[tuple[str, str]]) -> subprocess.CompletedProcess:
    """``promtool check rules`` on a rules file made of ``(name, expr)`` as recording rules: it parses each."""
    rules = [{"record": f"check:{re.sub(r'[^A-Za-z0-9_]', '_', name)}", "expr": expr} for name, expr in expressions]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "expressions.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
        return subprocess.run([promtool_path(), "check", "rules", str(path)], capture_output=True, text=True,
                              timeout=120)
