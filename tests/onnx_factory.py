"""Small real ONNX graphs the tests build and load into real onnxruntime sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def affine(path: Path, features: int = 4, scale: float = 2.0, offset: float = 1.0) -> Path:
    """y = x * scale + offset, float32[N, features] -> float32[N, features]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features])
    nodes = [
        _const("s", np.array(scale, np.float32)),
        _const("o", np.array(offset, np.float32)),
        helper.make_node("Mul", ["x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "o"], ["y"]),
    ]
    return _save(helper.make_graph(nodes, "affine", [x], [y]), path)


def gather(path: Path, features: int = 4, table_rows: int = 8) -> Path:
    """y = table[idx] + x: an ``idx`` outside [0, table_rows) makes onnxruntime raise for the
    whole batch -- a real poison row."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features])
    table = np.arange(table_rows * features, dtype=np.float32).reshape(table_rows, features)
    nodes = [
        _const("table", table),
        helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0),
        helper.make_node("Add", ["rows", "x"], ["y"]),
    ]
    return _save(helper.make_graph(nodes, "gather", [x, idx], [y]), path)


def nan_output(path: Path, features: int = 4) -> Path:
    """Declares y like :func:`affine` but answers NaN everywhere."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features])
    nodes = [_const("nan", np.array(np.nan, np.float32)), helper.make_node("Mul", ["x", "nan"], ["y"])]
    return _save(helper.make_graph(nodes, "nan", [x], [y]), path)


def wrong_shape(path: Path, features: int = 4) -> Path:
    """Declares y as float32[N, features] but returns float32[N, 2 * features]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features])
    nodes = [helper.make_node("Concat", ["x", "x"], ["y"], axis=1)]
    return _save(helper.make_graph(nodes, "wrong_shape", [x], [y]), path)


def classifier(path: Path, features: int = 3, classes: int = 2, seed: int = 0) -> Path:
    """probabilities = softmax(x @ W + b), float32[N, features] -> float32[N, classes]."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    p = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])
    nodes = [
        _const("W", rng.normal(size=(features, classes)).astype(np.float32)),
        _const("b", rng.normal(size=(classes,)).astype(np.float32)),
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return _save(helper.make_graph(nodes, "classifier", [x], [p]), path)


def images(path: Path) -> Path:
    """A tensor model with a 3-d input: float32[N, 2, 3] -> float32[N, 2, 3] (doubling)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])
    nodes = [helper.make_node("Add", ["x", "x"], ["y"])]
    return _save(helper.make_graph(nodes, "images", [x], [y]), path)


def ragged_rows(path: Path) -> Path:
    """float32[N, K] -> float32[N, K] with a free K, so rows of different widths exist."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])
    nodes = [helper.make_node("Neg", ["x"], ["y"])]
    return _save(helper.make_graph(nodes, "ragged", [x], [y]), path)


def drop_row(path: Path, features: int = 4) -> Path:
    """Answers one row fewer than it was given: y = x[1:]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", features])
    nodes = [
        _const("starts", np.array([1], np.int64)),
        _const("ends", np.array([2**62], np.int64)),
        _const("axes", np.array([0], np.int64)),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"]),
    ]
    return _save(helper.make_graph(nodes, "drop_row", [x], [y]), path)
