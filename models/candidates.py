"""Bad versions of a model, made from a good one's ONNX graph, for rollout drills.

Each function takes a classifier's ONNX file (skl2onnx's, with a ``probabilities`` output) and returns
another one that takes and gives the same tensors, so that a rollout accepts it as a candidate:

* :func:`failing_on_large` -- ``probabilities`` is NaN for the rows whose feature is above a
  threshold (a numerical fault on large amounts, say). The server's output check refuses those rows,
  the fallback answers them: the candidate fails on a share of rows, never on the others.
* :func:`slowed` -- the same answers, after a dense computation per row whose result is multiplied
  by zero (it depends on the input, so onnxruntime cannot fold it away): a bigger, slower model.

The silently wrong candidate needs no graph surgery: it is trained on shuffled labels
(models/build.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

OUTPUT = "probabilities"


def _rename_output(model: onnx.ModelProto, new: str) -> None:
    """Make the nodes that produce :data:`OUTPUT` produce ``new`` instead (the graph's output keeps
    its name, for the nodes added after)."""
    for node in model.graph.node:
        node.output[:] = [new if name == OUTPUT else name for name in node.output]


def failing_on_large(onnx_bytes: bytes, feature: int, threshold: float) -> bytes:
    """NaN probabilities for the rows whose ``feature`` (a column of the input) exceeds ``threshold``."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    source = graph.input[0].name
    _rename_output(model, "fault_probabilities")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([feature], np.int64), "fault_column"),
            numpy_helper.from_array(np.array(threshold, np.float32), "fault_threshold"),
            numpy_helper.from_array(np.array(np.nan, np.float32), "fault_nan"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Gather", [source, "fault_column"], ["fault_value"], axis=1),
            helper.make_node("Greater", ["fault_value", "fault_threshold"], ["fault_rows"]),
            helper.make_node("Where", ["fault_rows", "fault_nan", "fault_probabilities"], [OUTPUT]),
        ]
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def slowed(onnx_bytes: bytes, width: int, layers: int = 2, seed: int = 0) -> bytes:
    """The same answers after ``layers`` dense layers of ``width`` per row, multiplied by zero."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    source = graph.input[0].name
    features = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    _rename_output(model, "slow_probabilities")
    rng = np.random.default_rng(seed)
    previous, fan_in = source, features
    for i in range(layers):
        weights = (rng.standard_normal((fan_in, width)) / np.sqrt(fan_in)).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(weights, f"slow_w{i}"))
        graph.node.extend(
            [
                helper.make_node("MatMul", [previous, f"slow_w{i}"], [f"slow_m{i}"]),
                helper.make_node("Tanh", [f"slow_m{i}"], [f"slow_t{i}"]),
            ]
        )
        previous, fan_in = f"slow_t{i}", width
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], np.int64), "slow_axes"),
            numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceSum", [previous, "slow_axes"], ["slow_sum"], keepdims=1),
            helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
            helper.make_node("Add", ["slow_probabilities", "slow_nothing"], [OUTPUT]),
        ]
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
