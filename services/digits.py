"""Handwritten digits: ``POST /classify`` with one or more 8x8 images (pixel values 0-16).

Chain: MLP (``digits-mlp``) -> smaller MLP (``digits-mlp-small``); no rule stage (there is no
sensible rule for reading a digit), so when both models fail the answer is 503.
Serve with ``bentoml serve services.digits:Digits``.
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from runtime import (
    BadRequest,
    FieldError,
    ModelSignature,
    OnnxModel,
    Pipeline,
    TensorRange,
    TensorSchema,
    TensorSpec,
    ValidatedRequest,
)

from .base import PipelineService, ballast_service, provenance
from .http import RequestInfo, route
from .openapi import PROVENANCE
from .settings import ServiceSettings

SETTINGS = ServiceSettings()
IMAGE = {
    "type": "array",
    "minItems": 8,
    "maxItems": 8,
    "description": "8 rows of 8 pixels, 0 (white) to 16 (black)",
    "items": {
        "type": "array",
        "minItems": 8,
        "maxItems": 8,
        "items": {"type": "number", "minimum": 0, "maximum": 16},
    },
}
ZERO = [
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
]


class ImageSchema:
    """``{"images": N x 8 x 8}`` checked as an image tensor (shape, finite, 0-16), then laid out
    as the model's ``float32[N, 64]`` input. The API defines images as 8 x 8, so this layout is the
    contract, not a reshape of whatever arrived: a 64-long flat list is a shape error."""

    def __init__(self, input_name: str, max_rows: int) -> None:
        spec = TensorSpec("images", np.dtype(np.float32), (None, 8, 8))
        self.input_name = input_name
        self.tensor = TensorSchema(
            ModelSignature(inputs=(spec,), outputs=()),
            max_rows=max_rows,
            ranges={"images": TensorRange(0.0, 16.0)},
        )

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        parsed = self.tensor.parse(payload, errors, content)
        if parsed is None:
            return None
        images = parsed.inputs["images"]
        return ValidatedRequest(inputs={self.input_name: images.reshape(len(images), 64)}, rows=parsed.rows)


@ballast_service("digits")
class Digits(PipelineService):
    """Handwritten digit classification (scikit-learn's digits, 8x8 pixels): an MLP, then a smaller
    MLP. Every answer says which model produced it."""

    model_tags = ("digits-mlp:latest", "digits-mlp-small:latest")
    primary_model = bentoml.models.BentoModel(model_tags[0])
    fallback_model = bentoml.models.BentoModel(model_tags[1])
    max_body_bytes = SETTINGS.max_body_bytes

    def make_pipeline(self, models: list[OnnxModel]) -> Pipeline:
        for model in models:
            spec = model.signature.input("input")
            if spec.dtype != np.float32 or spec.row_shape != (64,):
                raise TypeError(f"{model.name} takes {spec.describe()}, expected float32[N, 64]")
        return Pipeline.build(
            "digits",
            models=models,
            schema=ImageSchema("input", max_rows=self.settings.max_batch_size),
            settings=self.settings,
        )

    @route(
        "POST",
        "/classify",
        summary="Classify one or more 8x8 handwritten digits",
        errors=(400, 413, 415, 422, 503, 504),  # 504: no rule stage answers when time runs out
        request_schema={
            "type": "object",
            "required": ["images"],
            "additionalProperties": False,
            "properties": {
                "images": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": SETTINGS.max_batch_size,
                    "items": IMAGE,
                }
            },
        },
        response_schema={
            "type": "object",
            "required": ["results", *PROVENANCE],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "integer", "minimum": 0, "maximum": 9},
                            "probabilities": {
                                "type": "array",
                                "items": {"type": "number"},
                                "minItems": 10,
                                "maxItems": 10,
                            },
                        },
                    },
                },
                **PROVENANCE,
            },
        },
        request_example={"images": [ZERO]},
        response_example={
            "request_id": "9c1b7d4e8a603f2a",
            "results": [{"label": 0, "probabilities": [0.999, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.0]}],
            "served_by": "digits-mlp",
            "degraded": False,
            "model": {"name": "digits-mlp", "version": "vylf74hjscxr2ax4"},
        },
    )
    async def classify(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise BadRequest('expected {"images": [ ... ]}')
        prediction = await self.pipeline.predict(payload, request_id=info.request_id, timeout_s=info.timeout_s)
        probabilities = prediction.outputs["probabilities"]
        labels = probabilities.argmax(axis=1).tolist()
        return {
            "results": [
                {"label": label, "probabilities": [round(p, 6) for p in row]}
                for label, row in zip(labels, probabilities.tolist(), strict=True)
            ],
            **provenance(prediction),
        }
