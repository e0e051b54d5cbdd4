"""The generic tensor service over HTTP, JSON and binary .npy bodies."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests import onnx_factory

ROOT = Path(__file__).resolve().parents[2]


def test_json_and_npy_predictions_agree(bentoml_home: Path, serve: Callable[..., Any], tmp_path: Path) -> None:
    onnx = onnx_factory.affine(tmp_path / "affine.onnx")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([sys.executable, "-m", "models.store", "affine-test", str(onnx)], env=env, check=True, cwd=ROOT)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with serve("services.tensor:Tensor", BALLAST_TENSOR_MODEL="affine-test:latest") as url:
        as_json = httpx.post(f"{url}/predict", json={"x": x.tolist()}, timeout=10)
        buffer = io.BytesIO()
        np.save(buffer, x, allow_pickle=False)
        as_npy = httpx.post(
            f"{url}/predict",
            content=buffer.getvalue(),
            timeout=10,
            headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
        )
        wrong = httpx.post(f"{url}/predict", json={"x": [[1, 2, 3]]}, timeout=10)
    assert as_json.status_code == 200
    np.testing.assert_array_equal(as_json.json()["outputs"]["y"], x * 2 + 1)
    assert as_npy.status_code == 200
    assert as_npy.headers["x-served-by"] == "affine-test"
    np.testing.assert_array_equal(np.load(io.BytesIO(as_npy.content), allow_pickle=False), x * 2 + 1)
    assert wrong.status_code == 422
    assert wrong.json()["error"]["fields"][0]["rule"] == "shape"
