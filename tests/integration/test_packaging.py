"""`make bento` (services/package.py) makes a bento that holds the fraud service alone, whose Dockerfile
lints clean of errors, and the bento serves."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from models import fraud

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_fraud_bento_builds_lints_and_serves(bentoml_home: Path, serve: Callable[..., Any]) -> None:
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run(
        [sys.executable, "-m", "services.package", "fraud"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    path = (
        subprocess.run(
            [str(BIN / "bentoml"), "get", "ballast-fraud:latest", "-o", "path"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    bento = Path(path)
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    [service] = manifest["services"]
    assert {m["tag"].split(":")[0] for m in service["models"]} == {"fraud-gbt", "fraud-logreg"}
    files = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert {"services/fraud.py", "models/fraud.py", "runtime/pipeline.py"} <= files
    assert not {"services/digits.py", "services/tensor.py", "models/build.py", "examples/wine/service.py"} & files
    dockerfile = bento / "env" / "docker" / "Dockerfile"
    lint = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "error", str(dockerfile)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    with serve("ballast-fraud:latest") as url:
        response = httpx.post(f"{url}/score", json=fraud.generate(1, seed=3)[0][0], timeout=10)
    assert response.status_code == 200
    assert response.json()["served_by"] == "fraud-gbt"
