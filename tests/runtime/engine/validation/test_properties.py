"""Properties of validation against real onnxruntime sessions: for payloads that hypothesis
generates -- valid ones, valid ones with a few fields broken, and wild JSON-like values (NaN,
infinities, huge integers, booleans, strings, None, lists, dicts) -- the validator either raises
:class:`ValidationFailed` with a JSON-serialisable body or returns arrays that a real session runs
without error into outputs of the expected shape. Which payloads it accepts is checked against a
plain reference reading of each schema, so a payload accepted by mistake (a boolean read as 1.0)
or refused by mistake fails too.

Schemas: the fraud service's records (``models.fraud.Transaction`` and business rules), the digits
service's declared image tensors (``services.digits``), and a tensor schema with an integer index
input whose out-of-range values would make onnxruntime raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from models import fraud
from runtime import (
    Column,
    OnnxModel,
    RecordSchema,
    TensorRange,
    TensorSchema,
    ValidatedRequest,
    ValidationFailed,
    Validator,
    columns_of,
)
from services.digits import Digits
from tests import onnx_factory

MAX_ROWS = 8
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- wild values ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 - 1, -(2**63) - 1, 0, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32),
    st.sampled_from([1e39, -1e39, 3.4028235e38, 1e-45, 5e-324]),
    st.text(max_size=8),
)
WILD = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a boolean) a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def float32_finite(value: float) -> bool:
    with np.errstate(over="ignore"):
        return math.isfinite(value) and bool(np.isfinite(np.float32(value)))


COLUMNS = columns_of(fraud.Transaction)

# --- sessions ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OnnxModel]]:
    folder: Path = tmp_path_factory.mktemp("properties")
    files = {
        "fraud": onnx_factory.classifier(folder / "fraud.onnx", features=len(COLUMNS), classes=2),
        "digits": onnx_factory.classifier(folder / "digits.onnx", features=64, classes=10),
        "gather": onnx_factory.gather(folder / "gather.onnx", features=4, table_rows=8),
    }
    loaded = {key: OnnxModel.from_path(path, name=key, version="1") for key, path in files.items()}
    yield loaded
    for model in loaded.values():
        model.close()


def outcome(validator: Validator, model: OnnxModel, payload: Any) -> ValidatedRequest | None:
    """Validate; a refusal must be a well-formed 422 body, an acceptance must run."""
    try:
        request = validator.validate(payload)
    except ValidationFailed as exc:
        refused = exc
    else:
        event("accepted")
        return ran(model, request)
    event("refused")
    assert 1 <= len(refused.errors) <= validator.max_errors
    for error in refused.errors:
        assert error.rule
        assert error.message
    orjson.dumps(refused.public_body())  # what the HTTP layer sends must serialise
    return None


def ran(model: OnnxModel, request: ValidatedRequest) -> ValidatedRequest:
    """Arrays of the signature's dtypes and shapes, finite, which the session runs."""
    for spec in model.signature.inputs:
        array = request.inputs[spec.name]
        assert array.dtype == spec.dtype
        assert array.shape[0] == request.rows
        assert spec.row_shape_matches(array.shape[1:])
        if array.dtype.kind == "f":
            assert np.isfinite(array).all()
    outputs = model.run(request.inputs)
    for spec in model.signature.outputs:
        result = outputs[spec.name]
        assert result.shape[0] == request.rows
        assert spec.row_shape_matches(result.shape[1:])
        assert np.isfinite(result).all()
    return request


# --- fraud records -------------------------------------------------------------------------------


def valid_value(spec: Column) -> st.SearchStrategy[Any]:
    if spec.kind == "boolean":
        return st.booleans()
    if spec.kind == "category":
        return st.sampled_from(spec.categories)
    assert spec.low is not None
    assert spec.high is not None
    if spec.kind == "integer":
        return st.integers(int(spec.low), int(spec.high))
    return st.floats(spec.low, spec.high)


def broken_value(spec: Column) -> st.SearchStrategy[Any]:
    """Near misses for the field (just out of range, a category's cousin) and wild values."""
    near: list[Any] = []
    if spec.low is not None and spec.high is not None:
        near = [spec.low, spec.high, spec.low - 1, spec.high + 1]
        near += [math.nextafter(spec.low, -math.inf), math.nextafter(spec.high, math.inf)]
        near += [float(spec.low), 1.5, -1, 10**400, -(10**400), 2**64, True]
    for category in spec.categories:
        near += [category.lower(), category.upper() + " ", category + "\u0301", "日本", "💳"]
    return st.sampled_from(near) | WILD if near else WILD


NAMES = [c.name for c in COLUMNS]


@st.composite
def records(draw: st.DrawFn) -> Any:
    record = draw(st.fixed_dictionaries({c.name: valid_value(c) for c in COLUMNS}))
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(NAMES)))  # len(NAMES): an unknown field
        name = NAMES[index] if index < len(NAMES) else draw(st.sampled_from(["surprise", "日本", "", "AMOUNT"]))
        if index < len(NAMES) and draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = draw(broken_value(COLUMNS[index]) if index < len(NAMES) else WILD)
    return record


def valid_record(item: Any) -> bool:
    if not isinstance(item, dict) or set(item) != set(NAMES):
        return False
    for spec in COLUMNS:
        value = item[spec.name]
        if spec.kind == "boolean":
            ok = isinstance(value, bool)
        elif spec.kind == "category":
            ok = isinstance(value, str) and value in spec.categories
        else:
            x = number(value)
            assert spec.low is not None
            assert spec.high is not None
            ok = (
                x is not None
                and (spec.kind == "number" or x.is_integer())  # JSON Schema: 14.0 is an integer
                and float32_finite(x)
                and spec.low <= x <= spec.high
            )
        if not ok:
            return False
    return bool(item["txn_count_1h"] <= item["txn_count_24h"])


def encoded(record: Mapping[str, Any]) -> list[float]:
    return [
        float(spec.categories.index(record[spec.name]) if spec.kind == "category" else record[spec.name])
        for spec in COLUMNS
    ]


@pytest.fixture(scope="module")
def fraud_validator(models: dict[str, OnnxModel]) -> Validator:
    schema = RecordSchema(fraud.Transaction, input_name="x", max_rows=MAX_ROWS)
    schema.check_signature(models["fraud"].signature)
    return Validator(schema, fraud.RULES)


EXAMPLE = fraud.generate(1, seed=5)[0][0]


@PROPERTY
@given(payload=st.one_of(records(), st.lists(records(), max_size=MAX_ROWS + 1), WILD))
@example(payload=EXAMPLE)
@example(payload={**EXAMPLE, "amount": 10**400, "hour": -(10**400)})
@example(payload=[EXAMPLE, {**EXAMPLE, "card_age_days": 2**64, "country_mismatch": 1}])
def test_fraud_payloads_are_refused_or_run(
    models: dict[str, OnnxModel], fraud_validator: Validator, payload: Any
) -> None:
    request = outcome(fraud_validator, models["fraud"], payload)
    items = payload if isinstance(payload, list) else [payload]
    valid = (isinstance(payload, dict) or 1 <= len(items) <= MAX_ROWS) and all(valid_record(i) for i in items)
    assert (request is not None) == valid, payload
    if request is not None:
        assert request.rows == len(items)
        expected = np.array([encoded(i) for i in items], dtype=np.float32)
        np.testing.assert_array_equal(request.inputs["x"], expected)


# --- digits images -------------------------------------------------------------------------------

PIXEL = st.integers(0, 16) | st.floats(0, 16)


@st.composite
def images(draw: st.DrawFn) -> Any:
    pixels = st.lists(st.lists(PIXEL, min_size=8, max_size=8), min_size=8, max_size=8)
    batch: list[Any] = draw(st.lists(pixels, max_size=MAX_ROWS + 1))
    bad_pixel = st.sampled_from([-1, 17, 16.000001, -1e-30, True, False, "7"]) | SCALARS
    for _ in range(draw(st.integers(0, 2)) if batch else 0):  # broken pixels
        image, row, col = draw(st.integers(0, len(batch) - 1)), draw(st.integers(0, 7)), draw(st.integers(0, 7))
        batch[image][row][col] = draw(bad_pixel)
    if batch and draw(st.integers(0, 3)) == 0:  # a broken structure: a row or a whole image
        image, row = draw(st.integers(0, len(batch) - 1)), draw(st.integers(0, 7))
        if draw(st.booleans()):
            batch[image][row] = draw(st.lists(PIXEL, max_size=9) | WILD)
        else:
            flat = [p for r in batch[image] for p in r]
            batch[image] = draw(st.sampled_from([flat, [batch[image]], []]) | WILD)
    payload: dict[str, Any] = {"images": batch}
    if draw(st.integers(0, 9)) == 0:
        payload[draw(st.sampled_from(["labels", "画像", "image"]))] = draw(WILD)
    return payload


def valid_images(payload: Any) -> bool:
    if not isinstance(payload, dict) or set(payload) != {"images"}:
        return False
    batch = payload["images"]
    if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_ROWS:
        return False
    cells: list[Any] = []
    for image in batch:
        if not (isinstance(image, list) and len(image) == 8):
            return False
        for row in image:
            if not (isinstance(row, list) and len(row) == 8):
                return False
            cells += row
    values = [number(c) for c in cells]
    # Ranges apply to the float32 values the model gets.
    return all(v is not None and float32_finite(v) and 0 <= np.float32(v) <= 16 for v in values)


@pytest.fixture(scope="module")
def digits_validator(models: dict[str, OnnxModel]) -> Validator:
    return Validator(Digits.inner.declaration.schema(models["digits"].signature, MAX_ROWS))


DIGIT = [[float((row + col) % 17) for col in range(8)] for row in range(8)]


@PROPERTY
@given(payload=st.one_of(images(), WILD, st.fixed_dictionaries({"images": WILD})))
@example(payload={"images": [DIGIT]})
@example(payload={"images": [[[*DIGIT[0][:7], True], *DIGIT[1:]]]})
@example(payload={"images": [[[10**400] * 8] * 8]})
def test_digits_payloads_are_refused_or_run(
    models: dict[str, OnnxModel], digits_validator: Validator, payload: Any
) -> None:
    request = outcome(digits_validator, models["digits"], payload)
    assert (request is not None) == valid_images(payload), payload
    if request is not None:
        expected = np.asarray(payload["images"], dtype=np.float32).reshape(-1, 64)
        np.testing.assert_array_equal(request.inputs["x"], expected)


# --- a tensor schema with an integer index -------------------------------------------------------


@st.composite
def gather_payloads(draw: st.DrawFn) -> Any:
    rows = draw(st.integers(0, MAX_ROWS + 1))
    value = st.integers(-5, 5) | st.floats(-10, 10)
    x: list[list[Any]] = draw(st.lists(st.lists(value, min_size=4, max_size=4), min_size=rows, max_size=rows))
    idx: list[Any] = draw(st.lists(st.integers(0, 7), min_size=rows, max_size=rows))
    bad_cell = st.sampled_from([8, -1, 2**63, 2**64, 1.0, 0.5, True, 1e7, math.nan]) | SCALARS
    for _ in range(draw(st.integers(0, 2)) if rows else 0):  # broken cells
        row = draw(st.integers(0, rows - 1))
        if draw(st.booleans()):
            idx[row] = draw(bad_cell)
        else:
            x[row][draw(st.integers(0, 3))] = draw(bad_cell)
    payload: dict[str, Any] = {"x": x, "idx": idx}
    for _ in range(draw(st.integers(0, 1))):  # a broken structure
        target = draw(st.sampled_from(["x", "idx", "drop", "extra"]))
        if target == "drop":
            payload.pop(draw(st.sampled_from(["x", "idx"])))
        elif target == "extra":
            payload["y"] = draw(WILD)
        else:
            payload[target] = draw(WILD)
    return payload


def valid_gather(payload: Any) -> bool:
    if not isinstance(payload, dict) or set(payload) != {"x", "idx"}:
        return False
    x, idx = payload["x"], payload["idx"]
    if not (isinstance(x, list) and isinstance(idx, list) and 1 <= len(x) == len(idx) <= MAX_ROWS):
        return False
    if not all(isinstance(row, list) and len(row) == 4 for row in x):
        return False
    values = [number(v) for row in x for v in row]
    ok_x = all(v is not None and float32_finite(v) and abs(np.float32(v)) <= 1e6 for v in values)
    ok_idx = all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 7 for i in idx)
    return ok_x and ok_idx


@pytest.fixture(scope="module")
def gather_validator(models: dict[str, OnnxModel]) -> Validator:
    ranges = {"x": TensorRange(-1e6, 1e6), "idx": TensorRange(0, 7)}
    return Validator(TensorSchema(models["gather"].signature, max_rows=MAX_ROWS, ranges=ranges))


@PROPERTY
@given(payload=st.one_of(gather_payloads(), WILD))
@example(payload={"x": [[0.5, 1, 2, 3]], "idx": [7]})
@example(payload={"x": [[0.5, 1, 2, 3], [0, 0, 0, 0]], "idx": [1, True]})
@example(payload={"x": [[0.5, 1, 2, 3]], "idx": [2**63]})
def test_tensor_payloads_with_an_index_are_refused_or_run(
    models: dict[str, OnnxModel], gather_validator: Validator, payload: Any
) -> None:
    request = outcome(gather_validator, models["gather"], payload)
    assert (request is not None) == valid_gather(payload), payload
    if request is not None:
        assert request.inputs["idx"].dtype == np.int64
        np.testing.assert_array_equal(request.inputs["idx"], payload["idx"])


def test_the_reference_readings_accept_the_services_examples() -> None:
    """The reference functions above are not vacuous: they accept real payloads."""
    records_, _ = fraud.generate(20, seed=3)
    assert all(valid_record(r) for r in records_)
    assert valid_images({"images": [[[float(c % 17) for c in range(8)] for _ in range(8)]]})
    assert valid_gather({"x": [[0.5, 1, 2, 3]], "idx": [7]})
    assert not valid_gather({"x": [[0.5, 1, 2, 3]], "idx": [True]})
