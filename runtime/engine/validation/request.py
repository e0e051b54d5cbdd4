"""What every validator produces and shares: the validated request, business rules, and the helpers
that render offending values.

Validation runs in three layers, each reporting every violation it finds:

1. **schema** - types, required and unknown fields, dtype and shape against the ONNX signature.
   Nothing is reshaped or coerced to fit: a wrong shape is an error, not a suggestion.
2. **content** - finite values, ranges and allowed categories.
3. **business** - named predicates over a row that passed the first two layers.

A :class:`Schema` does layers 1 and 2 for one kind of payload (records: :mod:`.records`; tensors:
:mod:`.tensors`); :class:`~.validator.Validator` adds layer 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ...core.errors import FieldError

Row = Any
"""One row as business rules see it: a record (an instance of the service's request type), or
``{input: row_array}`` for tensor requests."""


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    """A request that passed every layer: arrays ready for onnxruntime, plus rows for rules."""

    inputs: dict[str, np.ndarray]
    rows: int
    records: list[Any] | None = None
    """The typed records, for record requests (business rules and rule stages use them)."""
    listed: bool = False
    """The rows came as a list (their errors name their index even when there is one)."""

    def row(self, index: int) -> Row:
        if self.records is not None:
            return self.records[index]
        return {name: array[index] for name, array in self.inputs.items()}


@dataclass(frozen=True, slots=True)
class BusinessRule:
    """A named predicate that every row must satisfy, e.g. ``txn_count_1h <= txn_count_24h``."""

    name: str
    check: Callable[[Row], bool]
    message: str
    field: str = ""
    """The field the rule is about, for the error path; empty for whole-row rules."""

    @classmethod
    def of(cls, rule: BusinessRule | Callable[[Row], bool]) -> BusinessRule:
        """A rule as declared: a :class:`BusinessRule`, or a plain function ``row -> bool`` whose
        name is the rule's name and whose docstring's first line is its message."""
        if isinstance(rule, BusinessRule):
            return rule
        name = getattr(rule, "__name__", "")
        if not name or name == "<lambda>":
            raise TypeError(f"a business rule needs a name: use a def, or BusinessRule(name, ...), got {rule!r}")
        doc = (rule.__doc__ or "").strip().splitlines()
        return cls(name, rule, doc[0] if doc else f"breaks the rule {name}")

    def value(self, row: Row) -> Any:
        """The value of the rule's field in ``row``, for the error."""
        if not self.field:
            return None
        found = row.get(self.field) if isinstance(row, Mapping) else getattr(row, self.field, None)
        return json_value(found)


class Schema(Protocol):
    """Layers 1 and 2 for one kind of payload."""

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        """Layer 1, and layer 2 unless ``content`` is False."""
        ...


FLOAT32_OVERFLOW = 3.4028235677973366e38
"""Half-way between float32's largest finite value and 2**128: a float64 of this magnitude or more
rounds to infinity as float32, one below it to a finite number. Comparing with it costs a tenth of
``math.isfinite(np.float32(x))``, once per number field of every request."""


def json_value(value: Any) -> Any:
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


def all_finite(array: np.ndarray) -> bool:
    """Whether every value is finite."""
    return bool(np.isfinite(array).all())
