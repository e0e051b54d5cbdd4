"""Any ONNX model in the store, served as tensors: ``POST /predict`` with ``{input_name: array}``.

The model is ``BALLAST_TENSOR_MODEL`` (a model-store tag, read when this module is imported, since
BentoML packs a service's models by their tags); inputs are checked against its signature (dtype,
shape, finite values) and its outputs returned by name. Binary tensors skip JSON: a body of
``Content-Type: application/x-npy`` (NumPy's .npy format, never pickled) is the model's only input, and
``Accept: application/x-npy`` answers the model's first output as .npy, with provenance in headers.
The benchmarks serve their models this way. Serve with ``bentoml serve services.tensor:Tensor``.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from services import ballast_service


class TensorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BALLAST_TENSOR_", extra="ignore", frozen=True)

    model: str = "tensor-model:latest"
    """Model-store tag served by the generic tensor service."""


Tensor = ballast_service("tensor", models=[TensorSettings().model])
