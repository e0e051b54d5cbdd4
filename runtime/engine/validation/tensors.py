"""Tensor payloads: ``{input_name: nested list or ndarray}`` checked against a model signature
(layer 1: dtype, shape, row count; layer 2: finite values and declared ranges)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from ...core.codes import Rule
from ...core.errors import FieldError
from ...core.signature import ModelSignature, TensorSpec
from .request import ValidatedRequest, all_finite
from .request import json_value as _json_value

_BOOLEANS = frozenset({bool, np.bool_})


def _has_booleans(value: list[Any], ndim: int) -> bool:
    """Whether a rectangular nested list of ``ndim`` levels holds a boolean: NumPy turns
    ``[1.5, true]`` into ``[1.5, 1.0]``, so mixed booleans never show in the array's dtype."""
    cells: Iterable[Any] = value
    for _ in range(ndim - 1):
        cells = chain.from_iterable(cells)
    return not _BOOLEANS.isdisjoint(map(type, cells))


@dataclass(frozen=True, slots=True)
class TensorRange:
    """Allowed closed interval for an input's values: scalars, or arrays of the row shape."""

    low: float | np.ndarray
    high: float | np.ndarray


class TensorSchema:
    """Payloads of the form ``{input_name: nested list or ndarray}`` checked against a signature."""

    def __init__(
        self,
        signature: ModelSignature,
        *,
        max_rows: int,
        ranges: Mapping[str, TensorRange] | None = None,
        feeds: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
        max_errors: int = 50,
    ) -> None:
        """``signature``'s inputs are what a request carries. ``feeds`` lays a declared tensor out
        as a model input: ``{"images": ("input", (64,))}`` sends the checked ``images`` rows to the
        input ``input``, each row reshaped (row-major) to 64 values. The declaration states that
        layout; a request is never reshaped to fit."""
        if max_rows < 1:
            raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        self.specs = signature.inputs
        self.max_rows = max_rows
        self.ranges = dict(ranges or {})
        self.max_errors = max_errors
        self._names = frozenset(s.name for s in self.specs)
        self.feeds = dict(feeds or {})
        for name, (_, row_shape) in self.feeds.items():
            spec = next((s for s in self.specs if s.name == name), None)
            if spec is None:
                raise ValueError(f"feeds names {name!r}, which is not among the inputs {sorted(self._names)}")
            if None in spec.row_shape or int(np.prod(spec.row_shape)) != int(np.prod(row_shape)):  # type: ignore[arg-type]
                raise ValueError(f"{name} rows of shape {list(spec.row_shape)} cannot be laid out as {list(row_shape)}")
        unknown = set(self.ranges) - self._names
        if unknown:
            raise ValueError(f"ranges given for inputs the model does not have: {sorted(unknown)}")

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        if not isinstance(payload, Mapping):
            errors.append(FieldError("", Rule.TYPE, "expected an object of named input tensors", _json_value(payload)))
            return None
        known = self._names
        for name in payload:
            if name not in known:
                errors.append(
                    FieldError(
                        str(name),
                        Rule.UNKNOWN_FIELD,
                        f"the model has no input {name!r}; inputs: {sorted(known)}",
                    )
                )
        arrays: dict[str, np.ndarray] = {}
        for spec in self.specs:
            if spec.name not in payload:
                errors.append(FieldError(spec.name, Rule.REQUIRED, f"missing input {spec.describe()}"))
                continue
            array = self._array(spec, payload[spec.name], errors)
            if array is not None:
                arrays[spec.name] = array
        if errors:
            return None
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) > 1:
            errors.append(FieldError("", Rule.SHAPE, f"inputs disagree on the number of rows: {sorted(rows)}"))
            return None
        for spec in self.specs if content else ():
            self._content(spec, arrays[spec.name], errors)
        if errors:
            return None
        count = rows.pop()
        for name, (target, row_shape) in self.feeds.items():
            arrays[target] = arrays.pop(name).reshape(count, *row_shape)
        return ValidatedRequest(inputs=arrays, rows=count)

    def _array(self, spec: TensorSpec, value: Any, errors: list[FieldError]) -> np.ndarray | None:
        if (  # fast path: an array that already has the model's dtype and shape
            type(value) is np.ndarray
            and value.dtype == spec.dtype
            and value.ndim == len(spec.shape)
            and 1 <= value.shape[0] <= self.max_rows
            and spec.row_shape_matches(value.shape[1:])
        ):
            return value
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):  # ragged nesting
            array = None
        if array is None or array.dtype.kind not in "biuf":
            errors.append(
                FieldError(spec.name, Rule.TYPE, f"expected a rectangular array of numbers, {spec.describe()}")
            )
            return None
        want = spec.dtype
        if array.dtype.kind == "b" and want.kind != "b":
            errors.append(FieldError(spec.name, Rule.TYPE, f"expected numbers for {spec.describe()}, got booleans"))
            return None
        if want.kind in "iu" and array.dtype.kind == "f":
            errors.append(FieldError(spec.name, Rule.TYPE, f"expected integers for {spec.describe()}, got floats"))
            return None
        if array.ndim != len(spec.shape) or not spec.row_shape_matches(array.shape[1:]):
            errors.append(
                FieldError(spec.name, Rule.SHAPE, f"expected {spec.describe()}, got shape {list(array.shape)}")
            )
            return None
        if not 1 <= array.shape[0] <= self.max_rows:
            errors.append(
                FieldError(spec.name, Rule.MAX_ROWS, f"expected 1 to {self.max_rows} rows, got {array.shape[0]}")
            )
            return None
        if want.kind != "b" and isinstance(value, list) and _has_booleans(value, array.ndim):
            errors.append(FieldError(spec.name, Rule.TYPE, f"expected numbers for {spec.describe()}, got booleans"))
            return None
        if array.dtype != want:
            if (
                want.kind in "iu"
                and array.size
                and (array.min() < np.iinfo(want).min or array.max() > np.iinfo(want).max)
            ):
                errors.append(FieldError(spec.name, Rule.RANGE, f"integers out of {want.name} range"))
                return None
            with np.errstate(over="ignore"):  # overflow becomes inf, reported as not finite
                array = array.astype(want)
        return array

    def _content(self, spec: TensorSpec, array: np.ndarray, errors: list[FieldError]) -> None:
        if array.dtype.kind == "f" and not all_finite(array):
            self._cells(
                spec.name,
                ~np.isfinite(array),
                array,
                Rule.FINITE,
                "must be a finite number (after conversion to " + array.dtype.name + ")",
                errors,
            )
        bounds = self.ranges.get(spec.name)
        if bounds is not None:
            with np.errstate(invalid="ignore"):
                outside = (array < bounds.low) | (array > bounds.high)
            if array.dtype.kind == "f":
                outside &= np.isfinite(array)  # already reported as not finite
            self._cells(spec.name, outside, array, Rule.RANGE, "outside the allowed range", errors, bounds)

    def _cells(
        self,
        name: str,
        mask: np.ndarray,
        array: np.ndarray,
        rule: str,
        message: str,
        errors: list[FieldError],
        bounds: TensorRange | None = None,
    ) -> None:
        if not mask.any():
            return
        for index in np.argwhere(mask)[: self.max_errors]:
            cell = tuple(int(i) for i in index)
            text = message
            if bounds is not None:
                low = np.broadcast_to(np.asarray(bounds.low, dtype=np.float64), array.shape[1:])
                high = np.broadcast_to(np.asarray(bounds.high, dtype=np.float64), array.shape[1:])
                text = f"{message} [{float(low[cell[1:]]):g}, {float(high[cell[1:]]):g}]"
            path = name + "".join(f"[{i}]" for i in cell)
            errors.append(FieldError(path, rule, text, _json_value(array[cell])))
