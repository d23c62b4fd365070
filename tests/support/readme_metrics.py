"""The metric families the README's Metrics section documents, and the sample names each one exports.

Each table row's first column names one or more families in backticks (``http_requests_total``,
``db_pool_wait_seconds``, …); counters are written with their ``_total``. A histogram row (its type column
says so) exports ``_bucket``, ``_sum`` and ``_count`` samples; every other family exports its own name.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| ((?:`[a-z0-9_]+`(?:, )?)+) \| ([^|]*) \|", re.MULTILINE)


def metrics_section(readme: Path = README) -> str:
    """The text of the README's ``### Metrics`` section."""
    text = readme.read_text(encoding="utf-8")
    start = text.index("\n### Metrics\n")
    return text[start:text.index("\n## ", start + 1)]


def documented_families() -> dict[str, str]:
    """Documented family name (as written, counters with ``_total``) → its type column."""
    families = {}
    for names, kind in _ROW.findall(metrics_section()):
        for name in re.findall(r"`([a-z0-9_]+)`", names):
            families[name] = kind
    return families


def documented_sample_names() -> set[str]:
    """Every sample name the documented families export (histograms as ``_bucket``/``_sum``/``_count``)."""
    names = set()
    for name, kind in documented_families().items():
        if "histogram" in kind and not name.endswith("_total"):
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names
