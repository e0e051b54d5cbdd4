"""Records declared as pydantic models, validated strictly: every violation with path, rule and value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from pydantic import BaseModel, Field, field_validator

from runtime import (
    Bounds,
    BusinessRule,
    OnnxModel,
    RecordSchema,
    ValidationFailed,
    Validator,
    columns_of,
)


class Payment(BaseModel):
    amount: float = Field(ge=0, le=10_000)
    count: int = Field(ge=0)
    abroad: bool
    currency: Literal["EUR", "USD", "GBP"]


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"amount": 12.5, "count": 3, "abroad": False, "currency": "USD"}
    base.update(overrides)
    return base


def failures(validator: Validator, payload: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validator.validate(payload)
    return caught.value


@pytest.fixture
def record_validator() -> Validator:
    rules = [
        BusinessRule(
            "refund_needs_history",
            lambda r: r.amount < 5000 or r.count > 0,
            "large amounts need at least one earlier transaction",
            field="count",
        ),
    ]
    return Validator(RecordSchema(Payment, input_name="x", max_rows=4), rules)


def test_a_record_is_encoded_in_field_order_and_kept_as_the_declared_type(record_validator: Validator) -> None:
    request = record_validator.validate(record(abroad=True, currency="GBP"))
    np.testing.assert_array_equal(request.inputs["x"], [[12.5, 3, 1, 2]])
    assert request.inputs["x"].dtype == np.float32
    [typed] = request.records or []
    assert isinstance(typed, Payment)
    assert typed.model_dump() == record(abroad=True, currency="GBP")


def test_every_violation_of_a_record_is_reported_at_once(record_validator: Validator) -> None:
    payload = {"amount": "12", "count": 2.5, "abroad": 1, "currency": "JPY", "extra": 1}
    error = failures(record_validator, payload)
    assert {(e.path, e.rule) for e in error.errors} == {
        ("amount", "type"),
        ("count", "type"),
        ("abroad", "type"),
        ("currency", "category"),
        ("extra", "unknown_field"),
    }
    assert next(e for e in error.errors if e.path == "currency").value == "JPY"
    assert next(e for e in error.errors if e.path == "currency").message == "expected one of ['EUR', 'USD', 'GBP']"
    assert error.layer == "schema"


def test_paths_name_the_record_in_a_batch(record_validator: Validator) -> None:
    error = failures(record_validator, [record(), record(amount=-1), {"amount": 1}, 7])
    assert {(e.path, e.rule) for e in error.errors} == {
        ("[1].amount", "range"),
        ("[2].count", "required"),
        ("[2].abroad", "required"),
        ("[2].currency", "required"),
        ("[3]", "type"),
    }
    assert next(e for e in error.errors if e.path == "[1].amount").message == "must be within [0, 10000]"


def test_a_batch_is_limited_and_must_not_be_empty(record_validator: Validator) -> None:
    assert [e.rule for e in failures(record_validator, [record()] * 5).errors] == ["max_rows"]
    assert [e.rule for e in failures(record_validator, []).errors] == ["max_rows"]
    assert [e.rule for e in failures(record_validator, "a record").errors] == ["type"]


def test_booleans_are_not_numbers_and_numbers_are_not_booleans(record_validator: Validator) -> None:
    error = failures(record_validator, record(amount=True, abroad=0))
    assert [(e.path, e.rule) for e in error.errors] == [("amount", "type"), ("abroad", "type")]


def test_a_category_must_be_a_string(record_validator: Validator) -> None:
    error = failures(record_validator, record(currency=1))
    assert [(e.path, e.rule, e.message) for e in error.errors] == [("currency", "type", "expected a string")]


def test_non_finite_numbers_are_refused(record_validator: Validator) -> None:
    error = failures(record_validator, record(amount=float("inf")))
    assert [(e.path, e.rule, e.value) for e in error.errors] == [("amount", "finite", "inf")]


class Unbounded(BaseModel):
    v: float


@pytest.mark.parametrize(
    "value",
    [3.4028234663852886e38, 3.4028235677973362e38, 3.4028235677973366e38, 1e39, float("nan"), -float("inf")],
)
def test_a_number_is_finite_exactly_when_float32_keeps_it_finite(value: float) -> None:
    unbounded = Validator(RecordSchema(Unbounded, input_name="x", max_rows=1))
    for signed in (value, -value):
        with np.errstate(over="ignore"):
            finite_as_float32 = bool(np.isfinite(np.float32(signed)))
        if finite_as_float32:
            assert np.isfinite(unbounded.validate({"v": signed}).inputs["x"]).all()
        else:
            assert [e.rule for e in failures(unbounded, {"v": signed}).errors] == ["finite"]


def test_integers_beyond_float64_are_refused_with_a_serialisable_body(record_validator: Validator) -> None:
    error = failures(record_validator, [record(amount=10**400), record(count=-(2**64))])
    assert [(e.path, e.rule) for e in error.errors] == [("[0].amount", "finite"), ("[1].count", "range")]
    assert orjson.loads(orjson.dumps(error.public_body()))["fields"][0]["value"] == "<1329-bit integer>"


def test_an_integer_field_takes_integral_floats_as_json_schema_does(record_validator: Validator) -> None:
    assert record_validator.validate(record(count=3.0)).inputs["x"][0, 1] == 3
    error = failures(record_validator, [record(count=3.5), record(count=float("inf")), record(count=-2.0)])
    assert [(e.path, e.rule) for e in error.errors] == [
        ("[0].count", "type"),
        ("[1].count", "type"),
        ("[2].count", "range"),
    ]


def test_business_rules_run_only_on_valid_requests_and_name_themselves(record_validator: Validator) -> None:
    error = failures(record_validator, [record(), record(amount=6000, count=0)])
    assert error.layer == "business"
    assert [(e.path, e.rule, e.value) for e in error.errors] == [("[1].count", "refund_needs_history", 0)]
    assert "[1].count" in str(error)
    listed = failures(record_validator, [record(amount=6000, count=0)])
    assert [e.path for e in listed.errors] == ["[0].count"]  # a list names the index, even of one
    assert [e.path for e in failures(record_validator, record(amount=6000, count=0)).errors] == ["count"]


def test_a_plain_function_is_a_business_rule_named_by_its_name_and_docstring() -> None:
    def needs_history(p: Payment) -> bool:
        """large amounts need an earlier payment"""
        return p.amount < 5000 or p.count > 0

    rule = BusinessRule.of(needs_history)
    assert (rule.name, rule.message, rule.field) == ("needs_history", "large amounts need an earlier payment", "")
    with pytest.raises(TypeError, match="needs a name"):
        BusinessRule.of(lambda p: True)


def test_the_models_own_validators_run_and_name_their_rule() -> None:
    class Order(BaseModel):
        quantity: int

        @field_validator("quantity")
        @classmethod
        def even(cls, value: int) -> int:
            if value % 2:
                raise ValueError("must be even")
            return value

    validator = Validator(RecordSchema(Order, input_name="x", max_rows=1))
    assert validator.validate({"quantity": 4}).inputs["x"][0, 0] == 4
    assert [(e.rule, e.message) for e in failures(validator, {"quantity": 3}).errors] == [("value", "must be even")]


def test_the_record_schema_must_fit_the_model(load_model: Callable[..., OnnxModel]) -> None:
    class Three(BaseModel):
        a: float
        b: float
        c: bool

    RecordSchema(Three, input_name="x", max_rows=4).check_signature(load_model("classifier").signature)
    with pytest.raises(TypeError, match=r"float32\[N, 3\].*float32\[N, 4\]"):
        RecordSchema(Three, input_name="x", max_rows=4).check_signature(load_model("affine").signature)


def test_learned_bounds_fill_only_undeclared_ones() -> None:
    class Two(BaseModel):
        a: float
        b: float = Field(le=1.0)

    learned = {"a": Bounds(-50.0, 150.0), "b": Bounds(-5.0, 5.0)}
    schema = RecordSchema(Two, input_name="x", max_rows=2, learned=learned)
    assert [(c.low, c.high) for c in schema.columns] == [(-50.0, 150.0), (-5.0, 1.0)]
    error = failures(Validator(schema), {"a": 151.0, "b": 2.0})
    assert [(e.path, e.message) for e in error.errors] == [
        ("a", "must be within [-50, 150]"),
        ("b", "must be within [-5, 1]"),
    ]
    properties = schema.strict_model.model_json_schema()["properties"]
    assert (properties["a"]["minimum"], properties["a"]["maximum"]) == (-50.0, 150.0)
    with pytest.raises(ValueError, match="does not have"):
        RecordSchema(Two, input_name="x", max_rows=2, learned={"z": Bounds(0, 1)})


def test_fields_a_record_cannot_encode_are_refused_when_declared() -> None:
    class Free(BaseModel):
        tags: list[int]

    with pytest.raises(TypeError, match=r"Free.tags: a record field is float, int, bool or Literal"):
        columns_of(Free)


def test_text_fields_are_context_that_the_model_never_sees() -> None:
    class Noted(BaseModel):
        amount: float = Field(ge=0)
        note: str | None = Field(None, max_length=10)
        email: str = ""

    schema = RecordSchema(Noted, input_name="x", max_rows=2)
    assert [c.name for c in schema.columns] == ["amount"]
    validator = Validator(schema)
    request = validator.validate({"amount": 2.0, "note": "hi", "email": "a@b.cd"})
    assert request.inputs["x"].tolist() == [[2.0]]
    assert request.records is not None
    assert (request.records[0].note, request.records[0].email) == ("hi", "a@b.cd")
    with pytest.raises(ValidationFailed) as raised:
        validator.validate({"amount": 2.0, "note": "far too long a note", "email": 5})
    assert {e.path for e in raised.value.errors} == {"note", "email"}


def test_content_checks_can_be_switched_off_but_the_schema_layer_cannot(record_validator: Validator) -> None:
    lenient = Validator(record_validator.schema, record_validator.rules, content_checks=False)
    request = lenient.validate(record(amount=-5.0))
    assert request.inputs["x"][0, 0] == -5.0
    error = failures(lenient, record(amount="lots", currency="JPY"))
    assert {(e.path, e.rule) for e in error.errors} == {("amount", "type"), ("currency", "category")}
