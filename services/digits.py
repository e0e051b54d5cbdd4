"""Handwritten digits: ``POST /classify`` with one or more 8x8 images (pixel values 0-16).

Chain: MLP (``digits-mlp``) -> smaller MLP (``digits-mlp-small``); no rule stage (there is no sensible
rule for reading a digit), so when both models fail the answer is 503, or 504 when time ran out.
Serve with ``make serve SERVICE=digits`` (``bentoml serve services.digits:Digits``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from services import Tensor, ballast_service

ZERO: list[Any] = [
    [0, 0, 5, 13, 9, 1, 0, 0],
    [0, 0, 13, 15, 10, 15, 5, 0],
    [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0],
    [0, 5, 8, 0, 0, 9, 8, 0],
    [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0],
    [0, 0, 6, 13, 10, 0, 0, 0],
]


class Images(BaseModel):
    """Images of 8 x 8 pixels; each is laid out as the models' 64 inputs, row by row (a flat list of
    64 is a shape error: the API defines images as 8 x 8)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"images": [ZERO]}]})

    images: Annotated[np.ndarray, Tensor((8, 8), ge=0, le=16, reshape=(64,), description="0 (white) to 16 (black)")]


Digits = ballast_service(
    "digits", models=["digits-mlp:latest", "digits-mlp-small:latest"], request=Images, route="/classify"
)
