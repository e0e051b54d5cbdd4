"""Bad candidates made from a good model's ONNX graph: they take and give what it does, and differ
only where they should."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import LogisticRegression

from models.build import export
from models.candidates import failing_on_large, slowed


@pytest.fixture(scope="module")
def good() -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return export(LogisticRegression().fit(x, y), 5), x


def run(onnx_bytes: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x}), strict=True))


def test_the_failing_candidate_gives_nan_exactly_above_the_threshold(good: tuple[bytes, np.ndarray]) -> None:
    onnx_bytes, x = good
    threshold = float(np.quantile(x[:, 2], 0.9))
    ours, theirs = run(onnx_bytes, x), run(failing_on_large(onnx_bytes, 2, threshold), x)
    assert set(theirs) == set(ours)  # the same outputs, so a rollout takes it as a candidate
    broken = np.isnan(theirs["probabilities"]).any(axis=1)
    np.testing.assert_array_equal(broken, x[:, 2] > threshold)
    assert 0.05 < broken.mean() < 0.15
    np.testing.assert_array_equal(theirs["probabilities"][~broken], ours["probabilities"][~broken])
    np.testing.assert_array_equal(theirs["label"], ours["label"])


def test_the_slow_candidate_answers_alike_after_more_work(good: tuple[bytes, np.ndarray]) -> None:
    onnx_bytes, x = good
    slow = slowed(onnx_bytes, width=64)
    ours, theirs = run(onnx_bytes, x), run(slow, x)
    np.testing.assert_allclose(theirs["probabilities"], ours["probabilities"], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(theirs["label"], ours["label"])
    assert len(slow) > len(onnx_bytes) + 64 * 64 * 4  # the dense layers' weights are in the file
