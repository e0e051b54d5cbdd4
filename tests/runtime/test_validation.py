from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import (
    BusinessRule,
    Field,
    OnnxModel,
    RecordSchema,
    TensorRange,
    TensorSchema,
    ValidationFailed,
    Validator,
    learn_range,
)

FIELDS = [
    Field("amount", "number", minimum=0, maximum=10_000),
    Field("count", "integer", minimum=0),
    Field("abroad", "boolean"),
    Field("currency", "category", categories=("EUR", "USD", "GBP")),
]


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"amount": 12.5, "count": 3, "abroad": False, "currency": "USD"}
    base.update(overrides)
    return base


def failures(validator: Validator, payload: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validator.validate(payload)
    return caught.value


# --- tensors -------------------------------------------------------------------------------------


@pytest.fixture
def tensor_validator(load_model: Callable[..., OnnxModel]) -> Validator:
    model = load_model("affine")
    return Validator(TensorSchema(model.signature, max_rows=8, ranges={"x": TensorRange(-100.0, 100.0)}))


def test_a_valid_tensor_payload_becomes_float32_arrays(tensor_validator: Validator) -> None:
    request = tensor_validator.validate({"x": [[1, 2, 3, 4], [5, 6, 7, 8.5]]})
    assert request.rows == 2
    assert request.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(request.inputs["x"][1], [5, 6, 7, 8.5])


@pytest.mark.parametrize("bad", [[1, 2, 3, 4], [[1, 2, 3]], [[[1, 2, 3, 4]]], np.ones((1, 2, 2), np.float32)])
def test_a_wrong_shape_is_rejected_never_reshaped(tensor_validator: Validator, bad: Any) -> None:
    error = failures(tensor_validator, {"x": bad})
    assert [(e.path, e.rule) for e in error.errors] == [("x", "shape")]
    assert "float32[N, 4]" in error.errors[0].message
    assert error.layer == "schema"


@pytest.mark.parametrize("bad", [[["a", 1, 2, 3]], [[1, 2], [1, 2, 3, 4]], [[True, False, True, True]], None])
def test_non_numbers_and_ragged_rows_are_type_errors(tensor_validator: Validator, bad: Any) -> None:
    error = failures(tensor_validator, {"x": bad})
    assert [e.rule for e in error.errors] == ["type"]


def test_every_bad_cell_is_reported_with_its_path(tensor_validator: Validator) -> None:
    error = failures(tensor_validator, {"x": [[1, float("nan"), 3, 4], [1, 2, 3e3, float("inf")]]})
    found = {(e.path, e.rule) for e in error.errors}
    assert ("x[0][1]", "finite") in found
    assert ("x[1][3]", "finite") in found
    assert ("x[1][2]", "range") in found
    assert error.layer == "content"
    assert next(e for e in error.errors if e.path == "x[0][1]").value == "nan"


@pytest.mark.parametrize("bad", [[[1.5, True, 2, 3]], [[1, 2, 3, False]], [[1, 2, 3, 4], [5, 6, np.True_, 8]]])
def test_booleans_mixed_into_numbers_are_type_errors(tensor_validator: Validator, bad: Any) -> None:
    # NumPy would read [1.5, true] as [1.5, 1.0]; the dtype alone cannot show it
    error = failures(tensor_validator, {"x": bad})
    assert [(e.path, e.rule) for e in error.errors] == [("x", "type")]
    assert "got booleans" in error.errors[0].message


def test_booleans_deep_in_a_3d_tensor_are_found(load_model: Callable[..., OnnxModel]) -> None:
    validator = Validator(TensorSchema(load_model("images").signature, max_rows=4))
    image = [[0.5, 1, 2], [3, 4, 5]]
    assert validator.validate({"x": [image, image]}).rows == 2
    error = failures(validator, {"x": [image, [[0.5, 1, 2], [3, 4, False]]]})
    assert [(e.path, e.rule) for e in error.errors] == [("x", "type")]


def test_overflowing_float32_is_not_finite(tensor_validator: Validator) -> None:
    error = failures(tensor_validator, {"x": [[1e39, 0, 0, 0]]})
    assert [(e.path, e.rule) for e in error.errors] == [("x[0][0]", "finite")]


def test_missing_and_unknown_inputs_are_both_reported(tensor_validator: Validator) -> None:
    error = failures(tensor_validator, {"y": [[1, 2, 3, 4]]})
    assert {(e.path, e.rule) for e in error.errors} == {("y", "unknown_field"), ("x", "required")}


def test_too_many_rows_are_refused(tensor_validator: Validator) -> None:
    error = failures(tensor_validator, {"x": np.zeros((9, 4)).tolist()})
    assert [e.rule for e in error.errors] == ["max_rows"]


def test_floats_for_an_integer_input_are_refused(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("gather")
    validator = Validator(TensorSchema(model.signature, max_rows=4))
    error = failures(validator, {"x": [[0, 0, 0, 0]], "idx": [1.5]})
    assert [(e.path, e.rule) for e in error.errors] == [("idx", "type")]
    request = validator.validate({"x": [[0, 0, 0, 0]], "idx": [3]})
    assert request.inputs["idx"].dtype == np.int64


def test_learned_per_feature_ranges(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("affine")
    train = np.array([[0, 0, 0, 0], [10, 1, 100, 5]], dtype=np.float32)
    low, high = learn_range(train, margin=0.1)
    np.testing.assert_allclose(low, [-1, -0.1, -10, -0.5])
    validator = Validator(TensorSchema(model.signature, max_rows=4, ranges={"x": TensorRange(low, high)}))
    validator.validate({"x": [[10.5, 1.05, 105, -0.4]]})
    error = failures(validator, {"x": [[12, 0, 0, 0]]})
    assert error.errors[0].path == "x[0][0]"
    assert "[-1, 11]" in error.errors[0].message


@given(
    st.lists(
        st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
        min_size=1,
        max_size=8,
    )
)
def test_validated_arrays_are_always_finite_and_in_range(rows: list[list[float]]) -> None:
    from runtime import ModelSignature, TensorSpec

    signature = ModelSignature(inputs=(TensorSpec("x", np.dtype(np.float32), (None, 4)),), outputs=())
    validator = Validator(TensorSchema(signature, max_rows=8, ranges={"x": TensorRange(-1e6, 1e6)}))
    values = np.asarray(rows, dtype=np.float32)
    if np.isfinite(values).all() and (np.abs(values) <= 1e6).all():
        request = validator.validate({"x": rows})
        assert np.isfinite(request.inputs["x"]).all()
        assert (np.abs(request.inputs["x"]) <= 1e6).all()
    else:
        with pytest.raises(ValidationFailed) as caught:
            validator.validate({"x": rows})
        bad_cells = int((~np.isfinite(values) | (np.abs(values) > 1e6)).sum())
        assert len(caught.value.errors) == bad_cells
        assert {e.rule for e in caught.value.errors} <= {"finite", "range"}


# --- records -------------------------------------------------------------------------------------


@pytest.fixture
def record_validator() -> Validator:
    rules = [
        BusinessRule(
            "refund_needs_history",
            lambda r: r["amount"] < 5000 or r["count"] > 0,
            "large amounts need at least one earlier transaction",
            field="count",
        ),
    ]
    return Validator(RecordSchema(FIELDS, input_name="x", max_rows=4), rules)


def test_a_record_is_encoded_in_field_order(record_validator: Validator) -> None:
    request = record_validator.validate(record(abroad=True, currency="GBP"))
    np.testing.assert_array_equal(request.inputs["x"], [[12.5, 3, 1, 2]])
    assert request.records == [record(abroad=True, currency="GBP")]


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


def test_paths_name_the_record_in_a_batch(record_validator: Validator) -> None:
    error = failures(record_validator, [record(), record(amount=-1), {"amount": 1}])
    assert {(e.path, e.rule) for e in error.errors} == {
        ("[1].amount", "range"),
        ("[2].count", "required"),
        ("[2].abroad", "required"),
        ("[2].currency", "required"),
    }


def test_booleans_are_not_numbers(record_validator: Validator) -> None:
    error = failures(record_validator, record(amount=True))
    assert [(e.path, e.rule) for e in error.errors] == [("amount", "type")]


def test_non_finite_numbers_are_refused(record_validator: Validator) -> None:
    error = failures(record_validator, record(amount=float("inf")))
    assert [(e.path, e.rule, e.value) for e in error.errors] == [("amount", "finite", "inf")]


@pytest.mark.parametrize(
    "value",
    [3.4028234663852886e38, 3.4028235677973362e38, 3.4028235677973366e38, 1e39, float("nan"), -float("inf")],
)
def test_a_number_is_finite_exactly_when_float32_keeps_it_finite(value: float) -> None:
    unbounded = Validator(RecordSchema([Field("v", "number")], input_name="x", max_rows=1))
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


def test_the_record_schema_must_fit_the_model(load_model: Callable[..., OnnxModel]) -> None:
    schema = RecordSchema(FIELDS[:3], input_name="x", max_rows=4)
    schema.check_signature(load_model("classifier").signature)
    with pytest.raises(TypeError, match=r"float32\[N, 3\].*float32\[N, 4\]"):
        schema.check_signature(load_model("affine").signature)


def test_ranges_learned_from_training_data_fill_undeclared_bounds() -> None:
    schema = RecordSchema([Field("a", "number"), Field("b", "number", maximum=1.0)], input_name="x", max_rows=2)
    learned = schema.with_learned_ranges(np.array([[0.0, 0.0], [100.0, 50.0]]), margin=0.5)
    assert (learned.fields[0].minimum, learned.fields[0].maximum) == (-50.0, 150.0)
    assert learned.fields[1].maximum == 1.0
    with pytest.raises(ValidationFailed):
        Validator(learned).validate({"a": 151.0, "b": 0.5})


def test_field_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="needs its allowed categories"):
        Field("c", "category")
    with pytest.raises(ValueError, match="minimum 2 > maximum 1"):
        Field("n", "number", minimum=2, maximum=1)
    with pytest.raises(ValueError, match="duplicate field names"):
        RecordSchema([Field("a", "number"), Field("a", "number")], input_name="x", max_rows=1)


def test_content_checks_can_be_switched_off_but_the_schema_layer_cannot(record_validator: Validator) -> None:
    lenient = Validator(record_validator.schema, record_validator.rules, content_checks=False)
    request = lenient.validate(record(amount=-5.0))
    assert request.inputs["x"][0, 0] == -5.0
    error = failures(lenient, record(amount="lots", currency="JPY"))
    assert {(e.path, e.rule) for e in error.errors} == {("amount", "type"), ("currency", "category")}
