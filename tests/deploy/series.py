"""The series the rules and the dashboard may select: what the service exports (the README's Metrics tables,
which ``tests/e2e/test_metrics_documented.py`` holds to ``/metrics``), the recording rules, Prometheus's own
``up`` and ``ALERTS``, and the reactor-lag histogram of the HTTP-edge work (issue 11), whose name is
``reactor_lag_seconds`` with ``_bucket``/``_sum``/``_count`` samples and a ``job``/``instance`` per process.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.readme_metrics import documented_sample_names

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS_SERIES = {"up", "ALERTS"}
REACTOR_LAG_SERIES = {"reactor_lag_seconds_bucket", "reactor_lag_seconds_sum", "reactor_lag_seconds_count"}


def recording_rule_names() -> set[str]:
    """The names ``deploy/prometheus/recording.yml`` records."""
    groups = yaml.safe_load((RULES / "recording.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"]}


def known_series() -> set[str]:
    """Every name a rule or a dashboard panel may select."""
    return documented_sample_names() | recording_rule_names() | PROMETHEUS_SERIES | REACTOR_LAG_SERIES
