"""Merging requests' rows into one batch and splitting the model's outputs back.

Rows are merged only when every input has the same dtype and the same non-batch shape; the
:func:`batch_key` of a request says which requests may share a tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ...core.errors import InvalidOutput

Arrays = dict[str, np.ndarray]
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]


def batch_key(inputs: Mapping[str, np.ndarray]) -> BatchKey:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))


def merge(parts: Sequence[Mapping[str, np.ndarray]]) -> Arrays:
    """One array per input holding every part's rows in order (no copy for a single part)."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split(outputs: Mapping[str, np.ndarray], row_counts: Sequence[int]) -> list[Arrays]:
    """Cut each output back into the parts' rows (views, no copies), checking the row count."""
    total = sum(row_counts)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise InvalidOutput(f"output {name!r} has shape {array.shape}, expected {total} rows for the batch")
    if len(row_counts) == 1:
        return [dict(outputs)]
    parts: list[Arrays] = []
    start = 0
    for rows in row_counts:
        stop = start + rows
        parts.append({name: array[start:stop] for name, array in outputs.items()})
        start = stop
    return parts
