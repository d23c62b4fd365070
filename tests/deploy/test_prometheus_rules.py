"""deploy/prometheus: the recording and alert rules pass ``promtool check rules``, their unit tests pass
``promtool test rules``, and every alert is tested, documented in the runbook and labelled for routing.

promtool comes from the ``prometheus`` Debian package, which ``scripts/setup`` installs: these tests fail
(never skip) without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"
RULE_FILES = [RULES / "recording.yml", RULES / "alerts.yml"]
RULE_TESTS = sorted((RULES / "tests").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = {"page", "ticket"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    """Run promtool; fail clearly if ``scripts/setup`` has not installed it."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool not found: run scripts/setup (it installs the prometheus package)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULES)


def groups(path: Path) -> list[dict[str, Any]]:
    """The rule groups of one rules file."""
    return yaml.safe_load(path.read_text())["groups"]


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule."""
    return [rule for group in groups(RULES / "alerts.yml") for rule in group["rules"]]


def runbook_anchors() -> set[str]:
    """The anchors GitHub makes of the runbook's headings (lower case, spaces to dashes, punctuation dropped)."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_the_rule_files_pass_promtool_check_rules_without_lint_findings():
    checked = promtool("check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("SUCCESS") == 2, checked.stdout


def test_the_rule_unit_tests_pass_promtool_test_rules():
    assert len(RULE_TESTS) >= 5
    tested = promtool("test", "rules", *map(str, RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS), tested.stdout


def test_every_alert_fires_in_at_least_one_unit_test():
    fired = {case["alertname"] for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert sorted({alert["alert"] for alert in alerts()} - fired) == []


def test_every_unit_test_file_evaluates_recording_rules_before_alerts():
    """promtool evaluates groups in no fixed order unless told: an alert reading a recording rule could then
    see the previous minute's value in one run and this minute's in the next."""
    recording = [group["name"] for group in groups(RULES / "recording.yml")]
    alerting = [group["name"] for group in groups(RULES / "alerts.yml")]
    for path in RULE_TESTS:
        assert yaml.safe_load(path.read_text())["group_eval_order"] == recording + alerting, path.name


@pytest.mark.parametrize("alert", alerts(), ids=lambda alert: alert["alert"])
def test_every_alert_says_what_it_means_how_urgent_it_is_and_where_its_runbook_is(alert):
    assert alert["labels"]["severity"] in SEVERITIES
    assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys()
    page, _, anchor = alert["annotations"]["runbook_url"].partition("#")
    assert page == "docs/runbook.md"
    assert anchor == alert["alert"].lower() and anchor in runbook_anchors()


def test_every_rule_selects_the_tenantsvc_job():
    """A shared Prometheus has other jobs with metrics named like ours (http_requests_total, process_*)."""
    for path in RULE_FILES:
        for group in groups(path):
            for rule in group["rules"]:
                selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", rule["expr"])
                raw = [(name, labels) for name, labels in selectors if not name.startswith("tenantsvc")]
                assert all('job="tenantsvc"' in labels for _, labels in raw), (rule.get("record") or rule["alert"], raw)


def test_every_rule_selects_only_series_the_service_exports_or_the_rules_record():
    from tests.deploy.series import known_series
    from tests.support.promql import metric_names

    unknown = {}
    for path in RULE_FILES:
        for group in groups(path):
            for rule in group["rules"]:
                missing = metric_names(rule["expr"]) - known_series()
                if missing:
                    unknown[rule.get("record") or rule["alert"]] = sorted(missing)
    assert unknown == {}
