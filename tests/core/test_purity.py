"""``tenantsvc.core`` stays pure: importing all of it loads no Twisted, Klein, treq, Redis, DB or eliot module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tenantsvc.core

FORBIDDEN = ("twisted", "klein", "treq", "txredisapi", "psycopg2", "eliot")

# Run in a fresh interpreter: this test process has long since imported all of those.
PROBE = """
import importlib, json, pkgutil, sys
import tenantsvc.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def _probe() -> dict:
    repo_root = Path(tenantsvc.core.__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=repo_root,
                            timeout=60, check=True)
    return json.loads(result.stdout)


def test_importing_every_core_module_loads_no_framework_or_io_library():
    report = _probe()
    core_dir = Path(tenantsvc.core.__file__).parent
    expected = {f"tenantsvc.core.{path.stem}" for path in core_dir.glob("*.py") if path.stem != "__init__"}
    assert expected <= set(report["imported"])
    leaked = [name for name in report["loaded"] if name.split(".")[0] in FORBIDDEN]
    assert leaked == []
