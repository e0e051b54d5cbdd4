"""deploy/grafana/ballast.json: every query names only metrics the service exports (the reference
in docs/reference/metrics.md) or series the project's recording rules make, the panels cover what
an operator watches, and the layout is sound. tests/integration/test_prometheus.py has a real
Prometheus evaluate every query."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ballast.json"
METRICS = ROOT / "docs" / "reference" / "metrics.md"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panels, variables, annotations."""
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    found += [a["expr"] for a in board["annotations"]["list"]]
    return found


def test_every_query_names_an_exported_metric_or_a_recorded_series() -> None:
    documented = dict(re.findall(r"^\| `(ballast_[a-z_]+)` \| (\w+) \|", METRICS.read_text(), re.MULTILINE))
    assert documented
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }

    def known(name: str) -> bool:
        base = HISTOGRAM_SERIES.sub("", name)
        return name in documented or name in recorded or (base != name and documented.get(base) == "histogram")

    named = {n for q in queries(dashboard()) for n in re.findall(r"ballast[:_][a-z0-9_:]+", q)}
    assert named
    assert sorted(n for n in named if not known(n)) == []


def test_the_panels_cover_what_an_operator_watches() -> None:
    text = " ".join(queries(dashboard()))
    for metric in (
        "ballast_request_duration_seconds_bucket",  # latency
        "ballast_requests_total",  # throughput
        "ballast:request_errors:ratio_rate5m",  # errors
        "ballast:request_fallbacks:ratio_rate5m",  # fallbacks
        "ballast_breaker_state",  # breakers
        "ballast_batch_size_rows_bucket",  # batching
        "ballast_drift_distance",  # drift per feature
        "ballast_drift_confirmed",
        "ballast_performance_figure",  # performance
        "ballast_performance_estimated_accuracy",
        "ballast_rollout_stage",  # rollouts
        "ballast_rollbacks_total",
    ):
        assert metric in text, metric


def test_panels_have_unique_ids_titles_a_datasource_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        assert p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"], p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
