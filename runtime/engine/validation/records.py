"""Record payloads: one record, or a list of them, of a pydantic model that a service declares, each
encoded as one row of the model's ``float32[N, fields]`` input (columns in field order).

A record model's fields are ``float``, ``int``, ``bool`` or ``Literal[...]`` of strings (a category;
its column holds the value's position in the ``Literal``); a ``str`` field is context (a note, an
e-mail address) that rules, checks and the audit read and the model never sees. Constraints on the
fields (``ge``, ``le``, ...) are the content rules. Whatever the model's own configuration, Ballast
validates strictly:

* no coercion: ``"5"`` is not a number, ``true`` is not a number, ``1`` is not ``true``;
* an integer field takes a whole-number float (``14.0``, which is JSON's ``14``), as JSON Schema does;
* unknown fields are errors;
* a number must fit float32 (the model's input type): ``1e39`` is a ``finite`` error;
* every violation of every record is reported, each with its path, rule and value.

The pydantic model's own validators run too (a ``field_validator`` raising ``ValueError`` is rule
``value``; a ``PydanticCustomError`` names its own rule). Validating a 10-field record and encoding
it takes about 8 us here, against 14 us for the hand-written validator it replaced
(docs/design/declared-services.md).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from ...core.codes import Rule
from ...core.errors import FieldError
from ...core.signature import ModelSignature
from .ranges import Bounds
from .request import FLOAT32_OVERFLOW, ValidatedRequest, json_value

Kind = Literal["number", "integer", "boolean", "category"]


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a record model, as a column of the model's input."""

    name: str
    kind: Kind
    categories: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    description: str = ""

    @property
    def bounds(self) -> Bounds | None:
        if self.low is None and self.high is None:
            return None
        return Bounds(-np.inf if self.low is None else self.low, np.inf if self.high is None else self.high)


def is_context(annotation: Any) -> bool:
    """A ``str`` (or optional ``str``) field: context for rules and the audit, not a model column."""
    optional = get_origin(annotation) in (Union, UnionType) and set(get_args(annotation)) == {str, type(None)}
    return annotation is str or optional


def columns_of(model: type[BaseModel]) -> tuple[Column, ...]:
    """The columns a record model encodes into, with the bounds its fields declare (context fields,
    ``str``, are none of them)."""
    columns = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if is_context(annotation):
            continue
        categories: tuple[str, ...] = ()
        kind: Kind
        if annotation is bool:
            kind = "boolean"
        elif annotation is int:
            kind = "integer"
        elif annotation is float:
            kind = "number"
        elif get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
            kind, categories = "category", tuple(get_args(annotation))
        else:
            raise TypeError(
                f"{model.__name__}.{name}: a record field is float, int, bool or Literal[...] of strings, "
                f"got {annotation!r}"
            )
        low = high = None
        for constraint in info.metadata:
            if isinstance(constraint, annotated_types.Ge | annotated_types.Gt):
                low = float(getattr(constraint, "ge", getattr(constraint, "gt", 0)))
            elif isinstance(constraint, annotated_types.Le | annotated_types.Lt):
                high = float(getattr(constraint, "le", getattr(constraint, "lt", 0)))
        columns.append(Column(name, kind, categories, low, high, info.description or ""))
    return tuple(columns)


# --- the strict model Ballast validates with --------------------------------------------------


def _whole_float_as_int(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _finite_integer(value: Any) -> Any:
    """An integer field: a whole float is its integer; one float32 cannot hold is not finite (before
    any range is checked); any other float fails the strict integer check as a type error."""
    value = _whole_float_as_int(value)
    if type(value) is int and not -FLOAT32_OVERFLOW < value < FLOAT32_OVERFLOW:
        raise PydanticCustomError(Rule.FINITE, "must be a finite float32 number")
    return value


def _finite_number(value: Any) -> Any:
    """A number field: a number float32 cannot hold (inf, NaN, 1e39, 10**400) is not finite, before
    any range is checked."""
    if type(value) in (int, float) and not -FLOAT32_OVERFLOW < value < FLOAT32_OVERFLOW:  # false for NaN
        raise PydanticCustomError(Rule.FINITE, "must be a finite float32 number")
    return value


_WHOLE = BeforeValidator(_whole_float_as_int)
_FINITE_INTEGER = BeforeValidator(_finite_integer)
_FINITE_NUMBER = BeforeValidator(_finite_number)


def _strict_model(
    model: type[BaseModel], columns: Sequence[Column], learned: Mapping[str, Bounds], content: bool
) -> type[BaseModel]:
    """A subclass of ``model`` that validates as the module docstring says; without ``content``,
    only types (the measurement switch ``BALLAST_CONTENT_CHECKS=false``)."""
    config = ConfigDict(**{**model.model_config, "strict": True, "extra": "forbid"})
    base = type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})
    fields: dict[str, Any] = {}
    for column in columns:
        info = model.model_fields[column.name]
        metadata: list[Any] = list(info.metadata) if content else []  # constraints first: native, in the schema
        if content and column.kind in ("number", "integer"):
            bounds = learned.get(column.name)
            if bounds is not None and column.low is None:
                metadata.append(annotated_types.Ge(bounds.low))
            if bounds is not None and column.high is None:
                metadata.append(annotated_types.Le(bounds.high))
        if column.kind == "integer":
            metadata.append(_FINITE_INTEGER if content else _WHOLE)
        elif column.kind == "number" and content:
            metadata.append(_FINITE_NUMBER)
        default = info.default if info.default is not PydanticUndefined else ...
        fields[column.name] = (
            Annotated[(info.annotation, *metadata)] if metadata else info.annotation,
            FieldInfo(default=default, description=info.description),
        )
    strict: type[BaseModel] = create_model(model.__name__, __base__=base, __module__=model.__module__, **fields)
    return strict


# --- the schema --------------------------------------------------------------------------------


class RecordSchema:
    """Layers 1 and 2 for payloads that are one record ``{field: value}`` or a list of them."""

    def __init__(
        self,
        model: type[BaseModel],
        *,
        input_name: str,
        max_rows: int,
        learned: Mapping[str, Bounds] | None = None,
    ) -> None:
        """``learned``: bounds for numeric fields that declare none (from training data)."""
        if max_rows < 1:
            raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        self.model = model
        self.input_name = input_name
        self.max_rows = max_rows
        declared = columns_of(model)
        learned = dict(learned or {})
        unknown = set(learned) - {c.name for c in declared}
        if unknown:
            raise ValueError(f"learned bounds for fields {model.__name__} does not have: {sorted(unknown)}")
        self.columns = tuple(_with_learned(c, learned.get(c.name)) for c in declared)
        self._by_name = {c.name: c for c in self.columns}
        self._categories = [
            (index, {c: float(i) for i, c in enumerate(column.categories)})
            for index, column in enumerate(self.columns)
            if column.kind == "category"
        ]
        names = [c.name for c in self.columns]
        get = operator.attrgetter(*names)
        self._values: Callable[[Any], tuple[Any, ...]] = get if len(names) > 1 else (lambda r: (get(r),))
        self._adapters: dict[bool, tuple[type[BaseModel], TypeAdapter[list[Any]]]] = {}
        for content in (True, False):
            strict = _strict_model(model, declared, learned, content)
            self._adapters[content] = (strict, TypeAdapter(list[strict]))  # type: ignore[valid-type,unused-ignore]

    @property
    def strict_model(self) -> type[BaseModel]:
        """The model requests are validated with (a subclass of the declared one)."""
        return self._adapters[True][0]

    def check_signature(self, signature: ModelSignature) -> None:
        """Fail at start-up unless the model takes exactly what this schema produces."""
        spec = signature.input(self.input_name)
        width = len(self.columns)
        if spec.dtype != np.float32 or len(spec.shape) != 2 or spec.shape[1] not in (None, width):
            raise TypeError(
                f"{self.model.__name__} encodes float32[N, {width}] (one column per field) but the model's "
                f"input {self.input_name!r} is {spec.describe()}"
            )

    def parse(self, payload: Any, errors: list[FieldError], content: bool = True) -> ValidatedRequest | None:
        strict, many = self._adapters[content]
        single = type(payload) is dict or isinstance(payload, Mapping)
        try:
            if single:
                records = [strict.model_validate(payload)]
            elif isinstance(payload, list):
                if not 1 <= len(payload) <= self.max_rows:
                    message = f"expected 1 to {self.max_rows} records, got {len(payload)}"
                    errors.append(FieldError("", Rule.MAX_ROWS, message))
                    return None
                records = many.validate_python(payload)
            else:
                errors.append(
                    FieldError("", Rule.TYPE, "expected a record object or a list of them", json_value(payload))
                )
                return None
        except ValidationError as exc:
            errors.extend(self._field_error(error) for error in exc.errors(include_url=False))
            return None
        return ValidatedRequest(
            inputs={self.input_name: self.encode(records)},
            rows=len(records),
            records=records,
            listed=not single,
        )

    def encode(self, records: Sequence[Any]) -> np.ndarray:
        """The records as the model's input, one row each (categories as their position)."""
        values, categories = self._values, self._categories
        rows = []
        for record in records:
            row = list(values(record))
            for column, codes in categories:
                row[column] = codes[row[column]]
            rows.append(row)
        return np.array(rows, dtype=np.float32)

    def _field_error(self, error: Any) -> FieldError:
        loc = error["loc"]
        where = f"[{loc[0]}]" if loc and isinstance(loc[0], int) else ""
        rest = [str(part) for part in loc[1 if where else 0 :]]
        path = where + ("." if where and rest else "") + ".".join(rest)
        column = self._by_name.get(rest[0]) if len(rest) == 1 else None
        kind, value = error["type"], error.get("input")
        rule, message = _RULES.get(kind, (None, None))
        if kind == "extra_forbidden":
            return FieldError(path, Rule.UNKNOWN_FIELD, f"unknown field {rest[-1]!r}")
        if kind == "missing":
            return FieldError(path, Rule.REQUIRED, f"missing {column.kind if column else ''} field".replace("  ", " "))
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return FieldError(path, Rule.TYPE, "expected a record object", json_value(value))
        if kind == "literal_error" and column is not None:
            if not isinstance(value, str):
                return FieldError(path, Rule.TYPE, "expected a string", json_value(value))
            return FieldError(path, Rule.CATEGORY, f"expected one of {list(column.categories)}", json_value(value))
        if rule is Rule.RANGE and column is not None:
            return FieldError(path, Rule.RANGE, f"must be within {column.bounds}", json_value(value))
        if rule is None:  # a validator of the service's own model
            rule = Rule.VALUE if kind in ("value_error", "assertion_error") else kind
            message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return FieldError(path, rule, message or error["msg"], json_value(value))


_RULES: dict[str, tuple[Rule, str]] = {
    "int_type": (Rule.TYPE, "expected an integer"),
    "int_from_float": (Rule.TYPE, "expected an integer"),
    "float_type": (Rule.TYPE, "expected a number"),
    "bool_type": (Rule.TYPE, "expected true or false"),
    "string_type": (Rule.TYPE, "expected a string"),
    "greater_than_equal": (Rule.RANGE, ""),
    "greater_than": (Rule.RANGE, ""),
    "less_than_equal": (Rule.RANGE, ""),
    "less_than": (Rule.RANGE, ""),
    "finite_number": (Rule.FINITE, "must be a finite float32 number"),
    Rule.FINITE: (Rule.FINITE, "must be a finite float32 number"),
}
"""pydantic's error types, as Ballast's rules and messages."""


def _with_learned(column: Column, bounds: Bounds | None) -> Column:
    if bounds is None or column.kind not in ("number", "integer"):
        return column
    low = column.low if column.low is not None else bounds.low
    high = column.high if column.high is not None else bounds.high
    return Column(column.name, column.kind, column.categories, low, high, column.description)


def record_values(columns: Sequence[Column], row: np.ndarray) -> dict[str, Any]:
    """An encoded row back to a record's values (categories as strings, booleans as bools)."""
    decode: dict[Kind, Callable[[Column, float], Any]] = {
        "category": lambda c, v: c.categories[int(v)],
        "boolean": lambda c, v: bool(v),
        "integer": lambda c, v: int(v),
        "number": lambda c, v: float(v),
    }
    return {c.name: decode[c.kind](c, float(v)) for c, v in zip(columns, row, strict=True)}
