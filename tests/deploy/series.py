"""The series the rules and the dashboard may select: what the service exports (the README's Metrics tables,
which ``tests/e2e/test_metrics_documented.py`` holds to ``/metrics``; the reactor-lag histogram
``reactor_lag_seconds`` among them since issue 11), the recording rules, and Prometheus's own ``up`` and
``ALERTS``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.readme_metrics import documented_sample_names

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS_SERIES = {"up", "ALERTS"}


def recording_rule_names() -> set[str]:
    """The names ``deploy/prometheus/recording.yml`` records."""
    groups = yaml.safe_load((RULES / "recording.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"]}


def known_series() -> set[str]:
    """Every name a rule or a dashboard panel may select."""
    return documented_sample_names() | recording_rule_names() | PROMETHEUS_SERIES
