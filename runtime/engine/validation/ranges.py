"""Ranges learned from training data: per-feature bounds from what the model saw, widened by a
margin, rounded outward to a few significant digits (so that they print as people write them and
never tighten), and checked against rows the model was trained on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MARGIN = 0.5
"""Bounds are widened on each side by this share of the feature's spread: a guard against garbage
and wrong units, not a drift detector. Learned from 75 % training splits of scikit-learn's wine data
(100 seeded splits), margins of 0.1 and 0.25 refused some of its 178 real wines; 0.5 refused none
(tests/runtime/engine/validation/test_ranges.py prints the rates)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """A closed interval for one feature."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


def round_outward(low: float, high: float, digits: int = 3) -> Bounds:
    """``[low, high]`` widened to numbers of ``digits`` significant digits at the scale of the
    interval's larger end (11.067999839782715 -> 11.0 when the high end is 14.8)."""
    scale = max(abs(low), abs(high))
    if scale == 0 or not math.isfinite(scale):
        return Bounds(low, high)
    step = 10.0 ** (math.floor(math.log10(scale)) - digits + 1)
    return Bounds(_clean(math.floor(low / step) * step, step), _clean(math.ceil(high / step) * step, step))


def _clean(value: float, step: float) -> float:
    decimals = max(0, -math.floor(math.log10(step)))
    return round(value, decimals)


def learn_range(values: np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(low, high)`` from training data ``values`` (rows first), widened on each
    side by ``margin`` times the feature's observed spread (not rounded)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    low = np.min(values, axis=0).astype(np.float64)
    high = np.max(values, axis=0).astype(np.float64)
    pad = (high - low) * margin
    return low - pad, high + pad


def learned_bounds(
    minimum: Mapping[str, float], maximum: Mapping[str, float], margin: float = DEFAULT_MARGIN
) -> dict[str, Bounds]:
    """Rounded bounds per feature from a training set's minimum and maximum (reference statistics)."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    bounds = {}
    for name, low in minimum.items():
        high = maximum[name]
        pad = (high - low) * margin
        bounds[name] = round_outward(low - pad, high + pad)
    return bounds


def rejections(bounds: Mapping[str, Bounds], names: Sequence[str], rows: np.ndarray) -> dict[str, int]:
    """How many of ``rows`` (columns named by ``names``) each feature's bounds would refuse."""
    counts = {}
    for column, name in enumerate(names):
        found = bounds.get(name)
        if found is None:
            continue
        outside = int(((rows[:, column] < found.low) | (rows[:, column] > found.high)).sum())
        if outside:
            counts[name] = outside
    return counts
