from __future__ import annotations

from pathlib import Path

from services.settings import ServiceSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_lists_every_setting() -> None:
    missing = [name for name in ServiceSettings.model_fields if f"`BALLAST_{name.upper()}`" not in README]
    assert missing == []


def test_the_readme_lists_every_metric() -> None:
    from prometheus_client import CollectorRegistry

    from runtime import RuntimeMetrics

    registry = CollectorRegistry()
    RuntimeMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    missing = [name for name in names if f"`{name}" not in README]
    assert missing == []


def test_the_bento_requirements_pin_what_the_constraints_pin() -> None:
    root = Path(__file__).resolve().parents[1]

    def pins(name: str) -> dict[str, str]:
        lines = (root / name).read_text().splitlines()
        pairs = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
        return {k.strip().lower().replace("_", "-"): v.strip() for k, v in pairs}

    bento, constraints = pins("bento-requirements.txt"), pins("constraints.txt")
    assert bento, "no pins in bento-requirements.txt"
    assert {k: constraints.get(k) for k in bento} == bento
