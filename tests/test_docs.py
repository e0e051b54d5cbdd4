"""The README stays an entry point and the reference pages say what the code says."""

from __future__ import annotations

import re
from pathlib import Path

from tools import reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_the_reference_pages_are_what_the_code_says() -> None:
    assert reference.main(["--check"]) == 0


def test_every_setting_and_metric_is_in_the_reference() -> None:
    settings = (ROOT / "docs" / "reference" / "settings.md").read_text()
    for _, cls, prefix in reference.settings_classes():
        for name in cls.model_fields:
            shown = f"{prefix}{name}".upper() if prefix else name
            assert f"`{shown}`" in settings, shown
    from prometheus_client import CollectorRegistry

    from runtime import RuntimeMetrics

    registry = CollectorRegistry()
    RuntimeMetrics(registry)
    metrics = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    assert [m.name for m in registry.collect() if f"`{m.name}" not in metrics] == []


def test_links_between_pages_resolve() -> None:
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


def test_prose_never_cites_issue_numbers() -> None:
    for page in [README, *DOCS]:
        found = re.findall(r"(?i)\bissues?\s*#?\d+|(?<![\w&/])#\d+\b", page.read_text())
        assert found == [], f"{page.relative_to(ROOT)}: {found}"


def test_the_bento_requirements_pin_what_the_constraints_pin() -> None:
    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        pairs = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
        return {k.strip().lower().replace("_", "-"): v.strip() for k, v in pairs}

    bento, constraints = pins("bento-requirements.txt"), pins("constraints.txt")
    assert bento, "no pins in bento-requirements.txt"
    assert {k: constraints.get(k) for k in bento} == bento
