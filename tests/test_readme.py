from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from runtime import DrillSettings, Settings
from services.fraud import FraudSettings
from services.settings import ServerSettings
from services.tensor import TensorSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SETTINGS: list[type[BaseSettings]] = [Settings, DrillSettings, ServerSettings, FraudSettings, TensorSettings]


def test_the_readme_lists_every_setting() -> None:
    names = [f"{cls.model_config.get('env_prefix', '')}{name}".upper() for cls in SETTINGS for name in cls.model_fields]
    missing = [name for name in names if f"`{name}`" not in README]
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
    def pins(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        pairs = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
        return {k.strip().lower().replace("_", "-"): v.strip() for k, v in pairs}

    bento, constraints = pins("bento-requirements.txt"), pins("constraints.txt")
    assert bento, "no pins in bento-requirements.txt"
    assert {k: constraints.get(k) for k in bento} == bento
