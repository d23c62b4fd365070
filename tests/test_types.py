"""The package type-checks: mypy with the project's configuration (pyproject.toml ``[tool.mypy]``) finds nothing.

core/ and runtime/ are checked with ``disallow_untyped_defs``; libraries without type information (eliot,
txredisapi, psycopg2, zope.interface) are the only imports mypy may not follow. Run by hand with
``.venv/bin/python -m mypy``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error_in_the_package(tmp_path):
    checked = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found" in checked.stdout
