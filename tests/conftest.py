from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from runtime import OnnxModel, RuntimeMetrics, SessionConfig
from tests import onnx_factory


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def model_files(onnx_dir: Path) -> dict[str, Path]:
    return {
        "affine": onnx_factory.affine(onnx_dir / "affine.onnx"),
        "affine_b": onnx_factory.affine(onnx_dir / "affine_b.onnx", scale=3.0, offset=0.0),
        "gather": onnx_factory.gather(onnx_dir / "gather.onnx"),
        "nan": onnx_factory.nan_output(onnx_dir / "nan.onnx"),
        "wrong_shape": onnx_factory.wrong_shape(onnx_dir / "wrong_shape.onnx"),
        "classifier": onnx_factory.classifier(onnx_dir / "classifier.onnx"),
        "images": onnx_factory.images(onnx_dir / "images.onnx"),
        "ragged": onnx_factory.ragged_rows(onnx_dir / "ragged.onnx"),
        "drop_row": onnx_factory.drop_row(onnx_dir / "drop_row.onnx"),
    }


@pytest.fixture
def load_model(model_files: dict[str, Path]) -> Iterator[Callable[..., OnnxModel]]:
    """Load a test model by key into a real onnxruntime session; closed after the test."""
    loaded: list[OnnxModel] = []

    def load(key: str, *, name: str | None = None, version: str = "1", **config: object) -> OnnxModel:
        model = OnnxModel.from_path(
            model_files[key],
            name=name or key,
            version=version,
            config=SessionConfig(**config),  # type: ignore[arg-type]
        )
        loaded.append(model)
        return model

    yield load
    for model in loaded:
        model.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> RuntimeMetrics:
    return RuntimeMetrics(registry)
