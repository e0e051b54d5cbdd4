"""`make bento` (services/package.py) makes a bento that holds the fraud service alone, whose Dockerfile
lints clean of errors, and the bento serves."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from models import fraud
from tests.integration.conftest import build_bento

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_fraud_bento_holds_the_fraud_service_alone_lints_and_serves(
    bentoml_home: Path, serve: Callable[..., Any]
) -> None:
    bento = build_bento("fraud", bentoml_home)
    assert bento.tag.startswith("ballast-fraud:")
    assert bento.models == {"fraud-gbt", "fraud-logreg"}
    assert {"services/fraud.py", "models/fraud.py", "runtime/pipeline.py"} <= bento.files
    assert not {"services/digits.py", "services/tensor.py", "models/build.py", "examples/wine/service.py"} & bento.files
    dockerfile = bento.path / "env" / "docker" / "Dockerfile"
    lint = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "error", str(dockerfile)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    with serve(bento.tag) as url:
        response = httpx.post(f"{url}/score", json=fraud.generate(1, seed=3)[0][0], timeout=10)
    assert response.status_code == 200
    assert response.json()["served_by"] == "fraud-gbt"
