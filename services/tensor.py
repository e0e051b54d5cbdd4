"""Any ONNX model in the store, served as tensors: ``POST /predict`` with ``{input_name: array}``.

The model is ``BALLAST_TENSOR_MODEL`` (a model-store tag, default ``tensor-model:latest``); inputs
are checked against its signature (dtype, shape, finite values) and its outputs returned by name.
Binary tensors skip JSON: a body of ``Content-Type: application/x-npy`` (NumPy's .npy format, never
pickled) is the model's only input, and ``Accept: application/x-npy`` answers the model's first output
as .npy, with provenance in ``X-Served-By``, ``X-Degraded``, ``X-Model-Name``, ``X-Model-Version``.
The benchmarks serve their models this way. Serve with ``bentoml serve services.tensor:Tensor``.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from runtime import BadRequest, OnnxModel, Pipeline, TensorSchema

from .base import PipelineService, ballast_service, provenance
from .http import NpyResponse, RequestInfo, route
from .openapi import PROVENANCE
from .settings import ServiceSettings

SETTINGS = ServiceSettings()


@ballast_service("tensor")
class Tensor(PipelineService):
    """A single ONNX model from the store, inputs and outputs as named tensors."""

    model_tags = (SETTINGS.tensor_model,)
    model = bentoml.models.BentoModel(SETTINGS.tensor_model)
    max_body_bytes = SETTINGS.max_body_bytes

    def make_pipeline(self, models: list[OnnxModel]) -> Pipeline:
        [model] = models
        self.inputs = [spec.name for spec in model.signature.inputs]
        self.outputs = [spec.name for spec in model.signature.outputs]
        return Pipeline.build(
            "tensor",
            models=[model],
            schema=TensorSchema(model.signature, max_rows=self.settings.max_batch_size),
            settings=self.settings,
        )

    @route(
        "POST",
        "/predict",
        summary="Run the model on named input tensors (rows first)",
        errors=(400, 413, 415, 422, 503, 504),  # 504: no rule stage answers when time runs out
        request_schema={"type": "object", "additionalProperties": {"type": "array"}},
        response_schema={
            "type": "object",
            "required": ["outputs", *PROVENANCE],
            "properties": {"outputs": {"type": "object"}, **PROVENANCE},
        },
        request_example={"x": [[0.0, 1.0]]},
        npy=True,
        response_example={
            "outputs": {"y": [[0.5]]},
            "request_id": "0a1b2c3d4e5f6a7b",
            "served_by": "model",
            "degraded": False,
            "model": {"name": "model", "version": "1"},
        },
    )
    async def predict(self, payload: Any, info: RequestInfo) -> dict[str, Any] | NpyResponse:
        if isinstance(payload, np.ndarray):  # a binary body holds the model's only input
            if len(self.inputs) != 1:
                raise BadRequest(f"the model takes {len(self.inputs)} inputs; send JSON {{name: array}}")
            payload = {self.inputs[0]: payload}
        prediction = await self.pipeline.predict(payload, request_id=info.request_id, timeout_s=info.timeout_s)
        if info.wants_npy:
            return NpyResponse(
                prediction.outputs[self.outputs[0]],
                {
                    "x-served-by": prediction.served_by,
                    "x-degraded": str(prediction.degraded).lower(),
                    "x-model-name": prediction.model_name,
                    "x-model-version": prediction.model_version,
                },
            )
        return {
            "outputs": prediction.outputs,
            **provenance(prediction),
        }
