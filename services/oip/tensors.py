"""Tensors of the Open Inference Protocol (KServe's V2 inference protocol, with Triton's binary
tensor extension): an inference request's inputs decoded and checked against the model's
signature, and a response's outputs encoded.

A request body is JSON, or JSON followed by binary tensors when the ``Inference-Header-Content-Length``
header says where the JSON ends. Each input gives a name, a datatype, a shape and its elements,
either as ``data`` (a flat or nested JSON array) or, with ``parameters.binary_data_size``, as that
many bytes of the binary part (little-endian, row-major, in the order of the inputs). Nothing is
reshaped or converted to fit: the checks, in this order, each a 400 naming the input and the rule:

    structure     the JSON's fields and types (pydantic), at most ``MAX_INPUTS`` inputs
    name          an input the model has, once; every input the model has
    datatype      the model's own (FP16 only in binary: JSON has no half floats); no BYTES (records.py's)
    shape         the model's rank, its fixed dimensions, one batch size across inputs, 1 to max_rows rows
    elements      as many as the shape says (before any reshape): JSON elements of the datatype's
                  kind (booleans for BOOL, integers for integer types) and within its range;
                  binary sizes that add up to the binary part exactly

A response lists each output (all of them, or those asked for) as JSON ``data`` or, when asked
(``parameters.binary_data`` on the output, or ``binary_data_output`` on the request), as binary
after the JSON, with ``parameters.binary_data_size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast, get_args

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from runtime import ModelSignature
from runtime.core.codes import Layer, Rule
from runtime.core.errors import FieldError, ValidationFailed

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""The protocol's numeric datatypes and their little-endian NumPy dtypes (BYTES has none)."""
DATATYPES: dict[np.dtype[Any], str] = {dtype.newbyteorder("="): name for name, dtype in DTYPES.items()}
"""A model's dtype to the protocol's datatype."""
MAX_INPUTS = 64
MAX_RANK = 8
HEADER = "inference-header-content-length"


_DATATYPE_OF: dict[np.dtype[Any], str] = {}
"""``datatype_of``'s answers (a model's few dtypes: ``newbyteorder`` builds a dtype on every call)."""


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol's datatype of a model's tensor dtype (``BYTES`` for strings)."""
    found = _DATATYPE_OF.get(dtype)
    if found is None:
        if len(_DATATYPE_OF) >= 256:  # bounded, whatever dtypes come by
            _DATATYPE_OF.clear()
        found = _DATATYPE_OF[dtype] = DATATYPES.get(dtype.newbyteorder("="), "BYTES")
    return found


class TensorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=256)
    shape: list[Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]] = Field(max_length=MAX_RANK)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: Any = Field(None, json_schema_extra={"type": "array"})
    """A flat or nested array; checked by :func:`decode_inputs` (pydantic would walk every element)."""


class OutputIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = None


class InferRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = Field(None, max_length=256)
    model_name: StrictStr | None = Field(None, max_length=256)
    """Not in the protocol's request, but KServe's client sends it: taken when it names the path's model."""
    model_version: StrictStr | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[TensorIn] = Field(min_length=1, max_length=MAX_INPUTS)
    outputs: list[OutputIn] | None = Field(None, max_length=MAX_INPUTS)


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: Any
    """The model's input arrays by name (or what the request's ``decode`` made of them)."""
    names: tuple[str, ...]
    """The inputs' names, in the order given."""
    rows: int
    outputs: tuple[str, ...] | None
    """The outputs asked for, in order (``None``: all of them)."""
    binary: frozenset[str]
    """Outputs to send as binary."""
    all_binary: bool
    """``binary_data_output``: every output as binary unless it says otherwise."""
    model_name: str | None = None
    """The body's ``model_name`` (KServe's client repeats the path's)."""
    model_version: str | None = None


def fail(path: str, rule: Rule, message: str, value: Any = None) -> ValidationFailed:
    return ValidationFailed([FieldError(path, rule, message, value)], Layer.SCHEMA)


def _flag(parameters: Mapping[str, Any] | None, name: str, path: str) -> bool | None:
    if not parameters or name not in parameters:
        return None
    value = parameters[name]
    if not isinstance(value, bool):
        raise fail(f"{path}.parameters.{name}", Rule.TYPE, "must be true or false", value)
    return value


def _size(parameters: Mapping[str, Any] | None, path: str) -> int | None:
    if not parameters or "binary_data_size" not in parameters:
        return None
    value = parameters["binary_data_size"]
    if type(value) is not int or value < 0:
        raise fail(f"{path}.parameters.binary_data_size", Rule.TYPE, "must be an integer >= 0", value)
    return value


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a body, by the ``Inference-Header-Content-Length`` header."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise fail(
            "Inference-Header-Content-Length",
            Rule.SHAPE,
            f"must be a length within the body ({len(body)} bytes)",
            header_length[:32],
        )
    length = int(header_length)
    return body[:length], memoryview(body)[length:]


_REQUEST_KEYS = frozenset(InferRequestIn.model_fields)
_TENSOR_KEYS = frozenset(TensorIn.model_fields)
_DATATYPES = frozenset(get_args(Datatype))
_MAX_TEXT = 256
_MAX_DIMENSION = 2**31 - 1


def _text(value: Any, least: int = 0) -> bool:
    return type(value) is str and least <= len(value) <= _MAX_TEXT


def _optional_text(value: Any) -> bool:
    return value is None or _text(value)


def _usual(document: Any) -> bool:
    """Whether ``document`` is a request that :class:`InferRequestIn` accepts as it is, and of the
    usual form: no ``outputs`` list, and inputs of plain names, shapes and datatypes. Such a
    document is read as it is; pydantic checks any other (and names what it refuses)."""
    if type(document) is not dict or not _REQUEST_KEYS.issuperset(document) or document.get("outputs") is not None:
        return False
    if not all(_optional_text(document.get(field)) for field in ("id", "model_name", "model_version")):
        return False
    inputs = document.get("inputs")
    if type(document.get("parameters")) not in _OPTIONAL_DICT or type(inputs) is not list:
        return False
    if not 1 <= len(inputs) <= MAX_INPUTS:
        return False
    for tensor in inputs:
        if type(tensor) is not dict or not _TENSOR_KEYS.issuperset(tensor):
            return False
        shape = tensor.get("shape")
        if not (
            _text(tensor.get("name"), 1)
            and tensor.get("datatype") in _DATATYPES
            and type(tensor.get("parameters")) in _OPTIONAL_DICT
            and type(shape) is list
            and len(shape) <= MAX_RANK
            and all(type(d) is int and 0 <= d <= _MAX_DIMENSION for d in shape)
        ):
            return False
    return True


_OPTIONAL_DICT = (dict, type(None))


def _structure(document: Any) -> dict[str, Any]:
    """The request's structure, checked: the document itself when :func:`_usual`, pydantic's reading
    of it otherwise (the same fields, every one present)."""
    if _usual(document):
        return cast(dict[str, Any], document)
    try:
        request = InferRequestIn.model_validate(document)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "body", Rule.TYPE, e["msg"], None)
            for e in exc.errors(include_url=False)[:20]
        ]
        raise ValidationFailed(errors, Layer.SCHEMA) from None
    read = dict(request)
    read["inputs"] = [dict(tensor) for tensor in request.inputs]
    read["outputs"] = None if request.outputs is None else [dict(out) for out in request.outputs]
    return read


Decode = Callable[[Sequence["Given"]], tuple[Any, int]]
"""The inputs as given -> what the service takes, and its row count (:func:`decode_inputs`'s arrays,
or records: services/oip/records.py)."""


def parse_request(
    body: bytes, header_length: str | None, signature: ModelSignature, max_rows: int, decode: Decode | None = None
) -> InferRequest:
    """An inference request for a model of ``signature``, checked as the module says (its inputs
    decoded by ``decode`` when given)."""
    text, binary = split_body(body, header_length)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise fail("body", Rule.TYPE, f"not JSON: {exc}") from None
    request = _structure(document)
    given: list[Given] = []
    offset = 0
    for index, tensor in enumerate(request["inputs"]):
        path = f"inputs[{index}]"
        size = _size(tensor.get("parameters"), path)
        raw = None
        if size is not None:
            if tensor.get("data") is not None:
                raise fail(f"{path}.data", Rule.UNKNOWN_FIELD, "data and binary_data_size are exclusive")
            if offset + size > len(binary):
                raise fail(
                    f"{path}.parameters.binary_data_size",
                    Rule.SHAPE,
                    f"beyond the body's binary part ({len(binary)} bytes)",
                    size,
                )
            raw, offset = binary[offset : offset + size], offset + size
        given.append(
            Given(
                tensor["name"],
                tensor["datatype"],
                tuple(tensor["shape"]),
                tensor.get("data"),
                raw,
                f"{path}.parameters.binary_data_size",
            )
        )
    if offset != len(binary):
        raise fail("body", Rule.SHAPE, f"{len(binary) - offset} bytes of binary data that no input claims")
    arrays, rows = decode_inputs(given, signature, max_rows) if decode is None else decode(given)
    outputs = None
    binary_outputs: set[str] = set()
    all_binary = bool(_flag(request.get("parameters"), "binary_data_output", "parameters"))
    asked = request.get("outputs")
    if asked is not None:
        names = {spec.name for spec in signature.outputs}
        for index, out in enumerate(asked):
            if out["name"] not in names:
                raise fail(f"outputs[{index}].name", Rule.UNKNOWN_FIELD, f"the model has no output {out['name']!r}")
            flag = _flag(out.get("parameters"), "binary_data", f"outputs[{index}]")
            if flag or (flag is None and all_binary):
                binary_outputs.add(out["name"])
        outputs = tuple(out["name"] for out in asked)
    elif all_binary:
        binary_outputs = {spec.name for spec in signature.outputs}
    return InferRequest(
        request.get("id"),
        arrays,
        tuple(g.name for g in given),
        rows,
        outputs,
        frozenset(binary_outputs),
        all_binary,
        request.get("model_name"),
        request.get("model_version"),
    )


@dataclass(frozen=True, slots=True)
class Given:
    """One input tensor as a request gives it, before any check against the model."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    """Its elements as values (JSON's ``data``, gRPC's typed contents); ``None`` when ``raw``."""
    raw: bytes | memoryview | None
    """Its elements as little-endian bytes (a binary part, gRPC's raw contents)."""
    raw_path: str
    """Where the request says how many bytes ``raw`` holds (for an error)."""


def decode_inputs(
    given: Sequence[Given], signature: ModelSignature, max_rows: int
) -> tuple[dict[str, np.ndarray], int]:
    """The model's inputs and their row count from ``given``, checked as the module says (names,
    datatype, shape, elements); a :class:`ValidationFailed` names the first broken rule."""
    wanted = {spec.name: spec for spec in signature.inputs}
    names = [t.name for t in given]
    for index, name in enumerate(names):
        if name not in wanted:
            raise fail(f"inputs[{index}].name", Rule.UNKNOWN_FIELD, f"the model has no input {name!r}", name)
        if names.index(name) != index:
            raise fail(f"inputs[{index}].name", Rule.UNKNOWN_FIELD, f"input {name!r} given twice", name)
    for name in wanted:
        if name not in names:
            raise fail("inputs", Rule.REQUIRED, f"the model's input {name!r} is missing", name)
    arrays: dict[str, np.ndarray] = {}
    rows: int | None = None
    for index, tensor in enumerate(given):
        path = f"inputs[{index}]"
        spec = wanted[tensor.name]
        expected = datatype_of(spec.dtype)
        if tensor.datatype != expected:
            raise fail(f"{path}.datatype", Rule.TYPE, f"the model takes {expected}", tensor.datatype)
        if expected == "BYTES":
            raise fail(f"{path}.datatype", Rule.TYPE, "BYTES tensors are not served")
        shape = tensor.shape
        if len(shape) != len(spec.shape) or not spec.row_shape_matches(shape[1:]):
            raise fail(f"{path}.shape", Rule.SHAPE, f"the model takes {_describe(spec.shape)}", list(shape))
        if rows is None:
            rows = shape[0]
        if shape[0] != rows:
            raise fail(f"{path}.shape", Rule.SHAPE, f"every input must have the same batch size ({rows})", shape[0])
        if not 1 <= rows <= max_rows:
            raise fail(f"{path}.shape", Rule.MAX_ROWS, f"the batch size must be 1 to {max_rows}", rows)
        count = math.prod(shape)
        if tensor.raw is not None:
            itemsize = DTYPES[expected].itemsize
            if len(tensor.raw) != count * itemsize:
                raise fail(
                    tensor.raw_path,
                    Rule.SHAPE,
                    f"{_describe(shape)} of {expected} is {count * itemsize} bytes",
                    len(tensor.raw),
                )
            arrays[tensor.name] = np.frombuffer(tensor.raw, dtype=DTYPES[expected]).reshape(shape).astype(spec.dtype)
        else:
            if tensor.data is None:
                raise fail(f"{path}.data", Rule.REQUIRED, "give data, or parameters.binary_data_size")
            if expected == "FP16":
                raise fail(f"{path}.datatype", Rule.TYPE, "FP16 only as binary data: JSON has no half floats")
            arrays[tensor.name] = _from_json(tensor.data, shape, count, expected, spec.dtype, path)
    if rows is None:
        raise fail("inputs", Rule.REQUIRED, "no input given")
    return arrays, rows


_KINDS: dict[str, frozenset[type]] = {
    "b": frozenset({bool}),
    "i": frozenset({int}),
    "u": frozenset({int}),
    "f": frozenset({int, float}),
}
"""The JSON element types each kind of datatype takes (``bool`` is not an ``int`` here)."""


def _from_json(
    data: Any, shape: tuple[int, ...], count: int, datatype: str, dtype: np.dtype[Any], path: str
) -> np.ndarray:
    elements = json_elements(data, shape, count, path)
    allowed = _KINDS[DTYPES[datatype].kind]
    found = set(map(type, elements))
    if not found <= allowed:
        names = ", ".join(sorted(t.__name__ for t in found - allowed))
        kinds = " or ".join(sorted(t.__name__ for t in allowed))
        raise fail(f"{path}.data", Rule.TYPE, f"{datatype} takes {kinds}, not {names}")
    target = DTYPES[datatype]
    if target.kind in "iu" and count:
        info = np.iinfo(target)
        if min(elements) < info.min or max(elements) > info.max:
            raise fail(f"{path}.data", Rule.TYPE, f"beyond {datatype}'s range [{info.min}, {info.max}]")
    if target.kind == "f":  # as doubles first, checked, then narrowed: no overflow to silence
        try:
            wide = np.array(elements, dtype=np.float64)
        except OverflowError:  # an integer beyond a double's range
            raise fail(f"{path}.data", Rule.TYPE, f"beyond {datatype}'s range") from None
        largest = _FLOAT_MAX[datatype]
        if count and not (-largest <= wide.min() and wide.max() <= largest):  # NaN compares false too
            raise fail(f"{path}.data", Rule.TYPE, f"beyond {datatype}'s range")
        array = wide.astype(target).reshape(shape)
    else:  # integers within the range (checked above), booleans
        array = np.array(elements, dtype=target).reshape(shape)
    return array.astype(dtype, copy=False)


def json_elements(data: Any, shape: tuple[int, ...], count: int, path: str) -> list[Any]:
    """The elements of a JSON ``data`` array, flat or nested (row-major), ``count`` of them."""
    if not isinstance(data, list):
        raise fail(f"{path}.data", Rule.TYPE, "must be an array", type(data).__name__)
    if data and not isinstance(data[0], list):  # flat, the usual form: no object array to walk
        elements: list[Any] = data
    else:
        try:
            elements = np.asarray(data, dtype=object).ravel().tolist()
        except ValueError:
            raise fail(f"{path}.data", Rule.SHAPE, "nested lists of unequal lengths") from None
    if len(elements) != count:
        raise fail(f"{path}.data", Rule.SHAPE, f"{_describe(shape)} holds {count} elements, not {len(elements)}")
    return elements


_FLOAT_MAX = {name: float(np.finfo(dtype).max) for name, dtype in DTYPES.items() if dtype.kind == "f"}
"""The largest finite value of each float datatype."""


def _describe(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    binary: frozenset[str],
    parameters: Mapping[str, Any],
) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON part when binary outputs follow it."""
    listed = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary:
            raw = np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()  # orjson writes arrays in C
        listed.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["parameters"] = dict(parameters)
    document["outputs"] = listed
    text = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)
