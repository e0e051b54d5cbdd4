from __future__ import annotations

import numpy as np
import pytest

from runtime import InvalidOutput
from runtime.engine.batching import batch_key, merge, split


def test_merge_then_split_gives_every_part_its_rows_back() -> None:
    parts = [{"x": np.full((n, 3), i, np.float32)} for i, n in enumerate((2, 1, 4))]
    merged = merge(parts)
    assert merged["x"].shape == (7, 3)
    back = split(merged, [2, 1, 4])
    for part, original in zip(back, parts, strict=True):
        np.testing.assert_array_equal(part["x"], original["x"])


def test_a_single_part_is_neither_copied_nor_sliced() -> None:
    x = np.ones((3, 2), np.float32)
    assert merge([{"x": x}])["x"] is x
    out = np.zeros((3, 1), np.float32)
    assert split({"y": out}, [3])[0]["y"] is out


def test_split_refuses_a_wrong_row_count() -> None:
    with pytest.raises(InvalidOutput, match="expected 5 rows"):
        split({"y": np.zeros((4, 2), np.float32)}, [2, 3])
    with pytest.raises(InvalidOutput):
        split({"y": np.array(1.0, np.float32)}, [1])


def test_batch_key_separates_dtypes_and_row_shapes_but_not_row_counts() -> None:
    a = batch_key({"x": np.zeros((1, 3), np.float32)})
    assert a == batch_key({"x": np.zeros((9, 3), np.float32)})
    assert a != batch_key({"x": np.zeros((1, 4), np.float32)})
    assert a != batch_key({"x": np.zeros((1, 3), np.float64)})
