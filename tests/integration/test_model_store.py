"""What `make models` leaves in BentoML's model store, and that running it again changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("fraud-gbt", "fraud-logreg", "digits-mlp", "digits-mlp-small")


def store_listing(home: Path) -> dict[str, list[Path]]:
    return {
        name: sorted(p for p in (home / "models" / name).iterdir() if p.is_dir() and p.name != "latest")
        for name in MODELS
    }


def test_every_model_is_stored_with_its_metadata_and_reference_statistics(bentoml_home: Path) -> None:
    import yaml

    for name, versions in store_listing(bentoml_home).items():
        [version] = versions
        info = yaml.safe_load((version / "model.yaml").read_text())
        meta = info["metadata"]
        assert len(meta["training_data_sha256"]) == 64
        assert meta["onnx_max_abs_diff"] < 1e-5, name
        assert meta["metrics"], name
        assert meta["role"] in {"primary", "fallback"}
        assert (version / "model.onnx").stat().st_size > 1000
        reference = json.loads((version / "reference.json").read_text())
        first = next(iter(reference.values()))
        assert {"mean", "std", "min", "max", "quantiles"} <= set(first)
    fraud = yaml.safe_load(next(iter(store_listing(bentoml_home)["fraud-gbt"])).joinpath("model.yaml").read_text())
    assert fraud["metadata"]["metrics"]["roc_auc"] > 0.75


def test_running_the_build_again_changes_nothing(bentoml_home: Path) -> None:
    before = store_listing(bentoml_home)
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run(
        [sys.executable, "-m", "models.build"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert out.count("(unchanged)") == 4
    assert store_listing(bentoml_home) == before
