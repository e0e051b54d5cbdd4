from __future__ import annotations

from pathlib import Path

from runtime import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_lists_every_setting() -> None:
    missing = [name for name in Settings.model_fields if f"`BALLAST_{name.upper()}`" not in README]
    assert missing == []


def test_the_readme_lists_every_metric() -> None:
    from prometheus_client import CollectorRegistry

    from runtime import RuntimeMetrics

    registry = CollectorRegistry()
    RuntimeMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    missing = [name for name in names if f"`{name}" not in README]
    assert missing == []
