"""Rules for the shared fixtures: importing ``tests/conftest.py`` must not choose the reactor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
import tests.conftest
print(json.dumps(sorted(sys.modules)))
"""


def test_conftest_imports_neither_klein_nor_txredisapi_nor_the_reactor():
    repo_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=repo_root,
                            timeout=60, check=True)
    loaded = json.loads(result.stdout)
    assert "twisted.internet.reactor" not in loaded
    assert [name for name in loaded if name.split(".")[0] in ("klein", "txredisapi")] == []
