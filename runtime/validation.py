"""Request validation in three layers, each reporting every violation it finds:

1. **schema** - types, required and unknown fields, dtype and shape against the ONNX signature.
   Nothing is reshaped or coerced to fit: a wrong shape is an error, not a suggestion.
2. **content** - finite values, per-feature ranges and allowed categories (declared, or learned
   from training data with :func:`learn_range`).
3. **business** - named predicates over a row that passed the first two layers.

Layers 1 and 2 run together (content is checked on whatever parsed), business rules only on a
request that passed both. The result is either a :class:`ValidatedRequest` whose arrays can go
straight to onnxruntime, or :class:`~runtime.errors.ValidationFailed` listing every violation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal, Protocol

import numpy as np

from .errors import FieldError, ValidationFailed
from .signature import ModelSignature, TensorSpec

Row = Mapping[str, Any]
"""One row as business rules see it: a record's typed fields, or ``{input: row_array}``."""


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    """A request that passed every layer: arrays ready for onnxruntime, plus rows for rules."""

    inputs: dict[str, np.ndarray]
    rows: int
    records: list[dict[str, Any]] | None = None
    """The typed records, for record schemas (business rules and rule-based fallbacks use them)."""

    def row(self, index: int) -> Row:
        if self.records is not None:
            return self.records[index]
        return {name: array[index] for name, array in self.inputs.items()}


@dataclass(frozen=True, slots=True)
class BusinessRule:
    """A named predicate that every row must satisfy, e.g. ``card_age_days >= 0 when present``."""

    name: str
    check: Callable[[Row], bool]
    message: str
    field: str = ""
    """The field the rule is about, for the error path; empty for whole-row rules."""


class Schema(Protocol):
    """Layers 1 and 2 for one kind of payload."""

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        """Layer 1, and layer 2 unless ``content`` is False."""
        ...


# --- helpers ---------------------------------------------------------------------------------

FLOAT32_OVERFLOW = 3.4028235677973366e38
"""Half-way between float32's largest finite value and 2**128: a float64 of this magnitude or more
rounds to infinity as float32, one below it to a finite number. Comparing with it costs a tenth of
``math.isfinite(np.float32(x))``, once per number field of every request."""


def _json_value(value: Any) -> Any:
    """A short, JSON-safe rendering of an offending value."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | np.integer):
        number = int(value)  # JSON encoders (orjson) stop at 64 bits
        return number if -(2**63) <= number < 2**64 else f"<{number.bit_length()}-bit integer>"
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, str):
        return value if len(value) <= 64 else value[:61] + "..."
    return f"<{type(value).__name__}>"


_BOOLEANS = frozenset({bool, np.bool_})


def _has_booleans(value: list[Any], ndim: int) -> bool:
    """Whether a rectangular nested list of ``ndim`` levels holds a boolean: NumPy turns
    ``[1.5, true]`` into ``[1.5, 1.0]``, so mixed booleans never show in the array's dtype."""
    cells: Iterable[Any] = value
    for _ in range(ndim - 1):
        cells = chain.from_iterable(cells)
    return not _BOOLEANS.isdisjoint(map(type, cells))


def all_finite(array: np.ndarray) -> bool:
    """Whether every value is finite."""
    return bool(np.isfinite(array).all())


def learn_range(values: np.ndarray, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(low, high)`` from training data ``values`` (rows first), widened on each
    side by ``margin`` times the feature's observed spread."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    low = np.min(values, axis=0).astype(np.float64)
    high = np.max(values, axis=0).astype(np.float64)
    pad = (high - low) * margin
    return low - pad, high + pad


# --- tensor payloads ---------------------------------------------------------------------------


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
        max_errors: int = 50,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        self.specs = signature.inputs
        self.max_rows = max_rows
        self.ranges = dict(ranges or {})
        self.max_errors = max_errors
        self._names = frozenset(s.name for s in self.specs)
        unknown = set(self.ranges) - self._names
        if unknown:
            raise ValueError(f"ranges given for inputs the model does not have: {sorted(unknown)}")

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        if not isinstance(payload, Mapping):
            errors.append(FieldError("", "type", "expected an object of named input tensors", _json_value(payload)))
            return None
        known = self._names
        for name in payload:
            if name not in known:
                errors.append(
                    FieldError(
                        str(name),
                        "unknown_field",
                        f"the model has no input {name!r}; inputs: {sorted(known)}",
                    )
                )
        arrays: dict[str, np.ndarray] = {}
        for spec in self.specs:
            if spec.name not in payload:
                errors.append(FieldError(spec.name, "required", f"missing input {spec.describe()}"))
                continue
            array = self._array(spec, payload[spec.name], errors)
            if array is not None:
                arrays[spec.name] = array
        if errors:
            return None
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) > 1:
            errors.append(FieldError("", "shape", f"inputs disagree on the number of rows: {sorted(rows)}"))
            return None
        for spec in self.specs if content else ():
            self._content(spec, arrays[spec.name], errors)
        return ValidatedRequest(inputs=arrays, rows=rows.pop()) if not errors else None

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
            errors.append(FieldError(spec.name, "type", f"expected a rectangular array of numbers, {spec.describe()}"))
            return None
        want = spec.dtype
        if array.dtype.kind == "b" and want.kind != "b":
            errors.append(FieldError(spec.name, "type", f"expected numbers for {spec.describe()}, got booleans"))
            return None
        if want.kind in "iu" and array.dtype.kind == "f":
            errors.append(FieldError(spec.name, "type", f"expected integers for {spec.describe()}, got floats"))
            return None
        if array.ndim != len(spec.shape) or not spec.row_shape_matches(array.shape[1:]):
            errors.append(FieldError(spec.name, "shape", f"expected {spec.describe()}, got shape {list(array.shape)}"))
            return None
        if not 1 <= array.shape[0] <= self.max_rows:
            errors.append(
                FieldError(spec.name, "max_rows", f"expected 1 to {self.max_rows} rows, got {array.shape[0]}")
            )
            return None
        if want.kind != "b" and isinstance(value, list) and _has_booleans(value, array.ndim):
            errors.append(FieldError(spec.name, "type", f"expected numbers for {spec.describe()}, got booleans"))
            return None
        if array.dtype != want:
            if (
                want.kind in "iu"
                and array.size
                and (array.min() < np.iinfo(want).min or array.max() > np.iinfo(want).max)
            ):
                errors.append(FieldError(spec.name, "range", f"integers out of {want.name} range"))
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
                "finite",
                "must be a finite number (after conversion to " + array.dtype.name + ")",
                errors,
            )
        bounds = self.ranges.get(spec.name)
        if bounds is not None:
            with np.errstate(invalid="ignore"):
                outside = (array < bounds.low) | (array > bounds.high)
            if array.dtype.kind == "f":
                outside &= np.isfinite(array)  # already reported as not finite
            self._cells(spec.name, outside, array, "range", "outside the allowed range", errors, bounds)

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


# --- record payloads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One named feature of a tabular model; its column is its position in the schema."""

    name: str
    kind: Literal["number", "integer", "boolean", "category"]
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    """Allowed values of a category; a category's column holds its index in this tuple."""
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind == "category" and not self.categories:
            raise ValueError(f"category field {self.name!r} needs its allowed categories")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"field {self.name!r}: minimum {self.minimum} > maximum {self.maximum}")


class RecordSchema:
    """Payloads that are one record ``{field: value}`` or a list of them, encoded into one
    ``float32[N, len(fields)]`` model input."""

    def __init__(self, fields: Sequence[Field], *, input_name: str, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        self.fields = tuple(fields)
        self.input_name = input_name
        self.max_rows = max_rows
        self._codes = {f.name: {c: i for i, c in enumerate(f.categories)} for f in fields}

    def check_signature(self, signature: ModelSignature) -> None:
        """Fail at start-up if the model does not take exactly what this schema produces."""
        spec = signature.input(self.input_name)
        want = (None, len(self.fields))
        if spec.dtype != np.float32 or len(spec.shape) != 2 or spec.shape[1] not in (None, want[1]):
            raise TypeError(
                f"record schema encodes float32[N, {want[1]}] but model input {self.input_name!r} is {spec.describe()}"
            )

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        items: list[Any]
        if isinstance(payload, Mapping):
            items, prefix = [payload], False
        elif isinstance(payload, list):
            items, prefix = payload, True
            if not 1 <= len(items) <= self.max_rows:
                errors.append(FieldError("", "max_rows", f"expected 1 to {self.max_rows} records, got {len(items)}"))
                return None
        else:
            errors.append(FieldError("", "type", "expected a record object or a list of them", _json_value(payload)))
            return None
        matrix = np.empty((len(items), len(self.fields)), dtype=np.float32)
        records: list[dict[str, Any]] = []
        for row, item in enumerate(items):
            where = f"[{row}]." if prefix else ""
            if not isinstance(item, Mapping):
                errors.append(FieldError(where.rstrip("."), "type", "expected a record object", _json_value(item)))
                continue
            records.append(self._record(item, where, matrix[row], errors, content))
        if errors:
            return None
        return ValidatedRequest(inputs={self.input_name: matrix}, rows=len(items), records=records)

    def _record(
        self, item: Mapping[str, Any], where: str, out: np.ndarray, errors: list[FieldError], content: bool
    ) -> dict[str, Any]:
        for key in item:
            if key not in self._codes:
                errors.append(FieldError(f"{where}{key}", "unknown_field", f"unknown field {key!r}"))
        record: dict[str, Any] = {}
        for column, spec in enumerate(self.fields):
            path = where + spec.name
            if spec.name not in item:
                errors.append(FieldError(path, "required", f"missing {spec.kind} field"))
                continue
            value = item[spec.name]
            number = self._typed(spec, value, path, errors, content)
            if number is None:
                continue
            out[column] = number
            record[spec.name] = value
        return record

    def _typed(self, spec: Field, value: Any, path: str, errors: list[FieldError], content: bool) -> float | None:
        """Layer 1 (type) then layer 2 (finite, range, category) for one value."""
        kind = spec.kind
        if kind == "boolean":
            if not isinstance(value, bool):
                errors.append(FieldError(path, "type", "expected true or false", _json_value(value)))
                return None
            return float(value)
        if kind == "category":
            if not isinstance(value, str):
                errors.append(FieldError(path, "type", "expected a string", _json_value(value)))
                return None
            code = self._codes[spec.name].get(value)
            if code is None:
                errors.append(
                    FieldError(path, "category", f"expected one of {list(spec.categories)}", _json_value(value))
                )
                return None
            return float(code)
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(
                FieldError(path, "type", f"expected a{'n' if kind == 'integer' else ''} {kind}", _json_value(value))
            )
            return None
        if kind == "integer" and not (isinstance(value, int) or value.is_integer()):  # 14.0 is JSON's 14
            errors.append(FieldError(path, "type", "expected an integer", _json_value(value)))
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float64: JSON decoders never give one, Python callers may
            errors.append(FieldError(path, "finite", "must be a finite float32 number", _json_value(value)))
            return None
        if not content:
            return number
        if not -FLOAT32_OVERFLOW < number < FLOAT32_OVERFLOW:  # also false for NaN
            errors.append(FieldError(path, "finite", "must be a finite float32 number", _json_value(value)))
            return None
        if (spec.minimum is not None and number < spec.minimum) or (spec.maximum is not None and number > spec.maximum):
            errors.append(
                FieldError(path, "range", f"must be within [{spec.minimum}, {spec.maximum}]", _json_value(value))
            )
            return None
        return number

    def with_learned_ranges(self, data: np.ndarray, margin: float = 0.1) -> RecordSchema:
        """A copy whose numeric fields without declared bounds take them from training data
        (columns in field order)."""
        low, high = learn_range(data, margin)
        fields = [
            f
            if f.kind not in ("number", "integer")
            else Field(
                f.name,
                f.kind,
                f.minimum if f.minimum is not None else float(low[i]),
                f.maximum if f.maximum is not None else float(high[i]),
                f.categories,
                f.description,
            )
            for i, f in enumerate(self.fields)
        ]
        return RecordSchema(fields, input_name=self.input_name, max_rows=self.max_rows)


# --- the validator -----------------------------------------------------------------------------


@dataclass(slots=True)
class Validator:
    """Runs the three layers and raises :class:`ValidationFailed` with every violation."""

    schema: Schema
    rules: Sequence[BusinessRule] = field(default_factory=tuple)
    max_errors: int = 100
    content_checks: bool = True
    """Layers 2 and 3. Off only to measure what they cost (``BALLAST_CONTENT_CHECKS=false``)."""

    def validate(self, payload: Any) -> ValidatedRequest:
        errors: list[FieldError] = []
        request = self.schema.parse(payload, errors, self.content_checks)
        if request is None or errors:
            layer = "schema" if any(e.rule in _SCHEMA_RULES for e in errors) else "content"
            raise ValidationFailed(errors[: self.max_errors], layer)
        for index in range(request.rows if self.rules and self.content_checks else 0):
            row = request.row(index)
            for rule in self.rules:
                if not rule.check(row):
                    where = f"[{index}]" if request.rows > 1 else ""
                    path = f"{where}.{rule.field}" if where and rule.field else (rule.field or where)
                    value = _json_value(row.get(rule.field)) if rule.field else None
                    errors.append(FieldError(path, rule.name, rule.message, value))
        if errors:
            raise ValidationFailed(errors[: self.max_errors], "business")
        return request


_SCHEMA_RULES = frozenset({"type", "shape", "required", "unknown_field", "max_rows"})
