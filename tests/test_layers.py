"""The package keeps DESIGN's layer order: every import of a tenantsvc module points down the stack.

Read statically (every ``import`` statement, including those inside functions), so a layer break fails here
even on a code path no other test runs. The order, bottom to top:

    demo_feed     bundled feed documents (package data, no code)
    core          pure logic and plain values (no Twisted, no I/O: tests/core/test_purity.py)
    obs, config   metrics and eliot logging; settings parsed from the environment (both see only core)
    runtime       Twisted plumbing shared by the layers above: relaying and bounding Deferreds, coalescing,
                  fixed-period loops, eliot actions around Deferreds
    adapters      the only code that talks to the outside (db, redis, http): core, obs and runtime, never Settings
    services      orchestration: core, obs and the adapters' interfaces
    web, workers  Klein routes and loops: core, obs and services only, never an adapter
    composition   the parts the composition root assembles (core, Redis, web, workers, the service tree): everything
    service, tap  the composition root and the twistd entry point: everything

``from tenantsvc import __version__`` (the package's own metadata) is allowed everywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tenantsvc

PACKAGE_DIR = Path(tenantsvc.__file__).parent
EVERYTHING = {"demo_feed", "core", "obs", "config", "runtime", "adapters", "services", "web", "workers", "composition", "service",
              "tap"}
ALLOWED = {
    "demo_feed": set(),
    "core": {"core"},
    "obs": {"core", "obs"},
    "config": {"core"},
    "runtime": {"core", "obs", "runtime"},
    "adapters": {"demo_feed", "core", "obs", "runtime", "adapters"},
    "services": {"core", "obs", "runtime", "adapters", "services"},
    "web": {"core", "obs", "runtime", "services", "web"},
    "workers": {"core", "obs", "runtime", "services", "workers"},
    "composition": EVERYTHING,
    "service": EVERYTHING,
    "tap": EVERYTHING,
}


def layer_of(path: Path) -> str:
    """The layer a module file belongs to: its top-level subpackage, or its own name for top-level modules."""
    relative = path.relative_to(PACKAGE_DIR)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_name(path: Path) -> str:
    """The dotted name of a module file, ``__init__`` files naming their package."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """Each tenantsvc layer ``path`` imports, with the line it does so on (relative imports resolved)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base] if base != "tenantsvc" else [f"tenantsvc.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "tenantsvc" and len(parts) > 1 and parts[1] != "__version__":
                found.add((parts[1], node.lineno))
    return found


MODULES = sorted(path for path in PACKAGE_DIR.rglob("*.py") if path.name != "__init__.py" or path.parent != PACKAGE_DIR)


def test_every_module_belongs_to_a_known_layer():
    assert {layer_of(path) for path in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_imports_only_point_down_the_layers(path):
    layer = layer_of(path)
    breaks = sorted(f"line {line}: {layer} imports {target}"
                    for target, line in imported_layers(path) if target not in ALLOWED[layer])
    assert breaks == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The analysis itself: an adapter importing config (directly, relatively or inside a function) is found."""
    fake_package = tmp_path / "tenantsvc"
    (fake_package / "adapters").mkdir(parents=True)
    module = fake_package / "adapters" / "leaky.py"
    module.write_text("from tenantsvc import __version__\n"
                      "def f():\n    from ..config import Settings\n"
                      "import tenantsvc.core.ids\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE_DIR", fake_package)
    assert imported_layers(module) == {("config", 3), ("core", 4)}
