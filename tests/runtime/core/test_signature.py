from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from runtime import OnnxModel, TensorSpec


def test_symbolic_dimensions_are_none(load_model: Callable[..., OnnxModel]) -> None:
    signature = load_model("images").signature
    [spec] = signature.inputs
    assert spec.shape == (None, 2, 3)
    assert spec.row_shape == (2, 3)
    assert spec.describe() == "float32[N, 2, 3]"
    assert signature.output("y").dtype == np.float32


def test_row_shapes_match_with_free_dimensions() -> None:
    spec = TensorSpec("x", np.dtype(np.float32), (None, None, 3))
    assert spec.row_shape_matches((7, 3))
    assert not spec.row_shape_matches((7, 4))
    assert not spec.row_shape_matches((3,))


def test_unknown_names_are_named_in_the_error(load_model: Callable[..., OnnxModel]) -> None:
    signature = load_model("affine").signature
    with pytest.raises(KeyError, match="no input 'nope'"):
        signature.input("nope")
