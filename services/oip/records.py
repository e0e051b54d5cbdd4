"""Services that take records, over the Open Inference Protocol: one input per field of the declared
record, each a column of shape ``[N, 1]`` (row ``i`` of every column makes record ``i``, as
MLServer's pandas codec lays a table out), checked as tensors are (names, datatype, shape, element
count and kind), then made into records that the service's own validator checks as its records
route does (each field's rules, then the business rules).

    float                     FP64
    int                       INT64
    bool                      BOOL
    Literal["a", ...], str    BYTES: JSON strings; in binary, each element's length (4 bytes,
                              little-endian) before its UTF-8 bytes; gRPC's ``bytes_contents``

A field with a default may be left out (every row then takes the default); the model's outputs
are answered as a tensor service's are.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from runtime.core.codes import Rule
from runtime.core.errors import FieldError, ValidationFailed
from runtime.engine.validation.records import columns_of, is_context

from .tensors import DTYPES, Given, fail, json_elements

SHAPE = (-1, 1)
"""Each input's shape in the metadata: a column, one element per record."""
_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "category": "BYTES"}


@dataclass(frozen=True, slots=True)
class RecordField:
    """One field of the record as an input of the protocol."""

    name: str
    datatype: str
    required: bool


def fields_of(model: type[BaseModel]) -> tuple[RecordField, ...]:
    """The inputs a record model takes, in its fields' order."""
    kinds = {column.name: column.kind for column in columns_of(model)}
    return tuple(
        RecordField(
            name,
            "BYTES" if is_context(info.annotation) else _DATATYPES[kinds[name]],
            info.is_required(),
        )
        for name, info in model.model_fields.items()
    )


def metadata_inputs(fields: Sequence[RecordField]) -> list[dict[str, Any]]:
    """The inputs as the metadata lists them (a field that may be left out says so)."""
    return [
        {
            "name": f.name,
            "datatype": f.datatype,
            "shape": list(SHAPE),
            **({} if f.required else {"parameters": {"optional": True}}),
        }
        for f in fields
    ]


def example(model: type[BaseModel], fields: Sequence[RecordField]) -> dict[str, Any]:
    """A valid inference request: the record model's first example, as columns of one row."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    first = examples[0] if isinstance(examples, list) and examples else None
    record: dict[str, Any] = first if isinstance(first, dict) else {}
    return {
        "inputs": [
            {"name": f.name, "datatype": f.datatype, "shape": [1, 1], "data": [record[f.name]]}
            for f in fields
            if f.name in record
        ]
    }


def decode_records(
    given: Sequence[Given], fields: Sequence[RecordField], max_rows: int
) -> tuple[list[dict[str, Any]], int]:
    """The records the columns ``given`` make, and their count; a :class:`ValidationFailed` names
    the first broken rule (the records' own rules are the service validator's)."""
    wanted = {f.name: f for f in fields}
    names = [t.name for t in given]
    for index, name in enumerate(names):
        if name not in wanted:
            raise fail(f"inputs[{index}].name", Rule.UNKNOWN_FIELD, f"the record has no field {name!r}", name)
        if names.index(name) != index:
            raise fail(f"inputs[{index}].name", Rule.UNKNOWN_FIELD, f"input {name!r} given twice", name)
    for f in fields:
        if f.required and f.name not in names:
            raise fail("inputs", Rule.REQUIRED, f"the record's field {f.name!r} is missing", f.name)
    rows: int | None = None
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(given):
        path = f"inputs[{index}]"
        field = wanted[tensor.name]
        if tensor.datatype != field.datatype:
            raise fail(f"{path}.datatype", Rule.TYPE, f"the field takes {field.datatype}", tensor.datatype)
        shape = tensor.shape
        if len(shape) != 2 or shape[1] != 1:
            raise fail(f"{path}.shape", Rule.SHAPE, "a field is a column: [N, 1]", list(shape))
        if rows is None:
            rows = shape[0]
        if shape[0] != rows:
            raise fail(f"{path}.shape", Rule.SHAPE, f"every input must have the same batch size ({rows})", shape[0])
        if not 1 <= rows <= max_rows:
            raise fail(f"{path}.shape", Rule.MAX_ROWS, f"the batch size must be 1 to {max_rows}", rows)
        columns[tensor.name] = _column(tensor, rows, path)
    if rows is None:
        raise fail("inputs", Rule.REQUIRED, "no input given")
    return [{name: values[i] for name, values in columns.items()} for i in range(rows)], rows


def _column(tensor: Given, rows: int, path: str) -> list[Any]:
    """A column's ``rows`` values, as Python's own (``str`` for BYTES)."""
    if tensor.datatype == "BYTES":
        if tensor.raw is not None:
            return _strings(_length_prefixed(tensor.raw, rows, tensor.raw_path), tensor.raw_path)
        if tensor.data is None:
            raise fail(f"{path}.data", Rule.REQUIRED, "give data, or parameters.binary_data_size")
        items = json_elements(tensor.data, tensor.shape, rows, path)
        if not all(type(item) in (str, bytes) for item in items):
            raise fail(f"{path}.data", Rule.TYPE, "BYTES takes strings")
        return _strings(items, f"{path}.data")
    dtype = DTYPES[tensor.datatype]
    if tensor.raw is not None:
        if len(tensor.raw) != rows * dtype.itemsize:
            raise fail(
                tensor.raw_path,
                Rule.SHAPE,
                f"[{rows}, 1] of {tensor.datatype} is {rows * dtype.itemsize} bytes",
                len(tensor.raw),
            )
        values: list[Any] = np.frombuffer(tensor.raw, dtype=dtype).tolist()
        return values
    if tensor.data is None:
        raise fail(f"{path}.data", Rule.REQUIRED, "give data, or parameters.binary_data_size")
    items = json_elements(tensor.data, tensor.shape, rows, path)
    allowed = {"BOOL": (bool,), "INT64": (int,), "FP64": (int, float)}[tensor.datatype]
    if not all(type(item) in allowed for item in items):
        kinds = " or ".join(t.__name__ for t in allowed)
        raise fail(f"{path}.data", Rule.TYPE, f"{tensor.datatype} takes {kinds}")
    return [float(item) for item in items] if tensor.datatype == "FP64" else items


def _length_prefixed(raw: bytes | memoryview, count: int, where: str) -> list[bytes]:
    """``count`` elements of the binary BYTES form: each one's length (uint32, little-endian), then it."""
    items: list[bytes] = []
    at, view = 0, memoryview(raw)
    for _ in range(count):
        if at + 4 > len(view):
            raise fail(where, Rule.SHAPE, f"the binary data ends before element {len(items)}'s length")
        (length,) = struct.unpack_from("<I", view, at)
        if at + 4 + length > len(view):
            raise fail(where, Rule.SHAPE, f"element {len(items)} ({length} bytes) runs beyond the binary data")
        items.append(bytes(view[at + 4 : at + 4 + length]))
        at += 4 + length
    if at != len(view):
        raise fail(where, Rule.SHAPE, f"{len(view) - at} bytes after the {count} elements")
    return items


def _strings(items: Sequence[str | bytes], where: str) -> list[str]:
    try:
        return [item if isinstance(item, str) else item.decode("utf-8") for item in items]
    except UnicodeDecodeError:
        raise fail(where, Rule.TYPE, "BYTES elements must be UTF-8 text") from None


def errors_at(exc: ValidationFailed, names: Sequence[str]) -> ValidationFailed:
    """The service validator's errors about records (``[3].amount``) as places in the request
    (``inputs[2].data[3]``, ``amount`` being the third of the inputs ``names`` given)."""
    index = {name: i for i, name in enumerate(names)}
    moved = []
    for e in exc.errors:
        path = e.path
        if path.startswith("["):
            row, _, rest = path[1:].partition("]")
            name, dot, more = rest.removeprefix(".").partition(".")
            known = name in index
            path = f"inputs[{index[name]}].data[{row}]{dot}{more}" if known else f"records[{row}]{rest}"
        moved.append(FieldError(path, e.rule, e.message, e.value))
    return ValidationFailed(moved, exc.layer)
