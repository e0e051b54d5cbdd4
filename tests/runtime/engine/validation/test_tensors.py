from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import (
    ModelSignature,
    OnnxModel,
    TensorRange,
    TensorSchema,
    TensorSpec,
    ValidationFailed,
    Validator,
    learn_range,
)


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


def test_a_declared_layout_feeds_the_model_input_without_reshaping_the_request() -> None:
    images = ModelSignature((TensorSpec("images", np.dtype(np.float32), (None, 2, 2)),), ())
    validator = Validator(TensorSchema(images, max_rows=4, feeds={"images": ("input", (4,))}))
    request = validator.validate({"images": [[[1, 2], [3, 4]]]})
    assert list(request.inputs) == ["input"]
    np.testing.assert_array_equal(request.inputs["input"], [[1, 2, 3, 4]])
    error = failures(validator, {"images": [[1, 2, 3, 4]]})  # the model's layout is not the API's
    assert [(e.path, e.rule) for e in error.errors] == [("images", "shape")]
    with pytest.raises(ValueError, match=r"rows of shape \[2, 2\] cannot be laid out as \[5\]"):
        TensorSchema(images, max_rows=4, feeds={"images": ("input", (5,))})
