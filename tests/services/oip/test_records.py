"""Records over the Open Inference Protocol: a record model's fields as columns (datatypes, the
optional ones), columns decoded into records with every broken rule a 400 naming the input,
length-prefixed BYTES read exactly, and the records validator's errors moved to the request's
inputs."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from runtime.core.codes import Layer, Rule
from runtime.core.errors import FieldError, ValidationFailed
from services.oip.records import RecordField, decode_records, errors_at, example, fields_of, metadata_inputs
from services.oip.tensors import Given


class Payment(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"amount": 12.5, "currency": "EUR", "items": 2, "late": False}]}}

    amount: float = Field(ge=0)
    currency: Literal["EUR", "USD"]
    items: int
    late: bool
    note: str | None = None


PAYMENT_FIELDS = fields_of(Payment)


def column(name: str, datatype: str, data: list[Any], shape: tuple[int, ...] | None = None) -> Given:
    return Given(name, datatype, shape or (len(data), 1), data, None, f"{name}.binary_data_size")


def columns(rows: int = 2) -> list[Given]:
    return [
        column("amount", "FP64", [1.5, 2][:rows]),
        column("currency", "BYTES", ["EUR", "USD"][:rows]),
        column("items", "INT64", [1, 3][:rows]),
        column("late", "BOOL", [True, False][:rows]),
    ]


def refused(given: list[Given], max_rows: int = 8) -> tuple[str, str, str]:
    with pytest.raises(ValidationFailed) as caught:
        decode_records(given, PAYMENT_FIELDS, max_rows)
    [error] = caught.value.errors
    return error.path, error.rule, error.message


def test_a_record_models_fields_are_columns_of_their_datatypes() -> None:
    assert fields_of(Payment) == (
        RecordField("amount", "FP64", True),
        RecordField("currency", "BYTES", True),
        RecordField("items", "INT64", True),
        RecordField("late", "BOOL", True),
        RecordField("note", "BYTES", False),
    )
    listed = metadata_inputs(PAYMENT_FIELDS)
    assert listed[0] == {"name": "amount", "datatype": "FP64", "shape": [-1, 1]}
    assert listed[-1]["parameters"] == {"optional": True}
    assert example(Payment, PAYMENT_FIELDS)["inputs"][1] == {
        "name": "currency",
        "datatype": "BYTES",
        "shape": [1, 1],
        "data": ["EUR"],
    }


def test_columns_make_records_row_by_row() -> None:
    records, rows = decode_records(columns(), PAYMENT_FIELDS, 8)
    assert rows == 2
    assert records == [
        {"amount": 1.5, "currency": "EUR", "items": 1, "late": True},
        {"amount": 2.0, "currency": "USD", "items": 3, "late": False},
    ]
    assert type(records[1]["amount"]) is float  # an FP64 column's integers are floats
    note = column("note", "BYTES", [["a"], ["é"]])  # nested rows read too
    assert [r["note"] for r in decode_records([*columns(), note], PAYMENT_FIELDS, 8)[0]] == ["a", "é"]


@pytest.mark.parametrize(
    ("change", "path", "rule", "message"),
    [
        (lambda g: [*g, column("iban", "BYTES", ["x", "y"])], "inputs[4].name", Rule.UNKNOWN_FIELD, "no field 'iban'"),
        (lambda g: [*g, g[0]], "inputs[4].name", Rule.UNKNOWN_FIELD, "given twice"),
        (lambda g: g[1:], "inputs", Rule.REQUIRED, "'amount' is missing"),
        (lambda g: [column("amount", "FP32", [1.5, 2]), *g[1:]], "inputs[0].datatype", Rule.TYPE, "takes FP64"),
        (lambda g: [column("amount", "FP64", [1.5, 2], (2,)), *g[1:]], "inputs[0].shape", Rule.SHAPE, "[N, 1]"),
        (lambda g: [column("amount", "FP64", [1.5], (1, 1)), *g[1:]], "inputs[1].shape", Rule.SHAPE, "same batch"),
        (lambda g: [column("amount", "FP64", [1.5, 2, 3], (2, 1)), *g[1:]], "inputs[0].data", Rule.SHAPE, "holds 2"),
        (lambda g: [column("amount", "FP64", [True, 2]), *g[1:]], "inputs[0].data", Rule.TYPE, "FP64 takes"),
        (lambda g: [g[0], column("currency", "BYTES", [1, 2]), *g[2:]], "inputs[1].data", Rule.TYPE, "strings"),
        (lambda g: [*g[:3], column("late", "BOOL", [1, 0])], "inputs[3].data", Rule.TYPE, "BOOL takes"),
        (lambda g: [*g[:2], column("items", "INT64", [1.0, 2]), g[3]], "inputs[2].data", Rule.TYPE, "INT64 takes"),
    ],
)
def test_every_broken_rule_names_the_input(change: Any, path: str, rule: str, message: str) -> None:
    found = refused(change(columns()))
    assert found[:2] == (path, rule)
    assert message in found[2]


def test_the_batch_size_is_bounded() -> None:
    assert refused(columns(), max_rows=1)[1] == Rule.MAX_ROWS
    assert refused([])[0] == "inputs"  # nothing given: the required fields are missing


def prefixed(*texts: bytes) -> bytes:
    return b"".join(len(t).to_bytes(4, "little") + t for t in texts)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=8))
def test_binary_bytes_read_exactly(texts: list[str]) -> None:
    raw = prefixed(*(t.encode() for t in texts))
    given = [Given("note", "BYTES", (len(texts), 1), None, raw, "note.binary_data_size")]
    others = [Given(g.name, g.datatype, (len(texts), 1), g.data[:1] * len(texts), None, g.raw_path) for g in columns(1)]
    records, _ = decode_records([*others, *given], PAYMENT_FIELDS, 8)
    assert [r["note"] for r in records] == texts


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x05\x00\x00\x00abc", "runs beyond"),
        (b"\x01\x00", "ends before element 0's length"),
        (prefixed(b"a") + b"!", "1 bytes after the 1 elements"),
        (prefixed(b"\xff"), "UTF-8"),
    ],
)
def test_broken_binary_bytes_are_refused(raw: bytes, message: str) -> None:
    given = [*columns(1), Given("note", "BYTES", (1, 1), None, raw, "note.binary_data_size")]
    path, _, said = refused(given)
    assert (path, message in said) == ("note.binary_data_size", True)  # where the request gave its size


def test_the_validators_errors_move_to_the_inputs() -> None:
    found = ValidationFailed(
        [
            FieldError("[1].amount", Rule.RANGE, "must be >= 0", -1),
            FieldError("[0]", "items_rule", "a business rule", None),
            FieldError("body", Rule.TYPE, "not about a row"),
        ],
        Layer.SCHEMA,
    )
    moved = errors_at(found, ["currency", "amount"])
    assert [e.path for e in moved.errors] == ["inputs[1].data[1]", "records[0]", "body"]
    assert moved.errors[0].rule == Rule.RANGE
