"""deploy/prometheus/rules.yml: the rules load in promtool, pass their unit tests
(deploy/prometheus/rules_test.yml), name only metrics the runtime exports, and every alert is
tested both firing and quiet."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = Path("deploy/prometheus/rules.yml")
RULES_TEST = Path("deploy/prometheus/rules_test.yml")
METRICS = ROOT / "docs" / "reference" / "metrics.md"

SEVERITIES = frozenset({"page", "ticket", "warning", "info"})
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def _promtool(*args: str) -> None:
    binary = shutil.which("promtool")
    assert binary, "promtool is needed (make test installs it: apt-get install prometheus)"
    result = subprocess.run([binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )


def _groups() -> dict[str, list[dict[str, Any]]]:
    loaded = yaml.safe_load((ROOT / RULES).read_text())
    return {group["name"]: group["rules"] for group in loaded["groups"]}


def _alerts() -> list[dict[str, Any]]:
    return [rule for rules in _groups().values() for rule in rules if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    _promtool("check", "rules", str(RULES))


def test_the_rules_pass_their_unit_tests() -> None:
    _promtool("test", "rules", str(RULES_TEST))


def test_recording_and_alerting_rules_are_in_their_groups_and_named_by_convention() -> None:
    groups = _groups()
    assert sorted(groups) == ["ballast-alerts", "ballast-recording"]
    assert all("record" in rule for rule in groups["ballast-recording"])
    assert all("alert" in rule for rule in groups["ballast-alerts"])
    # level:metric:operations, never a name that could be taken for an exported metric
    odd = [
        r["record"] for r in groups["ballast-recording"] if not re.fullmatch(r"ballast:[a-z_]+:[a-z0-9_]+", r["record"])
    ]
    assert odd == []


def test_every_metric_the_rules_name_is_exported() -> None:
    documented = dict(re.findall(r"^\| `(ballast_[a-z_]+)` \| (\w+) \|", METRICS.read_text(), re.MULTILINE))
    assert documented, f"no metric table in {METRICS.relative_to(ROOT)}"
    recorded = {rule["record"] for rule in _groups()["ballast-recording"]}
    named = set(re.findall(r"ballast_[a-z_]+", (ROOT / RULES).read_text())) - recorded

    def known(name: str) -> bool:
        base = HISTOGRAM_SERIES.sub("", name)
        return name in documented or (base != name and documented.get(base) == "histogram")

    assert sorted(name for name in named if not known(name)) == []


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for alert in _alerts():
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        for annotation in ("summary", "description"):
            assert "{{ $labels." in alert["annotations"][annotation], (alert["alert"], annotation)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load((ROOT / RULES_TEST).read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    names = {alert["alert"] for alert in _alerts()}
    # promtool passes a quiet case for an alert that does not exist
    assert sorted({case["alertname"] for case in cases} - names) == []
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert sorted(names - firing) == []
    assert sorted(names - quiet) == []
