"""The Open Inference Protocol's tensors: JSON and binary inputs decoded exactly, every broken
rule a 400 naming the input and the rule (nothing reshaped or converted to fit), outputs encoded
as JSON or binary; round trips over generated tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime import ModelSignature
from runtime.core.codes import Rule
from runtime.core.errors import ValidationFailed
from runtime.core.signature import TensorSpec
from services.oip import tensors
from services.oip.tensors import DTYPES, InferRequest, InferRequestIn, datatype_of, encode_response, parse_request

SIGNATURE = ModelSignature(
    inputs=(
        TensorSpec("pixels", np.dtype(np.float32), (None, 4)),
        TensorSpec("mask", np.dtype(np.int64), (None, 2)),
    ),
    outputs=(
        TensorSpec("probabilities", np.dtype(np.float32), (None, 3)),
        TensorSpec("label", np.dtype(np.int64), (None,)),
    ),
)


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def pixels(data: Any, shape: list[int] | None = None, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": "pixels", "datatype": datatype, "shape": shape or [1, 4], "data": data}


def mask(data: Any = (0, 1), shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "mask", "datatype": "INT64", "shape": shape or [1, 2], "data": list(data)}


def parse(raw: bytes, header: str | None = None, max_rows: int = 64) -> InferRequest:
    return parse_request(raw, header, SIGNATURE, max_rows)


def refused(raw: bytes, header: str | None = None) -> tuple[str, str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse(raw, header)
    [error] = caught.value.errors
    return error.path, error.rule, error.message


def test_json_inputs_flat_or_nested_decode_to_the_models_dtypes() -> None:
    flat = parse(body(pixels([1, 2.5, 3, 4]), mask()))
    nested = parse(body(pixels([[1, 2.5, 3, 4]]), mask([[0, 1]], [1, 2])))
    for found in (flat, nested):
        assert found.rows == 1
        np.testing.assert_array_equal(found.inputs["pixels"], np.array([[1, 2.5, 3, 4]], np.float32))
        assert found.inputs["pixels"].dtype == np.float32
        assert found.inputs["mask"].dtype == np.int64
    assert (flat.outputs, flat.binary, flat.id) == (None, frozenset(), None)


def test_binary_inputs_follow_the_json_in_order_and_can_mix_with_json() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    header = body(
        {"name": "pixels", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}},
        mask([0, 1, 1, 0], [2, 2]),
        id="req-1",
        outputs=[{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
    )
    found = parse(header + x.tobytes(), str(len(header)))
    np.testing.assert_array_equal(found.inputs["pixels"], x)
    assert found.inputs["pixels"].flags.writeable
    assert (found.rows, found.id, found.outputs, found.binary) == (2, "req-1", ("label", "probabilities"), {"label"})
    everything = parse(body(pixels([1, 2, 3, 4]), mask(), parameters={"binary_data_output": True}))
    assert everything.binary == {"probabilities", "label"}


@pytest.mark.parametrize(
    ("raw", "header", "path", "rule"),
    [
        (b"{not json", None, "body", Rule.TYPE),
        (b"[" * 5000 + b"]" * 5000, None, "body", Rule.TYPE),  # deeper than any parser should go
        (body(pixels([1, 2, 3, 4])), None, "inputs", Rule.REQUIRED),
        (body(pixels([1, 2, 3, 4]), mask(), {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}), None,
         "inputs[2].name", Rule.UNKNOWN_FIELD),
        (body(pixels([1, 2, 3, 4]), pixels([1, 2, 3, 4]), mask()), None, "inputs[1].name", Rule.UNKNOWN_FIELD),
        (body(pixels([1, 2, 3, 4], datatype="FP64"), mask()), None, "inputs[0].datatype", Rule.TYPE),
        (body(pixels([1, 2, 3], [1, 3]), mask()), None, "inputs[0].shape", Rule.SHAPE),
        (body(pixels([1, 2, 3, 4], [4]), mask()), None, "inputs[0].shape", Rule.SHAPE),
        (body(pixels([1, 2, 3, 4]), mask([0, 1, 0, 1], [2, 2])), None, "inputs[1].shape", Rule.SHAPE),
        (body(pixels([1] * 4 * 65, [65, 4]), mask([0] * 130, [65, 2])), None, "inputs[0].shape", Rule.MAX_ROWS),
        (body(pixels([], [0, 4]), mask([], [0, 2])), None, "inputs[0].shape", Rule.MAX_ROWS),
        (body(pixels([1, 2, 3]), mask()), None, "inputs[0].data", Rule.SHAPE),
        (body(pixels([[1, 2], [3]]), mask()), None, "inputs[0].data", Rule.SHAPE),
        (body(pixels([1, 2, 3, True]), mask()), None, "inputs[0].data", Rule.TYPE),
        (body(pixels([1, 2, 3, "4"]), mask()), None, "inputs[0].data", Rule.TYPE),
        (body(pixels([1, 2, 3, 1e39]), mask()), None, "inputs[0].data", Rule.TYPE),
        (body(pixels([1, 2, 3, 4]), mask([0, 1.5])), None, "inputs[1].data", Rule.TYPE),
        (body(pixels([1, 2, 3, 4]), mask([0, 2**63])), None, "inputs[1].data", Rule.TYPE),
        (body(pixels([1, 2, 3, 4]), {"name": "mask", "datatype": "INT64", "shape": [1, 2]}), None,
         "inputs[1].data", Rule.REQUIRED),
        (body(pixels([1, 2, 3, 4], [1, -4]), mask()), None, "inputs.0.shape.1", Rule.TYPE),
        (body(pixels([1, 2, 3, 4]), mask(), outputs=[{"name": "nope"}]), None, "outputs[0].name", Rule.UNKNOWN_FIELD),
        (body(pixels([1, 2, 3, 4]), mask(), extra=1), None, "extra", Rule.TYPE),
    ],
)  # fmt: skip
def test_every_broken_rule_is_a_400_naming_the_input_and_the_rule(
    raw: bytes, header: str | None, path: str, rule: Rule
) -> None:
    assert refused(raw, header)[:2] == (path, rule)


def test_binary_sizes_and_the_header_length_are_checked_against_the_body() -> None:
    def binary(size: int) -> dict[str, Any]:
        return {"name": "pixels", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": size}}

    header = body(binary(16), mask())
    assert refused(header + bytes(16), str(len(header) + 100))[0] == "Inference-Header-Content-Length"
    assert refused(header + bytes(16), "-3")[0] == "Inference-Header-Content-Length"
    assert refused(header + bytes(8), str(len(header)))[:2] == ("inputs[0].parameters.binary_data_size", Rule.SHAPE)
    assert refused(header + bytes(20), str(len(header)))[:2] == ("body", Rule.SHAPE)  # bytes nobody claims
    wrong = body(binary(12), mask())
    assert "is 16 bytes" in refused(wrong + bytes(12), str(len(wrong)))[2]
    both = body({**binary(16), "data": [1, 2, 3, 4]}, mask())
    assert refused(both + bytes(16), str(len(both)))[:2] == ("inputs[0].data", Rule.UNKNOWN_FIELD)


def test_half_floats_come_only_as_binary_and_bytes_tensors_are_not_served() -> None:
    half = ModelSignature((TensorSpec("h", np.dtype(np.float16), (None, 2)),), ())
    with pytest.raises(ValidationFailed, match="FP16 only as binary"):
        parse_request(body({"name": "h", "datatype": "FP16", "shape": [1, 2], "data": [1, 2]}), None, half, 8)
    header = body({"name": "h", "datatype": "FP16", "shape": [1, 2], "parameters": {"binary_data_size": 4}})
    raw = np.array([[1.5, -2]], np.float16).tobytes()
    np.testing.assert_array_equal(parse_request(header + raw, str(len(header)), half, 8).inputs["h"], [[1.5, -2]])
    text = ModelSignature((TensorSpec("s", np.dtype(object), (None,)),), ())
    with pytest.raises(ValidationFailed, match="BYTES tensors are not served"):
        parse_request(body({"name": "s", "datatype": "BYTES", "shape": [1], "data": ["a"]}), None, text, 8)


def test_outputs_are_json_or_binary_after_the_json() -> None:
    probabilities = np.array([[0.25, 0.5, 0.25]], np.float32)
    label = np.array([1], np.int64)
    outputs: dict[str, np.ndarray] = {"probabilities": probabilities, "label": label}
    text, length = encode_response("digits", "3", "req-1", outputs, frozenset(), {"served_by": "digits-mlp"})
    assert length is None
    document = orjson.loads(text)
    assert document["model_name"] == "digits"
    assert document["model_version"] == "3"
    assert document["id"] == "req-1"
    assert document["parameters"] == {"served_by": "digits-mlp"}
    assert document["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.25, 0.5, 0.25]},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
    ]
    raw, length = encode_response("digits", "3", None, outputs, frozenset({"probabilities"}), {})
    assert length is not None
    head = orjson.loads(raw[:length])
    assert "id" not in head
    assert head["outputs"][0] == {
        "name": "probabilities", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12},
    }  # fmt: skip
    np.testing.assert_array_equal(np.frombuffer(raw[length:], "<f4").reshape(1, 3), probabilities)


def test_every_protocol_datatype_has_a_dtype_and_back() -> None:
    for name, dtype in DTYPES.items():
        assert datatype_of(dtype) == name
    assert datatype_of(np.dtype(object)) == "BYTES"


NUMERIC = st.sampled_from(["BOOL", "UINT8", "INT16", "INT32", "INT64", "FP32", "FP64"])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_tensor_survives_json_and_binary_exactly(data: st.DataObject) -> None:
    datatype = data.draw(NUMERIC)
    dtype = DTYPES[datatype].newbyteorder("=")
    columns = data.draw(st.integers(1, 5))
    rows = data.draw(st.integers(1, 8))
    elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    array = data.draw(hnp.arrays(dtype, (rows, columns), elements=elements))
    signature = ModelSignature((TensorSpec("x", dtype, (None, columns)),), ())
    tensor = {"name": "x", "datatype": datatype, "shape": [rows, columns]}
    as_json = parse_request(body({**tensor, "data": array.tolist()}), None, signature, 8)
    header = body({**tensor, "parameters": {"binary_data_size": array.nbytes}})
    as_binary = parse_request(header + array.astype(DTYPES[datatype]).tobytes(), str(len(header)), signature, 8)
    for found in (as_json, as_binary):
        assert found.inputs["x"].dtype == dtype
        np.testing.assert_array_equal(found.inputs["x"], array)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, ``bad`` otherwise: most documents usual, every rule broken now and then."""
    return st.integers(0, 3).flatmap(lambda roll: bad if roll == 0 else good)


_TEXTS = _mostly(st.none() | st.text(max_size=256), st.text(min_size=250, max_size=300) | st.integers() | st.booleans())
_PARAMETERS = _mostly(
    st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.booleans(), max_size=2),
    st.integers() | st.lists(st.integers(), max_size=1),
)
_TENSORS = st.fixed_dictionaries(
    {
        "name": _mostly(st.text(min_size=1, max_size=256), st.text(max_size=260) | st.integers() | st.none()),
        "shape": _mostly(
            st.lists(st.integers(0, 2**31 - 1), max_size=8),
            st.lists(st.integers(-1, 2**31) | st.booleans() | st.floats(), max_size=10) | st.none(),
        ),
        "datatype": _mostly(st.sampled_from(["FP32", "INT64", "BYTES", "BOOL"]), st.sampled_from(["fp32", "FLOAT"])),
        "data": st.lists(st.floats(allow_nan=False), max_size=3),
    },
    optional={"parameters": _PARAMETERS, "extra": _mostly(st.nothing(), st.integers())},
)
_DOCUMENTS = st.fixed_dictionaries(
    {"inputs": _mostly(st.lists(_TENSORS, min_size=1, max_size=3), st.lists(_TENSORS, max_size=0) | st.integers())},
    optional={
        "id": _TEXTS,
        "model_name": _TEXTS,
        "model_version": _TEXTS,
        "parameters": _PARAMETERS,
        "outputs": _mostly(st.none(), st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}), max_size=2)),
        "other": _mostly(st.nothing(), st.integers()),
    },
)


@given(_DOCUMENTS)
@settings(max_examples=400)
def test_the_usual_documents_shortcut_accepts_only_what_pydantic_accepts_and_reads_it_alike(
    document: dict[str, Any],
) -> None:
    """The decoder reads the usual request without pydantic: any document it reads so, pydantic
    accepts and reads to the same fields."""
    if not tensors._usual(document):
        return
    checked = InferRequestIn.model_validate(document)  # raises if the shortcut let through a bad one
    for field in ("id", "model_name", "model_version", "parameters"):
        assert getattr(checked, field) == document.get(field)
    assert checked.outputs is None
    for read, tensor in zip(checked.inputs, document["inputs"], strict=True):
        assert (read.name, read.shape, read.datatype) == (tensor["name"], tensor["shape"], tensor["datatype"])
        assert (read.parameters, read.data) == (tensor.get("parameters"), tensor.get("data"))


def test_the_usual_documents_shortcut_takes_the_usual_requests() -> None:
    """It is a shortcut only if it is taken: the requests the clients send."""
    usual = {"id": "a", "inputs": [pixels([1, 2, 3, 4]), {**mask(), "parameters": {"binary_data_size": 16}}]}
    assert tensors._usual(usual)
    assert tensors._usual({**usual, "parameters": {"binary_data_output": True}, "model_name": "m"})
    assert not tensors._usual({**usual, "outputs": [{"name": "label"}]})  # pydantic's
