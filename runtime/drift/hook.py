"""The request hook that feeds a deployment's drift monitors: the validated input rows of every
answer, and the primary model's outputs (when it answered: a fallback's outputs come from another
distribution) as prediction rows.

A prediction's features are its output tensors' columns (``probabilities[1]``; a 1-D output is one
column under its own name): integer outputs (class labels) are categorical, the rest numeric. The
reference of the predictions is the primary model's outputs on the input reference sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..core.codes import Outcome
from ..core.record import RequestRecord
from .monitor import DriftMonitor
from .reference import Feature, FeatureKind

MAX_OUTPUT_COLUMNS = 16
"""Outputs with more columns than this (embeddings, images) are not watched."""


def prediction_features(outputs: Mapping[str, np.ndarray]) -> list[tuple[str, int | None, Feature]]:
    """The watched columns of a model's outputs: ``(output, column or None for 1-D, feature)``."""
    found: list[tuple[str, int | None, Feature]] = []
    for name in sorted(outputs):
        array = outputs[name]
        kind = FeatureKind.CATEGORICAL if np.issubdtype(array.dtype, np.integer) else FeatureKind.NUMERIC
        if array.ndim == 1:
            found.append((name, None, Feature(name, kind)))
        elif array.ndim == 2 and array.shape[1] <= MAX_OUTPUT_COLUMNS:
            found.extend((name, c, Feature(f"{name}[{c}]", kind)) for c in range(array.shape[1]))
    return found


def prediction_rows(
    outputs: Mapping[str, np.ndarray], columns: Sequence[tuple[str, int | None, Feature]]
) -> np.ndarray:
    """The watched columns of ``outputs``, rows by features."""
    return np.column_stack([outputs[name] if c is None else outputs[name][:, c] for name, c, _ in columns])


def _outputs(columns: Sequence[tuple[str, int | None, Feature]]) -> tuple[str, ...]:
    """The watched outputs in column order: every output's columns are watched whole and side by
    side (see :func:`prediction_features`)."""
    return tuple(dict.fromkeys(name for name, _, _ in columns))


class DriftHook:
    def __init__(
        self,
        input_name: str,
        inputs: DriftMonitor | None,
        primary: str,
        predictions: DriftMonitor | None = None,
        columns: Sequence[tuple[str, int | None, Feature]] = (),
    ) -> None:
        """``input_name``: the model input watched (rows by features); ``primary``: the stage whose
        outputs are watched, through ``columns`` (see :func:`prediction_features`)."""
        self.input_name = input_name
        self.inputs = inputs
        self.primary = primary
        self.predictions = predictions
        self.columns = tuple(columns)
        self._outputs = _outputs(self.columns)
        self.on_close: Callable[[], None] | None = None
        """Told once the hook is closed (its version's pipeline closed)."""

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        if outcome not in (Outcome.SUCCESS, Outcome.FALLBACK) or record.inputs is None:
            return
        if self.inputs is not None:
            self.inputs.add(record.inputs[self.input_name])
        if self.predictions is not None and record.outputs is not None and record.served_by == self.primary:
            outputs = record.outputs
            self.predictions.add_columns(tuple([outputs[name] for name in self._outputs]), record.rows)

    def tick(self) -> None:
        """Close a window whose time is up though no request came (from the event loop's thread)."""
        for monitor in (self.inputs, self.predictions):
            if monitor is not None:
                monitor.tick()

    def close(self) -> None:
        for monitor in (self.inputs, self.predictions):
            if monitor is not None:
                monitor.close()
        if self.on_close is not None:
            self.on_close()
