"""What a model takes and gives: tensor names, dtypes and shapes, read from the ONNX graph.

A dimension is an ``int`` when the graph fixes it and ``None`` when it is symbolic (``batch``,
``N``) or unknown. Ballast treats the first dimension of every input as the batch dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# onnxruntime reports element types as strings such as "tensor(float)".
_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(np.object_),
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named tensor of the model's signature."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...]
    """Dimensions; ``None`` marks a symbolic or unknown one. ``shape[0]`` is the batch."""

    @property
    def row_shape(self) -> tuple[int | None, ...]:
        """The shape of one row: every dimension but the batch dimension."""
        return self.shape[1:]

    def row_shape_matches(self, shape: Sequence[int]) -> bool:
        """Whether a concrete row shape fits this spec (symbolic dimensions fit any size)."""
        want = self.shape[1:]
        if len(shape) != len(want):
            return False
        for w, s in zip(want, shape, strict=True):  # noqa: SIM110 -- a plain loop is faster, and this runs per request
            if w is not None and w != s:
                return False
        return True

    def describe(self) -> str:
        dims = ", ".join("N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(self.shape))
        return f"{self.dtype.name}[{dims}]"


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """All inputs and outputs of a model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(f"model has no input {name!r}; inputs are {[s.name for s in self.inputs]}")

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(f"model has no output {name!r}; outputs are {[s.name for s in self.outputs]}")

    @classmethod
    def from_session(cls, session: Any) -> ModelSignature:
        """Read the signature of an ``onnxruntime.InferenceSession``."""
        return cls(
            inputs=tuple(_spec(node) for node in session.get_inputs()),
            outputs=tuple(_spec(node) for node in session.get_outputs()),
        )


def _spec(node: Any) -> TensorSpec:
    if node.type not in _ORT_DTYPES:
        raise TypeError(f"tensor {node.name!r} has unsupported element type {node.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (node.shape or ()))
    if not shape:
        raise TypeError(f"tensor {node.name!r} is a scalar; Ballast needs a batch dimension")
    return TensorSpec(name=node.name, dtype=_ORT_DTYPES[node.type], shape=shape)
